"""Small exact and asymptotic tests for the attack-specific verdicts (no SciPy needed)."""
from __future__ import annotations

import math


def fisher_greater(a: int, n_a: int, b: int, n_b: int) -> float:
    """One-sided Fisher exact p-value that group A's success rate (a of n_a) exceeds group B's (b of
    n_b): P(X >= a) for X hypergeometric with the margins fixed."""
    total, succ = n_a + n_b, a + b
    denom = math.comb(total, n_a)
    return sum(math.comb(succ, x) * math.comb(total - succ, n_a - x)
               for x in range(a, min(succ, n_a) + 1)) / denom


def proportion_less(p_a: float, n_a: int, p_b: float, n_b: int) -> float:
    """One-sided two-proportion z-test p-value that A's rate is below B's (pooled variance)."""
    pooled = (p_a * n_a + p_b * n_b) / (n_a + n_b)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n_a + 1 / n_b), 1e-300))
    return 0.5 * math.erfc(-(p_a - p_b) / se / math.sqrt(2))  # Φ(z), accurate far in the lower tail
