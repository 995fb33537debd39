"""Pilot for the verdict's equivalence margin δ and its power (docs/verdict.md, "Power" and "The margin").

    .venv/bin/python bench/pilot_margin.py [--reps 400] [--seed 0] [--initial -0.28] [--methods 8]

Constructed N(0, 1) draws, no model, judged by the report's own tests (raysweep/stats/scores.py,
raysweep/stats/power.py): a method that keeps a fraction f of θ_initial's held-out GUS G scores its
n held-out poisons as N(f·G, 1) and its canaries like θ_retrain's (canaries as many as the held-out
poisons, at θ_retrain's canary GUS, taken equal to G); θ_initial's own n scores (which set the
margin δ·|mean|) and θ_retrain's canaries are drawn in every simulated report. Eight methods with the
same f are judged together (Holm per family, α = 0.05). Printed: the share of methods per outcome,
removes / fails / inconclusive (signal destroyed stays ~0 while canaries are kept), for each
(n, δ, f), and a last block with the canaries lost (a method that only scrambles the signal).
n = 32: `tiny`; 500: the default scenario's held-out half; 1,500: the default pooled over the
report's default 2 fresh scenarios; 100 and 300: `paper-rate` (2 % poisons) alone and pooled.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raysweep.stats.power import simulate  # noqa: E402

ALPHA = 0.05


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--initial", type=float, default=-0.28, help="θ_initial's held-out GUS (default scenario)")
    ap.add_argument("--methods", type=int, default=8)
    ap.add_argument("--n", default="32,500,1500", help="held-out poisons, comma-separated")
    ap.add_argument("--deltas", default="0.25,0.33,0.5,0.75")
    args = ap.parse_args()
    g, m = args.initial, args.methods
    print(f"θ_initial's held-out GUS {g}, {m} methods, α = {ALPHA}, {args.reps} simulated reports per cell")
    print("| n held-out | δ | margin (GUS) | f = 0 (never saw the noise) | f = 0.25 | f = 0.5 "
          "| f = 1 (no unlearning) |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(v) for v in args.n.split(",")):
        for delta in (float(v) for v in args.deltas.split(",")):
            cells = []
            for f in (0.0, 0.25, 0.5, 1.0):
                r = simulate(n, g, m, ALPHA, delta, f, n, g, 1.0, args.reps, args.seed)
                cells.append(f"{r['removes']:.2f} / {r['fails']:.2f} / {r['inconclusive']:.2f}")
            print(f"| {n} | {delta:.2f} | {delta * abs(g):.3f} | " + " | ".join(cells) + " |", flush=True)
    print("\nCanaries lost (poison scores N(0, 1), canaries keep a share c of θ_retrain's effect), δ = 0.5:")
    print("| n held-out | c = 1 | c = 0.5 | c = 0.25 | c = 0 |  (signal destroyed / removes)")
    print("|---|---|---|---|---|")
    for n in (int(v) for v in args.n.split(",")):
        cells = []
        for c in (1.0, 0.5, 0.25, 0.0):
            r = simulate(n, g, m, ALPHA, 0.5, 0.0, n, g, c, args.reps, args.seed)
            cells.append(f"{r['signal destroyed']:.2f} / {r['removes']:.2f}")
        print(f"| {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
