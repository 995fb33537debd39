"""What a budget checkpoint costs inside a trial, against the unlearning it interrupts.

    python bench/bench_checkpoint.py [--scenario default] [--store DIR] [--method gd] [--budget 0.1] [--reps 5]
    python bench/bench_checkpoint.py --smoke-test

Times, one thread (as in a 1-CPU trial), medians of --reps: the unlearning run alone (no checkpoints),
one validation-accuracy pass (as it was, and with BatchNorm folded: `Classifier.for_eval`), one GUS pass
on the checkpoint's CHECKPOINT_POISONS tuning poisons, one copy of the model's state (the divergence
guard), and the whole checkpoint evaluation as the trainable does it, with and without the folding. Then the
share of the unlearning compute that checkpoint evaluation costs at a spacing of 10 %, 20 %, 25 %.
Ray's own reporting is measured by bench_trial_overhead.py (in-trial vs direct).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from raysweep.artifacts import LocalStore
from raysweep.config import load_scenario
from raysweep.defaults import CHECKPOINT_POISONS
from raysweep.metrics import evaluate
from raysweep.prepare.scenario import Scenario, prepare
from raysweep.runs import unlearn_scenario


def _median(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--store", default=None)
    ap.add_argument("--method", default="gd")
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--smoke-test", action="store_true")
    a = ap.parse_args()
    if a.smoke_test:
        a.scenario, a.reps = "tiny", 2
    torch.set_num_threads(1)
    store = a.store or tempfile.mkdtemp(prefix="raysweep-bench-")
    cfg = load_scenario(a.scenario)
    prepare(cfg, store, "cpu", log=lambda m: None)
    scen = Scenario.load(LocalStore(store), cfg)
    model = scen.new_model("initial")
    parts = ("tune",) if scen.poisoned.noise is not None else ()
    t_unlearn = _median(lambda: unlearn_scenario(scen, a.method, a.budget, {}, 0, None, 1.0), max(1, a.reps // 2))
    ckpt = lambda: scen.evaluate(model, parts=parts, full=False, tune_cap=CHECKPOINT_POISONS)  # noqa: E731
    t_val = _median(lambda: evaluate(model, scen.data.val), a.reps)
    t_val_folded = _median(lambda: evaluate(model.for_eval(), scen.data.val), a.reps)
    t_ckpt = _median(ckpt, a.reps)
    model.for_eval = lambda: model  # the same checkpoint without folding BatchNorm (Classifier.for_eval)
    t_ckpt_plain = _median(ckpt, a.reps)
    del model.for_eval
    t_gus = max(0.0, t_ckpt - t_val_folded)
    t_copy = _median(lambda: copy.deepcopy(model.state_dict()), a.reps)
    n_gus = min(CHECKPOINT_POISONS, len(scen.tune_rows))
    print(f"scenario {a.scenario}, method {a.method}, budget {a.budget}, 1 thread, medians of {a.reps}")
    print("| part | seconds | share of the unlearning run |")
    print("|---|---|---|")
    for name, t in (("unlearning alone", t_unlearn), (f"validation pass ({len(scen.data.val)} rows)", t_val),
                    ("validation pass, BatchNorm folded (Classifier.for_eval)", t_val_folded),
                    (f"GUS pass (BatchNorm folded, {n_gus} tuning poisons)", t_gus),
                    ("checkpoint evaluation without folding", t_ckpt_plain),
                    ("checkpoint evaluation (both, folded, as the trainable)", t_ckpt),
                    ("model state copy (divergence guard)", t_copy)):
        print(f"| {name} | {t:.3f} | {t / t_unlearn:.1%} |")
    print()
    print("| checkpoint spacing | evaluations per full trial | evaluation share of the unlearning |")
    print("|---|---|---|")
    for every in (0.1, 0.2, 0.25):
        n = round(1 / every) - 1  # the last checkpoint is the final evaluation, which every run needs
        print(f"| {every:.0%} | {n} | {n * (t_ckpt + t_copy) / t_unlearn:.1%} |")


if __name__ == "__main__":
    main()
