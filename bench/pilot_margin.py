"""Pilot for the verdict's equivalence margin δ (docs/verdict.md, "The equivalence margin").

    .venv/bin/python bench/pilot_margin.py [--reps 400] [--seed 0]

Constructed N(0, 1) draws, no model: a method that keeps a fraction f of θ_initial's held-out GUS
scores its n held-out poisons as N(f·G, 1) (G = θ_initial's GUS, -0.476 on the default scenario);
θ_initial's own n scores (the margin is δ × |their mean|) are drawn too. Eight methods with the same
f are judged together exactly as raysweep/report/verdict.py does for Gaussian poisons (fails:
two-sided z-test with σ = 1; removes: TOST with the sample SD against δ·|GUS_initial|; Holm over the
8 methods for each family at α = 0.05), and the share of methods per outcome is printed for each
(n, δ, f). n = 32 is the `tiny` scenario's held-out half, 250 the default's, 375 the paper's (750
poisons).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raysweep.stats.exact import tost  # noqa: E402
from raysweep.verdict.judge import holm_reject  # noqa: E402

G, M, ALPHA = -0.476, 8, 0.05


def rates(n: int, delta: float, f: float, reps: int, rng) -> tuple[float, float, float]:
    out = {"fails": 0, "removes": 0, "inconclusive": 0}
    for _ in range(reps):
        margin = delta * abs(rng.normal(G, 1, n).mean())
        x = rng.normal(f * G, 1, (M, n))
        mean, sd = x.mean(1), x.std(1, ddof=1)
        pf = {i: math.erfc(abs(mean[i]) * math.sqrt(n) / math.sqrt(2)) for i in range(M)}
        pr = {i: tost(float(mean[i]), float(sd[i]), n, margin) for i in range(M)}
        rf, rr = holm_reject(pf, ALPHA), holm_reject(pr, ALPHA)
        for i in range(M):
            out["fails" if rf[i] else "removes" if rr[i] else "inconclusive"] += 1
    return tuple(out[k] / (reps * M) for k in ("removes", "fails", "inconclusive"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| n held-out | δ | margin (GUS) | f = 0: removes / fails / inc. | f = 0.25 | f = 0.5 | f = 1 |")
    print("|---|---|---|---|---|---|---|")
    for n in (32, 250, 375):
        for delta in (0.25, 1 / 3, 0.5, 0.75):
            cells = []
            for f in (0.0, 0.25, 0.5, 1.0):
                r, fl, inc = rates(n, delta, f, args.reps, rng)
                cells.append(f"{r:.2f} / {fl:.2f} / {inc:.2f}")
            print(f"| {n} | {delta:.2f} | {delta * abs(G):.3f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
