"""What an attack search is asked to do, checked before anything trains, and where it goes next.

`parse_space` reads `--space` against the attack's own `Attack.searchable`; `check_corners` builds the
scenario at every corner of the space and runs the checks that need the data (k against the rows, a
backdoor's share against the reviews not of its target), so a range no scenario can take is one line
before any training. `propose` gives the next outer point: in worst-case mode a seeded Optuna TPE
study rebuilt from the points on file (the stealth constraint as Optuna's own constraint), in boundary
mode a bisection of each method's bracket along the one axis.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

from ..attacks import ATTACKS, Searchable
from ..config import ScenarioConfig, parse_value
from ..errors import ConfigError
from ..prepare.scenario import checked_data
from ..prepare.seeds import derive_seed

MODES = ("worst", "boundary")
SYNTAX = "NAME or NAME=LO:HI or NAME=LO:HI:log, comma-separated (e.g. eps2=0.01:1:log,k=32:1024)"


@dataclass(frozen=True)
class Axis:
    """One searched parameter: its name, kind, the searched range and its scale."""

    name: str
    kind: str
    lo: float
    hi: float
    log: bool

    def distribution(self):
        import optuna

        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.lo), int(self.hi), log=self.log)
        return optuna.distributions.FloatDistribution(float(self.lo), float(self.hi), log=self.log)

    def scale(self, v: float) -> float:
        return math.log(v) if self.log else float(v)

    def unscale(self, u: float):
        v = math.exp(u) if self.log else u
        return int(round(v)) if self.kind == "int" else float(v)


@dataclass
class Plan:
    attack: str
    axes: list[Axis]
    mode: str
    points: int
    stealth: float
    seed: int
    fixed: dict = field(default_factory=dict)  # the scenario's own attack parameters (what is not searched)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.axes]

    def attack_params(self, values: dict) -> dict:
        return ATTACKS.get(self.attack).searched_params(dict(self.fixed), values)

    def scenario(self, base: ScenarioConfig, values: dict) -> ScenarioConfig:
        """The scenario of an outer point: the base scenario with the point's attack parameters (validated)."""
        return replace(base, attack_params=self.attack_params(values)).check()


def searchable_of(attack: str) -> dict[str, Searchable]:
    cls = ATTACKS.get(attack, "attack")
    if not cls.searchable:
        have = sorted(n for n in ATTACKS.names() if ATTACKS.get(n).searchable)
        raise ConfigError("attack", attack, "an attack that declares searchable parameters (Attack.searchable): "
                          + ", ".join(have))
    return cls.searchable


def parse_space(text: str | None, attack: str) -> list[Axis]:
    """`--space` against the attack's declared parameters; None: every one at its default range."""
    declared = searchable_of(attack)
    items = list(declared) if text is None else [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError("space", text, SYNTAX)
    axes, seen = [], set()
    for item in items:
        name, _, rng = item.partition("=")
        name = name.strip()
        if name not in declared:
            raise ConfigError(f"space.{name}", item, f"a parameter attack {attack} declares searchable: "
                              + ", ".join(declared))
        if name in seen:
            raise ConfigError(f"space.{name}", item, "each parameter once")
        seen.add(name)
        s = declared[name]
        lo, hi = s.default_range
        log = s.log
        if rng:
            parts = rng.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "lin")):
                raise ConfigError(f"space.{name}", rng, SYNTAX)
            lo, hi = (parse_value(p) for p in parts[:2])
            log = parts[2] == "log" if len(parts) == 3 else s.log
        axes.append(check_axis(name, s, lo, hi, log))
    return axes


