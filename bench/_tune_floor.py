"""The floor under any Ray Tune sweep on this machine: `python bench/_tune_floor.py TRIALS SLOTS`.

A process that does what every `raysweep sweep` must do besides its trials' work: import torch and
Ray Tune, start a private Ray, run TRIALS trials SLOTS at a time (1 CPU each, actors reused, as the
sweep does) whose trainable imports what a raysweep trial imports (torch and the trainable's module)
and reports once, then stop Ray and exit. Its wall time, measured by the caller from the process's
start to its exit, is a lower bound of "outside Tune", the idle slots and the trials' set-up in
`bench_sweep.py`'s (a): it assembles no scenario, builds no model and evaluates nothing.
"""
from __future__ import annotations

import shutil
import sys
import tempfile


def noop_trial(config: dict) -> None:
    from ray import tune

    import raysweep.sweep.trainable  # noqa: F401 - torch, the scenario and unlearning code, as a trial

    tune.report({"objective": float(config["i"])})


def main() -> None:
    trials, slots = int(sys.argv[1]), int(sys.argv[2])
    import ray
    import torch  # noqa: F401 - the sweep's driver imports it (the scenario, the registry)
    from ray import tune

    from raysweep.runtime import quick_exit
    from raysweep.sweep.setup import init_ray

    init_ray(None)  # as `raysweep sweep` starts its private Ray: every CPU of the machine
    storage = tempfile.mkdtemp(prefix="rs-floor-")
    tuner = tune.Tuner(
        tune.with_resources(noop_trial, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(metric="objective", mode="min", reuse_actors=True, max_concurrent_trials=slots),
        run_config=tune.RunConfig(storage_path=storage, verbose=0))
    grid = tuner.fit()
    ray.shutdown()
    shutil.rmtree(storage, ignore_errors=True)
    if grid.num_errors:
        sys.exit(f"{grid.num_errors} no-op trial(s) failed")
    print(f"no-op trials: {len(grid)}")
    quick_exit(0)  # as `raysweep` exits: without the interpreter's teardown of torch's and Ray's libraries


if __name__ == "__main__":
    main()
