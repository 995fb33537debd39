"""The tests of per-unit scores that are exactly N(0, 1) when no effect remains (GUS scores I_z).

Gaussian poisoning's verdict (raysweep/attacks/gaussian.py) and the power simulation
(raysweep/stats/power.py) both call `score_tests`, so the power the report prints is the power of
the tests it runs. docs/verdict.md states them:

  fails     the scores are shown not to be N(0, 1): their mean differs from 0 (z-test, σ = 1) or
            their spread exceeds 1 (chi-square test of the variance): the smaller p, doubled
            (Bonferroni over the two), so poisons split into two signs (mean ~0, variance >> 1)
            count as an effect that remains;
  removes   all three shown (an intersection-union test: the largest p): |mean| < the margin
            (TOST), variance < 1 + δ (chi-square), and the canaries kept (below);
  destroyed the canaries (noised samples that stay in the retain set, never requested) are shown to
            have lost more than δ of θ_retrain's canary effect: the method scrambled the signal
            rather than removed the poisons.
The canary tests pair each canary's score under the model with θ_retrain's (both trained on it):
u_i = o · (a_i − (1 − δ) b_i), o the sign of θ_retrain's canary effect; kept: mean u > 0, lost:
mean u < 0, one-sided t-tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .exact import t_cdf, tost, variance_above, variance_below


@dataclass
class ScoreTests:
    mean: float
    sd: float
    n: int
    variance: float          # per-run scores' variance (not averaged over runs)
    p_mean: float            # z-test of mean 0, σ = 1, two-sided
    p_spread: float          # variance > 1
    p_fails: float
    p_tost: float | None
    p_narrow: float | None   # variance < 1 + δ
    p_kept: float | None     # canaries kept (None: no canaries)
    p_destroyed: float | None
    canary_kept: float | None  # the canaries' effect as a share of θ_retrain's
    n_canary: int = 0

    @property
    def p_removes(self) -> float | None:
        parts = [p for p in (self.p_tost, self.p_narrow, self.p_kept) if p is not None]
        return max(parts) if self.p_tost is not None else None


def one_sided_greater(u: np.ndarray) -> float:
    """t-test p of H0 "mean u <= 0" (small: the mean is shown positive)."""
    n = len(u)
    if n < 2:
        return 1.0
    sd = float(u.std(ddof=1))
    if sd <= 0:
        return 0.0 if u.mean() > 0 else 1.0
    return 1.0 - t_cdf(float(u.mean()) / (sd / math.sqrt(n)), n - 1)


def score_tests(x: np.ndarray, margin: float | None, delta: float, variance: float | None = None,
                canary: np.ndarray | None = None, canary_ref: np.ndarray | None = None) -> ScoreTests:
    """x: per-unit scores (averaged over a model's runs, pooled over scenarios); margin: the
    equivalence margin on the mean; variance: the per-run scores' variance (default: x's); canary,
    canary_ref: the canaries' scores under the model and under θ_retrain, the same canaries in the
    same order (None: no canaries)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else float("nan")
    var = float(variance) if variance is not None else sd * sd
    p_mean = math.erfc(abs(mean) * math.sqrt(n) / math.sqrt(2))
    p_spread = variance_above(var, n, 1.0)
    p_fails = min(1.0, 2 * min(p_mean, p_spread))
    p_tost = tost(mean, sd, n, margin) if margin is not None and n > 1 else None
    p_narrow = variance_below(var, n, 1.0 + delta) if p_tost is not None else None
    p_kept = p_destroyed = kept = None
    nc = 0
    if canary is not None and canary_ref is not None and len(canary) == len(canary_ref) and len(canary) > 1:
        a, b = np.asarray(canary, dtype=float), np.asarray(canary_ref, dtype=float)
        nc = len(a)
        o = -1.0 if b.mean() < 0 else 1.0
        u = o * (a - (1 - delta) * b)
        p_kept, p_destroyed = one_sided_greater(u), one_sided_greater(-u)
        kept = float(a.mean() / b.mean()) if b.mean() != 0 else None
    return ScoreTests(mean, sd, n, var, p_mean, p_spread, p_fails, p_tost, p_narrow, p_kept, p_destroyed, kept, nc)
