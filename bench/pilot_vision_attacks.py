"""Pilot for issue 6 on cifar10-mini with the CPU model (prints and appends JSON lines to --out).

Gradient Canceling: does θ_initial (trained from scratch on clean + poisons) lose test accuracy
versus θ_retrain? Gradient matching: over several targets (each its own scenario seed), how often is
the target classified as the adversarial class by θ_initial and by θ_retrain?

    python bench/pilot_vision_attacks.py --store raysweep-out --targets 5 [--steps 120 --restarts 2] [--skip-gc]
"""
from __future__ import annotations

import argparse
import json
import time

from raysweep.config import load_scenario
from raysweep.prepare.scenario import prepare


def run(overrides, store, out, label):
    cfg = load_scenario("default", overrides)
    t = time.perf_counter()
    manifest, _ = prepare(cfg, store, "cpu")
    row = {"label": label, "hash": cfg.hash(), "overrides": overrides, "wall_s": round(time.perf_counter() - t, 1),
           **{f"{w}_{k}": manifest["metrics"][w].get(k) for w in ("initial", "retrain")
              for k in ("test_acc", "val_acc", "target_success", "target_adv_prob", "forget_acc")}}
    print(json.dumps(row), flush=True)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="raysweep-out")
    ap.add_argument("--out", default="pilot_vision_attacks.jsonl")
    ap.add_argument("--targets", type=int, default=5)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--skip-gc", action="store_true")
    a = ap.parse_args()
    if not a.skip_gc:
        run(["attack=gradient_canceling", "attack_params={}"], a.store, a.out, "gc")
    rows = [run(["attack=gradient_matching", f"attack_params={{steps: {a.steps}, restarts: {a.restarts}}}",
                 f"seed={s}"], a.store, a.out, f"gm seed {s}") for s in range(a.targets)]
    hits_i = sum(r["initial_target_success"] for r in rows)
    hits_r = sum(r["retrain_target_success"] for r in rows)
    print(f"gradient matching: target success θ_initial {hits_i:.0f}/{len(rows)}, θ_retrain {hits_r:.0f}/{len(rows)}")


if __name__ == "__main__":
    main()
