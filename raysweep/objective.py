"""The default search objective (minimised) and its constants. docs/sweep.md explains the choice.

    objective = effect                                   if val_acc >= floor   (in [0, EFFECT_CAP])
              = INFEASIBLE * (1 + (floor - val_acc))     otherwise             (in (INFEASIBLE, 2 * INFEASIBLE])
              = DIVERGED                                 if the run diverged   (the largest, finite)
    floor     = θ_retrain's val_acc - tolerance (default 0.02, i.e. 2 points)

Lexicographic and scale-free: every run that keeps the floor ranks ahead of every run that breaks
it, whatever the attack's scale, because a feasible run's objective never exceeds EFFECT_CAP (far
above any effect an attack reports: |GUS| is at most ||ξ||/eps ≈ √(input size), a few hundred even
for GPT-2 medium's 512 × 1024 embeddings; probabilities and accuracy gaps are at most 1) and an
infeasible run's is always above INFEASIBLE. Below the floor, the shortfall alone orders runs, so
the searcher is pointed back to the feasible side and cannot buy a low effect with accuracy.
NaN would break Optuna's `study.tell`: a diverged run gets the finite DIVERGED, which trainable.py
also writes as its `effect` (a sentinel; the `diverged` flag marks it in every table).
"""
from __future__ import annotations

import math

EFFECT_CAP = 1e5        # a feasible run's objective is min(effect, EFFECT_CAP)
INFEASIBLE = 1e6        # below the floor: INFEASIBLE * (1 + shortfall), shortfall = floor - val_acc in (0, 1]
DIVERGED = 1e7          # above 2 * INFEASIBLE, the largest value a shortfall can reach


def objective(effect: float, val_acc: float, floor: float, diverged: bool = False) -> float:
    if diverged or not (math.isfinite(effect) and math.isfinite(val_acc)):
        return DIVERGED
    short = floor - val_acc
    if short > 0:
        return INFEASIBLE * (1.0 + min(short, 1.0))
    return min(abs(effect), EFFECT_CAP)


def feasible(value: float) -> bool:
    """True for the objective of a run that kept the accuracy floor (and did not diverge)."""
    return math.isfinite(value) and value <= EFFECT_CAP
