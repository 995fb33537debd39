"""A sweep's search schedule: where a trial is judged, what each judgement costs, how TPE suggests.

Two schedules, their figures in raysweep/defaults.py:
- `default`: a trial evaluates every `checkpoint_every` of the sweep's cap (25 %); ASHA (reduction 3)
  judges it from `asha_grace` on: rungs at 25 % and 75 %.
- `deep` (`--schedule deep`, sized for 100 trials per method in an hour on 2 cores): ASHA's step is
  1/DEEP_STEPS of the cap and its rungs sit at DEEP_GRACE x DEEP_REDUCTION^i steps (1/16 and 1/4 of the
  cap, and the cap); a trial evaluates at those rungs only (its budget callbacks still come every step,
  so a diverged run restores the same checkpoint as its re-run), and each method's TPE is pinned to
  multivariate with the constant liar, so the trials that run at once are not suggested alike. Why
  these points: the pilot in docs/performance.md ("Depth per hour").
- `full`: the default's checkpoints, no early stopping: every trial runs to its own cap (the
  full-fidelity search a deep one is compared with, bench/bench_depth.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .. import defaults as D
from ..errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    name: str
    unit: float                   # ASHA's step, a share of the sweep's cap (a trial's budget callbacks come this often)
    grace: int                    # steps a trial runs before ASHA may stop it
    reduction_factor: int
    max_t: int                    # ASHA's max_t, in steps
    evaluate_at: tuple[int, ...] | None  # the steps a trial evaluates and reports at; None: every step
    constant_liar: bool           # each method's TPE: multivariate, with the constant liar

    @property
    def stops_early(self) -> bool:
        return self.name != "full"

    def rungs(self) -> list[int]:
        """ASHA's rungs below max_t, in steps (Ray's ASHA: grace x reduction^i while below max_t); none
        under `full`."""
        out, t = [], self.grace if self.stops_early else self.max_t
        while t < self.max_t:
            out.append(t)
            t *= self.reduction_factor
        return out

    def rung_shares(self) -> list[float]:
        """The rungs as shares of the sweep's cap."""
        return [r * self.unit for r in self.rungs()]


def deep_unit() -> float:
    return 1.0 / D.DEEP_STEPS


def schedule_of(cfg) -> Schedule:
    """The schedule of a checked SweepConfig (`cfg.schedule`, `cfg.checkpoint_every`, `cfg.asha_grace`)."""
    if cfg.schedule == "deep":  # max_t one step past the cap, as the default's: the cap itself is a rung
        deep = Schedule("deep", deep_unit(), D.DEEP_GRACE, D.DEEP_REDUCTION, D.DEEP_STEPS + 1, None, True)
        return replace(deep, evaluate_at=tuple(r for r in deep.rungs() if r < D.DEEP_STEPS))
    n_steps = int(round(1 / cfg.checkpoint_every)) + 1
    grace = min(n_steps, max(1, int(round(cfg.asha_grace / cfg.checkpoint_every))))
    return Schedule(cfg.schedule, cfg.checkpoint_every, grace, 3, n_steps, None, False)


def resolve(cfg) -> None:
    """Give a deep-schedule SweepConfig its own checkpoint spacing and grace (recorded in sweep.json, so
    a re-run restores what its trial did and `--resume` compares them); refuse any other asked for."""
    if cfg.schedule != "deep":
        return
    unit = deep_unit()
    for field, default, deep in (("checkpoint_every", D.CHECKPOINT_EVERY, unit),
                                 ("asha_grace", D.ASHA_GRACE, unit * D.DEEP_GRACE)):
        value = getattr(cfg, field)
        if isinstance(value, (int, float)) and math.isclose(value, default):
            setattr(cfg, field, deep)
        elif not (isinstance(value, (int, float)) and math.isclose(value, deep)):
            raise ConfigError(field, value, f"{deep:.6g} under --schedule deep, which sets its own rungs "
                              f"(drop the option, or use --schedule default)")
