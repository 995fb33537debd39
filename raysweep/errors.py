"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class RaysweepError(Exception):
    """Bad input or a broken artifact: a message that names the field and what is allowed."""


class ConfigError(RaysweepError):
    """A configuration field holds a value outside what it allows."""

    def __init__(self, field: str, value, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:60] + "…" + shown[-12:]
        super().__init__(f"{field}={shown} is not valid: {allowed}")

    def __reduce__(self):
        """Pickled with its three fields, so an error raised in a worker process (a reference-training
        pool, a Ray task) reaches the command as itself, one line, not as a broken pool; a value that
        cannot be pickled travels as its repr."""
        import pickle

        try:
            pickle.dumps(self.value)
            value = self.value
        except Exception:  # noqa: BLE001 - any value that does not pickle
            value = _Shown(repr(self.value))
        return type(self), (self.field, value, self.allowed)


class ArtifactError(RaysweepError):
    """An artifact or a sweep folder's file is missing, damaged or fails its checksum."""


class PluginError(RaysweepError):
    """A plug-in (RAYSWEEP_PLUGINS, an entry point, a sweep's recorded plug-ins) cannot be loaded."""


def check_number(field: str, value, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 hi_open: bool = False, integer: bool = False, what: str = ""):
    """The one numeric check: a finite number (an integer if asked) within [lo, hi] (open ends if
    asked), else a ConfigError naming the field and the allowed range. Returns the value."""
    import math

    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    # a Python int can be too large for a float: compare it as an int, never through math.isfinite
    ok = ok and not isinstance(value, bool) and (isinstance(value, int) or math.isfinite(value))
    ok = ok and (lo is None or (value > lo if lo_open else value >= lo))
    ok = ok and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        kind = "an integer" if integer else "a finite number"
        lb = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        ub = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        rng = f" in {lb or '(-inf'}, {ub or 'inf)'}" if (lo is not None or hi is not None) else ""
        raise ConfigError(field, value, f"{kind}{rng}" + (f" ({what})" if what else ""))
    return value


class _Shown(str):
    """A value shown by its repr (it could not cross a process border itself)."""

    def __repr__(self) -> str:
        return str(self)
