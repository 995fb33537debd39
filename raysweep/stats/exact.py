"""Small exact and asymptotic tests for the verdicts (standard library only, no SciPy needed).

Every p-value here is of a one-sided or two-sided test stated in its docstring; the attacks'
verdict tests (raysweep/attacks/*.py) combine them, and docs/verdict.md states which is used where.
"""
from __future__ import annotations

import math
from statistics import NormalDist

_N = NormalDist()


def norm_cdf(x: float) -> float:
    """Φ(x), accurate far in the lower tail (erfc, not 1 - erf)."""
    return 0.5 * math.erfc(-x / math.sqrt(2))


def norm_sf(x: float) -> float:
    return norm_cdf(-x)


def norm_ppf(p: float) -> float:
    return _N.inv_cdf(min(max(p, 1e-300), 1 - 1e-16))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function (normal beyond 10^5 degrees of freedom)."""
    if not math.isfinite(t):
        return 1.0 if t > 0 else 0.0
    if df > 1e5:
        return norm_cdf(t)
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """Inverse of t_cdf by bisection (used for confidence intervals only)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def _gammainc_lower(a: float, x: float) -> float:
    """The regularised lower incomplete gamma function P(a, x) by its series (used below x = a + 1)."""
    if x <= 0:
        return 0.0
    term = total = 1.0 / a
    ap = a
    for _ in range(100_000):
        ap += 1
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-15:
            break
    return min(1.0, total * math.exp(a * math.log(x) - x - math.lgamma(a)))


def _gammainc_upper(a: float, x: float) -> float:
    """Q(a, x) = 1 - P(a, x) by its continued fraction (modified Lentz; used from x = a + 1), so a
    small upper tail keeps its digits."""
    tiny = 1e-300
    b, c, d = x + 1 - a, 1 / tiny, 1 / (x + 1 - a)
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, math.exp(a * math.log(x) - x - math.lgamma(a)) * h)


def chi2_cdf(x: float, df: float) -> float:
    """P(X <= x) for X ~ chi-square with df degrees of freedom."""
    if x <= 0:
        return 0.0
    a, y = df / 2, x / 2
    return _gammainc_lower(a, y) if y < a + 1 else 1.0 - _gammainc_upper(a, y)


def chi2_sf(x: float, df: float) -> float:
    """P(X > x)."""
    if x <= 0:
        return 1.0
    a, y = df / 2, x / 2
    return 1.0 - _gammainc_lower(a, y) if y < a + 1 else _gammainc_upper(a, y)


def variance_above(s2: float, n: int, sigma2: float = 1.0) -> float:
    """One-sided chi-square test of a normal sample's variance: p of H0 "variance <= sigma2" from the
    sample variance s2 of n units (df n - 1). Small p: the spread is shown to exceed sigma2."""
    if n < 2:
        return 1.0
    return chi2_sf((n - 1) * s2 / sigma2, n - 1)


def variance_below(s2: float, n: int, sigma2: float) -> float:
    """p of H0 "variance >= sigma2"; small p: the spread is shown to be below sigma2."""
    if n < 2:
        return 1.0
    return chi2_cdf((n - 1) * s2 / sigma2, n - 1)


def z_two_sided(mean: float, n: int, sd: float = 1.0) -> float:
    """Two-sided z-test of mean = 0 with a known per-unit SD."""
    return math.erfc(abs(mean) * math.sqrt(n) / sd / math.sqrt(2))


def tost(mean: float, sd: float, n: int, margin: float) -> float:
    """Two one-sided t-tests of equivalence: p of H0 "|true mean| >= margin" (Schuirmann). Small p:
    the mean is shown to lie inside (-margin, +margin). sd: the per-unit sample SD; df = n - 1."""
    if margin <= 0 or n < 2:
        return 1.0
    if sd <= 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    return max(1 - t_cdf((mean + margin) / se, n - 1), t_cdf((mean - margin) / se, n - 1))


