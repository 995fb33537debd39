"""Overhead of one unlearning run inside a Ray Tune trial vs the same run called directly.

Both sides do the same work: unlearning under the same budget with the same checkpoint evaluations
(val accuracy + GUS on the tuning half) and the final full evaluation, with the same torch threads.
The Tune side runs N identical trials one at a time with reuse_actors=True; the first trial pays
the worker start-up (torch import), later trials reuse it. Goal: steady-state ratio <= 1.05.

    python bench/bench_trial_overhead.py [--scenario tiny] [--store DIR] [--method gd] [--budget 0.1] [--n 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

for k, v in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
             "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AIR_NEW_OUTPUT": "0"}.items():
    os.environ.setdefault(k, v)

import torch  # noqa: E402

from raysweep.artifacts import LocalStore  # noqa: E402
from raysweep.config import load_scenario  # noqa: E402
from raysweep.prepare.scenario import Scenario, prepare  # noqa: E402
from raysweep.runs import unlearn_scenario  # noqa: E402
from raysweep.sweep.trainable import TrialSpec, unlearn_trial  # noqa: E402


def direct(scen, method, budget, every):
    def on_ckpt(model, info):
        if info["cap_used"] < 1 - 1e-9:
            scen.evaluate(model, parts=("tune",), full=False)
        return False

    res = unlearn_scenario(scen, method, budget, {}, 0, on_ckpt, every)
    scen.evaluate(res.model)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="tiny")
    ap.add_argument("--store", default=None)
    ap.add_argument("--method", default="gd")
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke-test", action="store_true")
    a = ap.parse_args()
    if a.smoke_test:
        a.n = 2
    torch.set_num_threads(a.threads)
    store = a.store or tempfile.mkdtemp(prefix="raysweep-bench-")
    cfg = load_scenario(a.scenario)
    prepare(cfg, store, "cpu", log=lambda m: None)
    scen = Scenario.load(LocalStore(store), cfg)
    every = 0.1

    direct(scen, a.method, a.budget, every)  # warm-up
    t_direct = []
    for _ in range(a.n):
        t = time.perf_counter()
        direct(scen, a.method, a.budget, every)
        t_direct.append(time.perf_counter() - t)

    import ray
    from ray import tune

    ray.init(address="local", num_cpus=a.threads, include_dashboard=False, log_to_driver=False)
    spec = TrialSpec(method=a.method, budget=a.budget, floor=0.0, checkpoint_every=every, threads=a.threads,
                     bundle=scen.bundle(), scenario_hash=scen.hash)
    trainable = tune.with_resources(tune.with_parameters(unlearn_trial, specs={a.method: spec}),
                                   {"cpu": a.threads})
    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(trainable, param_space={"cap_share": 1.0, "method": a.method},
                           tune_config=tune.TuneConfig(num_samples=a.n + 1, reuse_actors=True,
                                                       max_concurrent_trials=1),
                           run_config=tune.RunConfig(name="overhead", storage_path=tmp, verbose=0))
        t = time.perf_counter()
        grid = tuner.fit()
        t_fit = time.perf_counter() - t
        walls = sorted((r.metrics["trial_wall_s"], r.metrics["pid"]) for r in grid)
        pids = {pid for _, pid in walls}
    ray.shutdown()
    med_direct = statistics.median(t_direct)
    steady = statistics.median(w for w, _ in walls[: a.n])  # in-trial wall time of the n fastest trials
    per_trial = t_fit / (a.n + 1)
    print(f"scenario={a.scenario} method={a.method} budget={a.budget} threads={a.threads} n={a.n} "
          f"worker processes={len(pids)}")
    print(f"direct run            {med_direct:.3f}s (median of {a.n})")
    print(f"inside a trial        {steady:.3f}s   ratio {steady / med_direct:.3f}  (goal <= 1.05)")
    print(f"fit() per trial       {per_trial:.3f}s   ratio {per_trial / med_direct:.3f}  "
          f"(incl. Tune bookkeeping, worker start-up amortised over {a.n + 1} trials)")


if __name__ == "__main__":
    main()
