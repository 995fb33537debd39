"""The default search objective (minimised) and its constants. docs/sweep.md explains the choice.

    objective = |GUS_tune|                                   if val_acc >= floor
              = |GUS_tune| + 1 + 10 * (floor - val_acc)      otherwise
    floor     = θ_retrain's val_acc - tolerance (default 0.02, i.e. 2 points)
    diverged  -> DIVERGED (a finite penalty: NaN would break Optuna's study.tell)

The +1 ranks every run that breaks the accuracy constraint after every run that keeps it
(|GUS| of a trained model stays far below 1), so the searcher cannot buy a low |GUS| with
accuracy; the slope 10 per unit of accuracy still points it back toward the feasible side.
"""
from __future__ import annotations

import math

DIVERGED = 10.0
INFEASIBLE_STEP = 1.0
SHORTFALL_SLOPE = 10.0


def objective(abs_gus: float, val_acc: float, floor: float, diverged: bool = False) -> float:
    if diverged or not (math.isfinite(abs_gus) and math.isfinite(val_acc)):
        return DIVERGED
    short = floor - val_acc
    return abs_gus + (INFEASIBLE_STEP + SHORTFALL_SLOPE * short if short > 0 else 0.0)
