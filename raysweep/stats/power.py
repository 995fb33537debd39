"""How the verdict decides among its outcomes, and how often it decides right: the power line.

`outcomes` is the one rule the report applies (raysweep/verdict/judge.py): Holm over the methods in
each family; a method whose "fails" test rejects fails; else one whose "destroyed" test (the
canaries lost their effect) rejects is "signal destroyed"; else one whose "removes" test rejects
removes; else inconclusive.

`gaussian_power` simulates whole reports at the report's own sample sizes (held-out poisons n,
canaries, θ_initial's effect, m methods, α, δ) with constructed N(μ, 1) scores, judged by the same
`score_tests` and `outcomes`: the share of methods as good as θ_retrain (scores N(0, 1), canaries
like θ_retrain's) judged "removes", and of methods keeping half of θ_initial's effect (canaries
kept) judged "fails". docs/verdict.md gives the pilot.
"""
from __future__ import annotations

import numpy as np

from .exact import holm_levels, holm_reject
from .scores import score_tests

POWER_REPS = 1000  # simulated reports behind the power line (its sampling SD ≤ 0.016)
POWER_SEED = 0


def outcomes(p_fails: dict, p_removes: dict, alpha: float, p_destroyed: dict | None = None) -> tuple[dict, dict]:
    """(name -> outcome, name -> {family: Holm step level}) over the methods named in any family."""
    p_destroyed = p_destroyed or {}
    rej = {fam: holm_reject(p, alpha) for fam, p in (("fails", p_fails), ("destroyed", p_destroyed),
                                                    ("removes", p_removes))}
    levels = {fam: holm_levels(p, alpha) for fam, p in (("fails", p_fails), ("destroyed", p_destroyed),
                                                       ("removes", p_removes))}
    names = dict.fromkeys([*p_fails, *p_destroyed, *p_removes])
    out = {}
    for name in names:
        if rej["fails"].get(name):
            out[name] = "fails"
        elif rej["destroyed"].get(name):
            out[name] = "signal destroyed"
        elif rej["removes"].get(name):
            out[name] = "removes"
        else:
            out[name] = "inconclusive"
    return out, {name: {fam: levels[fam].get(name) for fam in levels} for name in names}


def simulate(n: int, initial_gus: float, m: int, alpha: float, delta: float, kept: float = 0.0,
             n_canary: int = 0, canary_gus: float | None = None, canary_kept: float = 1.0, reps: int = POWER_REPS,
             seed: int = POWER_SEED) -> dict[str, float]:
    """Share of methods per outcome over `reps` simulated reports of m methods, each keeping `kept` of
    θ_initial's effect (scores N(kept · initial_gus, 1)) and `canary_kept` of θ_retrain's canary effect;
    θ_initial's n scores (which set the margin) and θ_retrain's canaries are drawn in each report too."""
    rng = np.random.default_rng(seed)
    count = dict.fromkeys(("fails", "signal destroyed", "removes", "inconclusive"), 0)
    use_c = bool(n_canary) and canary_gus is not None
    for _ in range(reps):
        margin = delta * abs(float(rng.normal(initial_gus, 1, n).mean()))
        ref = rng.normal(canary_gus, 1, n_canary) if use_c else None
        x = rng.normal(kept * initial_gus, 1, (m, n))
        a = rng.normal(canary_kept * canary_gus, 1, (m, n_canary)) if use_c else [None] * m
        t = {i: score_tests(x[i], margin, delta, None, a[i], ref) for i in range(m)}
        got, _ = outcomes({i: v.p_fails for i, v in t.items()}, {i: v.p_removes for i, v in t.items()}, alpha,
                          {i: v.p_destroyed for i, v in t.items() if v.p_destroyed is not None})
        for o in got.values():
            count[o] += 1
    return {o: c / (reps * m) for o, c in count.items()}


def gaussian_power(n: int, initial_gus: float, m: int, alpha: float, delta: float, n_canary: int = 0,
                   canary_gus: float | None = None, reps: int = POWER_REPS,
                   seed: int = POWER_SEED) -> tuple[float, float]:
    """(P(a method as good as θ_retrain is judged "removes"), P(one keeping half of θ_initial's effect,
    canaries kept, is judged "fails")), m such methods judged together in each simulated report."""
    perfect = simulate(n, initial_gus, m, alpha, delta, 0.0, n_canary, canary_gus, 1.0, reps, seed)
    half = simulate(n, initial_gus, m, alpha, delta, 0.5, n_canary, canary_gus, 1.0, reps, seed + 1)
    return perfect["removes"], half["fails"]