def check_axis(name: str, s: Searchable, lo, hi, log: bool) -> Axis:
    """A range inside the attack's hard bounds, of the parameter's kind, low end below the high end."""
    field_ = f"space.{name}"
    shown = f"{lo}:{hi}"
    kind_ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if s.kind == "int" else \
        (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
    if not (kind_ok(lo) and kind_ok(hi)):
        raise ConfigError(field_, shown, f"{'integers' if s.kind == 'int' else 'finite numbers'} LO:HI ({SYNTAX})")
    if not s.lo <= lo < hi <= s.hi:
        raise ConfigError(field_, shown, f"LO < HI within the attack's bounds [{s.lo:g}, {s.hi:g}]")
    if log and lo <= 0:
        raise ConfigError(field_, shown, "a positive LO on a log scale")
    return Axis(name, s.kind, lo, hi, bool(log))


def check_plan(plan: Plan, base: ScenarioConfig, data_dir: str | None = None) -> None:
    """Every corner of the space is a scenario whose parameters fit the data, before anything trains."""
    if plan.mode not in MODES:
        raise ConfigError("mode", plan.mode, "worst (the largest effect the best tuned method leaves) or boundary "
                          "(where each method's verdict stops being fails)")
    if plan.mode == "boundary" and len(plan.axes) != 1:
        raise ConfigError("space", ",".join(plan.names), "one parameter in boundary mode (the axis it bisects, e.g. "
                          "eps2=0.01:1:log); fix the others with --set attack_params.NAME=VALUE")
    for corner in itertools.product(*[(a.lo, a.hi) for a in plan.axes]):
        values = dict(zip(plan.names, corner))
        try:
            checked_data(plan.scenario(base, values), data_dir)
        except ConfigError as e:
            raise ConfigError("space", ",".join(f"{a.name}={a.lo}:{a.hi}" for a in plan.axes),
                              f"a range whose every corner is a valid scenario (at {values}: {e})") from None


# ---- the next point --------------------------------------------------------------------------------

def propose(plan: Plan, done: list[dict], index: int, outcomes_of) -> dict | None:
    """The searched values of outer point `index` given the points on file (`done`, in order), or None
    when boundary mode has nothing left to bisect. `outcomes_of(record)` -> {method: outcome} or None."""
    if plan.mode == "worst":
        return propose_worst(plan, done, index)
    return propose_boundary(plan, done, outcomes_of)


def propose_worst(plan: Plan, done: list[dict], index: int) -> dict:
    """TPE, seeded per point from the search seed and the point's index (so a resumed search asks what
    an uninterrupted one would), over a study rebuilt from the points on file. Infeasible points carry
    their stealth violation as Optuna's constraint: TPE ranks them below every feasible point."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {a.name: a.distribution() for a in plan.axes}
    sampler = optuna.samplers.TPESampler(seed=derive_seed(plan.seed, f"attack-search:{index}"),
                                         n_startup_trials=max(2, min(10, plan.points // 3)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for r in done:
        obj = r.get("objective")
        feasible = r["stealth"]["feasible"]
        state = optuna.trial.TrialState.COMPLETE if obj is not None or not feasible else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(
            params=r["values"], distributions=dists, state=state,
            value=(float(obj) if obj is not None else 0.0) if state == optuna.trial.TrialState.COMPLETE else None,
            constraints={"stealth": float(r["stealth"]["drop"] - plan.stealth)}))
    return dict(study.ask(dists).params)


def brackets(plan: Plan, done: list[dict], outcomes_of) -> dict[str, tuple]:
    """Per method, along the axis: (lo, hi) with hi the weakest point of the run of "fails" that reaches the
    strongest stealthy point and lo the strongest point below it (not "fails"); lo None: fails at every
    point; hi None: never fails up to the strongest point (when a stronger point broke stealth, hi is that
    point: the unknown stretch below it is still open). Points above the weakest non-stealthy point
    are out of bounds."""
    a = plan.axes[0]
    cap = min((r["values"][a.name] for r in done if not r["stealth"]["feasible"]), default=None)
    pts = sorted(((r["values"][a.name], outcomes_of(r)) for r in done if r["stealth"]["feasible"]
                  and outcomes_of(r) is not None and (cap is None or r["values"][a.name] < cap)), key=lambda t: t[0])
    methods = list(dict.fromkeys(m for _, o in pts for m in o))
    out = {}
    for m in methods:
        run = [x for x, o in pts if m in o]
        fails = {x for x, o in pts if o.get(m) == "fails"}
        top = len(run)
        while top > 0 and run[top - 1] in fails:
            top -= 1
        if top == len(run):  # the strongest point does not fail
            out[m] = (run[-1] if run else None, cap)
        else:
            out[m] = (run[top - 1] if top else None, run[top])
    return out


def propose_boundary(plan: Plan, done: list[dict], outcomes_of) -> dict | None:
    """The strongest end first, then the weakest, then the middle (on the axis's scale) of the widest
    open bracket among the methods; None when every bracket is closed (adjacent integers) or none is open."""
    a = plan.axes[0]
    seen = {r["values"][a.name] for r in done}
    for end in (a.hi, a.lo):
        if end not in seen:
            return {a.name: end}
    open_ = []
    for lo, hi in brackets(plan, done, outcomes_of).values():
        if lo is None or hi is None:
            continue
        mid = a.unscale((a.scale(lo) + a.scale(hi)) / 2)
        if mid not in seen and lo < mid < hi:
            open_.append((a.scale(hi) - a.scale(lo), mid))
    return {a.name: max(open_)[1]} if open_ else None
