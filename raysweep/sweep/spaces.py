"""Search spaces: `search_spaces/<method>.yaml` -> Optuna distributions, validated up front.

    method: gd
    params:                      # one entry per searched hyperparameter
      lr: {loguniform: [1.0e-5, 0.3]}
      k: {int: [1, all]}         # also {intlog: [lo, hi]}, {uniform: [lo, hi]}, {choice: [a, b]};
                                 # `all`: a layer-count field's bound is the model's layer groups
      cap_share: {uniform: [0.1, 1.0]}   # share of the sweep's budget cap a trial may spend
    fixed: {weight_decay: 5.0e-4}        # optional: set, not searched
    warm_start: [{lr: 1.0e-3, k: 3, cap_share: 1.0}]   # the paper's grid points, evaluated first

Names must be the method's hyperparameters (or cap_share); ranges must lie inside each field's
allowed range. Any problem is one ConfigError naming the file and the field, before any trial runs.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import read_yaml_file
from ..errors import ConfigError
from ..unlearn import METHODS
from ..unlearn.base import MAX_INT

SPACE_KINDS = ("loguniform", "uniform", "int", "intlog", "choice")
ALL = "all"  # the upper bound of a layer-count field (metadata "layers"): every layer group of the model
EXTRA = {"cap_share": {"min": 1e-6, "max": 1.0, "type": float}}


def default_dir() -> Path:
    """The search spaces that ship with raysweep: the package data `raysweep.search_spaces` (the
    repository's top-level search_spaces/, mapped there by pyproject.toml), found through the installed
    package, wheel or editable; in a checkout that is not installed, the folder beside the package."""
    try:
        spec = importlib.util.find_spec("raysweep.search_spaces")
    except ImportError:
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if Path(loc, "gd.yaml").is_file():
            return Path(loc)
    return Path(__file__).resolve().parents[2] / "search_spaces"


@dataclass
class SearchSpace:
    method: str
    params: dict                       # name -> (kind, args)
    fixed: dict = field(default_factory=dict)
    warm_start: list = field(default_factory=list)
    source: str = ""

    def resolved(self, layers: int) -> "SearchSpace":
        """The space on a model with `layers` layer groups: an upper bound `all` (EU-k's k: every layer
        group re-initialised, retraining from scratch at budget 1.0) becomes that number; a warm-start
        point above it is one ConfigError naming it."""
        params = {n: (k, [a[0], layers] if a[-1] == ALL else a) for n, (k, a) in self.params.items()}
        for name, (_, args) in self.params.items():
            if args[-1] == ALL and int(args[0]) > layers:
                raise ConfigError(f"{self.source}: params.{name}", args, f"a low bound of at most {layers}, this "
                                  f"model's layer groups")
        for i, point in enumerate(self.warm_start):
            for name in params:
                if self.params[name][1][-1] == ALL and point[name] > layers:
                    raise ConfigError(f"{self.source}: warm_start[{i}].{name}", point[name],
                                      f"at most {layers}, this model's layer groups")
        return SearchSpace(self.method, params, dict(self.fixed), [dict(p) for p in self.warm_start], self.source)

    def optuna(self) -> dict:
        """name -> optuna distribution, for OptunaSearch(space=...); an unresolved bound `all` reads as
        the field's own maximum (parse-time checks only: a sweep resolves it first)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out = {}
        for name, (kind, args) in self.params.items():
            if args[-1] == ALL:
                args = [args[0], _field_info(self.method)[name].get("max", MAX_INT)]
            if kind == "loguniform":
                out[name] = FloatDistribution(float(args[0]), float(args[1]), log=True)
            elif kind == "uniform":
                out[name] = FloatDistribution(float(args[0]), float(args[1]))
            elif kind == "int":
                out[name] = IntDistribution(int(args[0]), int(args[1]))
            elif kind == "intlog":
                out[name] = IntDistribution(int(args[0]), int(args[1]), log=True)
            else:
                out[name] = CategoricalDistribution(list(args))
        return out


def _field_info(method: str) -> dict:
    cls = METHODS.get(method, "method")
    info = {}
    for f in fields(cls.Hyper):
        typ = f.type if isinstance(f.type, type) else {"float": float, "int": int, "str": str}.get(str(f.type), str)
        info[f.name] = {**f.metadata, "type": typ}
    if cls.iterative:
        info.update(EXTRA)
    return info


def parse_space(doc: dict, source: str, method: str | None = None) -> SearchSpace:
    """A search space document, checked field by field; any damage is one ConfigError naming the file."""
    try:
        return _parse_space(doc, source, method)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:  # a shape no check foresaw
        raise ConfigError(f"{source}", type(e).__name__, "a search space of the form docs/sweep.md describes "
                          f"({e})".replace("\n", " ")) from None


def _parse_space(doc: dict, source: str, method: str | None) -> SearchSpace:
    def bad(fld, val, allowed):
        return ConfigError(f"{source}: {fld}", val, allowed)

    def mapping(fld, val):
        if val is not None and not isinstance(val, dict):
            raise bad(fld, val, "a mapping")
        return val or {}

    if not isinstance(doc, dict):
        raise bad("(top level)", doc, "a mapping with method, params, fixed, warm_start")
    for key in doc:
        if key not in ("method", "params", "fixed", "warm_start"):
            raise bad(key, doc[key], "top-level keys are method, params, fixed, warm_start")
    m = doc.get("method", method)
    if not isinstance(m, str):
        raise bad("method", m, "a method name")
    if method is not None and m != method:
        raise bad("method", m, f"{method} (the file is read for that method)")
    info = _field_info(m)
    params = {}
    for name, spec in mapping("params", doc.get("params")).items():
        if name not in info:
            raise bad(f"params.{name}", spec, f"{m} takes {', '.join(sorted(info))}")
        if not isinstance(spec, dict) or len(spec) != 1:
            raise bad(f"params.{name}", spec, f"one of {{{': [lo, hi]}, {'.join(SPACE_KINDS)}: ...}}")
        (kind, args), = spec.items()
        meta = info[name]
        if kind not in SPACE_KINDS:
            raise bad(f"params.{name}", kind, f"a kind among {', '.join(SPACE_KINDS)}")
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise bad(f"params.{name}", args, "a non-empty list of values")
            if "choices" in meta and any(a not in meta["choices"] for a in args):
                raise bad(f"params.{name}", args, f"values among {', '.join(map(str, meta['choices']))}")
        else:
            if meta.get("layers") and kind == "int" and isinstance(args, list) and len(args) == 2 and args[1] == ALL:
                args = [args[0], meta.get("max", MAX_INT)]  # checked as a range up to the field's maximum
                keep_all = True
            else:
                keep_all = False
            if not (isinstance(args, list) and len(args) == 2 and all(
                    isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args)):
                raise bad(f"params.{name}", args, "[low, high] finite numbers")
            lo, hi = args
            if not lo < hi:
                raise bad(f"params.{name}", args, "low < high")
            if kind in ("loguniform", "intlog") and lo <= 0:
                raise bad(f"params.{name}", args, "low > 0 for a log scale")
            if kind in ("int", "intlog") and (meta["type"] is not int or lo != int(lo) or hi != int(hi)):
                raise bad(f"params.{name}", args, f"integer bounds on an integer field ({name} is "
                          f"{meta['type'].__name__})")
            if meta["type"] is int and kind not in ("int", "intlog"):
                raise bad(f"params.{name}", kind, "int or intlog (the field is an integer)")
            if "min" in meta and lo < meta["min"] or "max" in meta and hi > meta["max"]:
                inside = f"[{meta.get('min', '-inf')}, {meta.get('max', 'inf')}]"
                raise bad(f"params.{name}", args, f"a range inside {inside}")
            if keep_all:
                args = [args[0], ALL]
        params[name] = (kind, args)
    fixed = mapping("fixed", doc.get("fixed"))
    for name in fixed:
        if name not in info:
            raise bad(f"fixed.{name}", fixed[name], f"{m} takes {', '.join(sorted(info))}")
        if name in params:
            raise bad(f"fixed.{name}", fixed[name], "a name that is not also searched")
    METHODS.get(m)().hyper({k: v for k, v in fixed.items() if k != "cap_share"})
    warm = doc.get("warm_start") or []
    if not isinstance(warm, list):
        raise bad("warm_start", warm, "a list of points")
    space = SearchSpace(m, params, dict(fixed), [], source)
    dists = space.optuna()
    for i, point in enumerate(warm):
        if not isinstance(point, dict) or set(point) != set(params):
            raise bad(f"warm_start[{i}]", point, f"a value for each searched name: {', '.join(params)}")
        for name, val in point.items():
            if not dists[name]._contains(dists[name].to_internal_repr(val)):
                raise bad(f"warm_start[{i}].{name}", val, f"a value inside the searched range {params[name][1]}")
        space.warm_start.append(dict(point))
    return space


def space_path(method: str, directory: str | Path | None = None) -> Path:
    """Where a method's space is read: `directory` (--spaces-dir) if it has <method>.yaml, else the
    search spaces raysweep ships (`default_dir`), else beside the module that registered the method (a plug-in's
    <module>.yaml)."""
    import inspect

    cls = METHODS.get(method, "method")
    if directory is not None and not Path(directory).is_dir():
        raise ConfigError("spaces_dir", str(directory), "an existing folder of <method>.yaml search spaces")
    tried = [Path(directory) / f"{method}.yaml"] if directory else []
    tried += [default_dir() / f"{method}.yaml", Path(inspect.getfile(cls)).with_suffix(".yaml")]
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise ConfigError("search space", str(tried[0]), "a YAML file: " + ", ".join(str(p) for p in tried))
    return found


def load_space(method: str, directory: str | Path | None = None) -> SearchSpace:
    path = space_path(method, directory)
    return parse_space(read_yaml_file(path, "search space"), str(path), method)