def noninferiority(mean: float, sd: float, n: int, margin: float) -> float:
    """One-sided t-test: p of H0 "true mean >= margin". Small p: the mean is shown to be below it."""
    if margin <= 0 or n < 2:
        return 1.0
    if sd <= 0:
        return 0.0 if mean < margin else 1.0
    return t_cdf((mean - margin) / (sd / math.sqrt(n)), n - 1)


def mean_ci(mean: float, sd: float, n: int, level: float = 0.95) -> tuple[float, float]:
    if n < 2 or not math.isfinite(sd):
        return float("nan"), float("nan")
    h = t_ppf(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n)
    return mean - h, mean + h


def binom_sf(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact (log-space sum)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) + x * lp + (n - x) * lq
             for x in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def sign_test_greater(pos: int, neg: int) -> float:
    """Exact one-sided sign test (McNemar's exact test for paired binary outcomes): p of H0 "positive
    and negative differences are equally likely" against "more positive", from the discordant pairs."""
    return binom_sf(pos, pos + neg) if pos + neg else 1.0


def fisher_greater(a: int, n_a: int, b: int, n_b: int) -> float:
    """One-sided Fisher exact p-value that group A's success rate (a of n_a) exceeds group B's (b of
    n_b): P(X >= a) for X hypergeometric with the margins fixed."""
    total, succ = n_a + n_b, a + b
    denom = math.comb(total, n_a)
    return sum(math.comb(succ, x) * math.comb(total - succ, n_a - x)
               for x in range(a, min(succ, n_a) + 1)) / denom


def fisher_min_n(level: float, limit: int = 1000) -> int | None:
    """Smallest n at which Fisher's test of n hits of n against 0 of n (the most extreme table,
    p = 1 / C(2n, n)) can reject at `level`."""
    for n in range(1, limit + 1):
        if 1 / math.comb(2 * n, n) <= level:
            return n
    return None


def proportion_less(p_a: float, n_a: int, p_b: float, n_b: int) -> float:
    """One-sided two-proportion z-test p-value that A's rate is below B's (pooled variance)."""
    pooled = (p_a * n_a + p_b * n_b) / (n_a + n_b)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n_a + 1 / n_b), 1e-300))
    return 0.5 * math.erfc(-(p_a - p_b) / se / math.sqrt(2))  # Φ(z), accurate far in the lower tail


def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_upper(a: int, n_a: int, b: int, n_b: int, z: float) -> float:
    """Upper bound of Newcombe's hybrid score interval for rate_A - rate_B (one-sided, quantile z)."""
    pa, pb = a / n_a, b / n_b
    ua = wilson(a, n_a, z)[1]
    lb = wilson(b, n_b, z)[0]
    return pa - pb + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)


def noninferiority_rates(a: int, n_a: int, b: int, n_b: int, margin: float) -> float:
    """p of H0 "rate_A - rate_B >= margin", by inverting Newcombe's interval: the smallest one-sided
    level at which its upper bound falls below the margin (sound at the small counts of targets)."""
    if margin <= 0 or not n_a or not n_b or a / n_a - b / n_b >= margin:
        return 1.0
    lo, hi = 0.0, 40.0
    if newcombe_upper(a, n_a, b, n_b, hi) < margin:
        return norm_sf(hi)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if newcombe_upper(a, n_a, b, n_b, mid) < margin else (lo, mid)
    return norm_sf(lo)


def holm_levels(pvalues: dict, alpha: float) -> dict:
    """Holm's step-down thresholds: the i-th smallest p (i = 0..m-1) is compared with alpha/(m - i);
    once one is not rejected, none after it is. Returns each name's step threshold."""
    order = sorted(pvalues, key=lambda n: (pvalues[n], n))
    m = len(order)
    return {name: alpha / (m - i) for i, name in enumerate(order)}


def holm_reject(pvalues: dict, alpha: float) -> dict:
    """Holm's step-down procedure at family-wise level alpha: name -> rejected."""
    order = sorted(pvalues, key=lambda n: (pvalues[n], n))
    m, out, stopped = len(order), {}, False
    for i, name in enumerate(order):
        if not stopped and pvalues[name] <= alpha / (m - i):
            out[name] = True
        else:
            stopped = True
            out[name] = False
    return out
