"""Run a sweep: one Optuna search (seeded TPE, one Ray Tune Tuner) per unlearning method.

Layout of a sweep directory (`<storage_path>/<name>/`):
    sweep.json          what was asked (scenario, methods, budget, trials, seed, spaces, ...)
    <method>/           the Tune experiment of that method (trial dirs with result.json)
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ray.tune import Callback

from ..artifacts import atomic_write_text
from ..errors import ConfigError, RaysweepError
from ..scenario import Scenario, versions
from ..unlearn import METHODS
from . import RAY_ENV
from .spaces import load_space
from .trainable import TrialSpec, unlearn_trial


@dataclass
class SweepConfig:
    methods: list[str]
    trials: int = 8                  # trials per method
    budget: float = 0.1              # cap per trial, fraction of θ_initial's training compute
    name: str = ""
    storage_path: str = ""           # where sweeps live (absolute path or URI); default <store>/sweeps
    address: str | None = None       # an existing Ray cluster ("auto", "ray://..."); None: start a local one
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None   # None: 0 without GPUs; 1/4 of a card with GPUs (4 trials per card)
    max_concurrent: int = 0          # 0: as many as the resources allow
    multi_objective: bool = False    # search (|GUS_tune|, val_acc) and mark the Pareto set
    tolerance: float = 0.02          # accuracy floor = θ_retrain val_acc - tolerance
    seed: int = 0
    checkpoint_every: float = 0.1    # report (and let ASHA judge) every this share of a trial's budget
    asha_grace: int = 3              # ASHA: checkpoints before a trial may be stopped
    max_failures: int = 1            # retries of a trial that raises
    spaces_dir: str | None = None
    reuse_actors: bool = True
    fault: dict | None = None        # tests only (see trainable.TrialSpec.fault)

    def check(self) -> "SweepConfig":
        if not self.methods:
            raise ConfigError("methods", self.methods, f"one or more of {', '.join(METHODS.names())}")
        for m in self.methods:
            METHODS.get(m, "methods")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError("methods", ",".join(self.methods), "each method once")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError("trials", self.trials, "an integer >= 1")
        if not 0 < self.budget <= 1:
            raise ConfigError("budget", self.budget, "a fraction of the training compute in (0, 1]")
        if not self.cpus_per_trial > 0:
            raise ConfigError("cpus_per_trial", self.cpus_per_trial, "a number > 0")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise ConfigError("gpus_per_trial", self.gpus_per_trial, "a number >= 0")
        if not 0 < self.checkpoint_every <= 1:
            raise ConfigError("checkpoint_every", self.checkpoint_every, "a fraction in (0, 1]")
        if not 0 <= self.tolerance < 1:
            raise ConfigError("tolerance", self.tolerance, "an accuracy difference in [0, 1)")
        return self


RESUME_FIELDS = ("methods", "trials", "budget", "multi_objective", "tolerance", "seed", "checkpoint_every")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join `address`, or start a private local instance (loopback only, no usage reporting)."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: our one line per trial, no tables
    import logging

    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def resources(cfg: SweepConfig) -> dict:
    """Per-trial resources from what the cluster has: never a GPU that does not exist."""
    import ray

    have = ray.cluster_resources()
    gpus = have.get("GPU", 0)
    g = cfg.gpus_per_trial
    if g is None:
        g = 0.25 if gpus >= 1 else 0.0
    if g > 0 and gpus <= 0:
        raise ConfigError("gpus_per_trial", g, "0: the Ray cluster has no GPU")
    if g > gpus:
        raise ConfigError("gpus_per_trial", g, f"at most the cluster's {gpus:g} GPUs")
    cpus = have.get("CPU", 1)
    if cfg.cpus_per_trial > cpus:
        raise ConfigError("cpus_per_trial", cfg.cpus_per_trial, f"at most the cluster's {cpus:g} CPUs")
    return {"cpu": cfg.cpus_per_trial, "gpu": g}


def sweep_dir(cfg: SweepConfig) -> Path:
    return Path(cfg.storage_path).expanduser().resolve() / cfg.name


def _check_resume(saved: dict, cfg: SweepConfig, scen_hash: str) -> None:
    if saved["scenario"] != scen_hash:
        raise RaysweepError(f"--resume: the sweep {cfg.name} was run on scenario {saved['scenario']}, "
                            f"not {scen_hash}: pass the same --scenario or a new --name")
    for f in RESUME_FIELDS:
        if saved["config"][f] != getattr(cfg, f):
            raise ConfigError(f, getattr(cfg, f), f"{saved['config'][f]!r} as when the sweep {cfg.name} started "
                              "(drop the option or start a new --name)")


def run_sweep(scen: Scenario, cfg: SweepConfig, store_root: str, resume: bool = False,
              device: str = "cpu", data_dir: str | None = None) -> tuple[Path, bool]:
    """Run (or resume) the sweep. Returns (its directory, complete). Ctrl-C leaves it resumable."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    cfg.check()
    spaces = {m: load_space(m, cfg.spaces_dir) for m in cfg.methods}  # validated before anything runs
    root = sweep_dir(cfg)
    meta_path = root / "sweep.json"
    if resume:
        if not meta_path.is_file():
            raise ConfigError("name", cfg.name, f"an existing sweep under {root.parent} to resume")
        _check_resume(json.loads(meta_path.read_text()), cfg, scen.hash)
    elif meta_path.exists():
        raise ConfigError("name", cfg.name, f"a new name: {root} exists (or pass --resume)")
    retrain = scen.manifest["metrics"]["retrain"]
    floor = retrain["val_acc"] - cfg.tolerance
    meta = {"name": cfg.name, "scenario": scen.hash, "holdout_rows": scen.holdout_rows.tolist(),
            "attack": scen.cfg.attack, "attack_metric": scen.attack.metric, "n_test": len(scen.data.test),
            "reference_scores": reference_scores(scen), "scenario_name": scen.cfg.name, "store": store_root,
            "config": {k: v for k, v in asdict(cfg).items() if k != "fault"}, "floor": floor,
            "references": {"none": scen.manifest["metrics"]["initial"], "retrain": retrain},
            "train_compute": scen.train_compute, "k": scen.poisoned.k,
            "spaces": {m: {"params": {n: {k: a} for n, (k, a) in s.params.items()}, "fixed": s.fixed,
                           "warm_start": s.warm_start, "source": s.source}
                       for m, s in spaces.items()},
            "versions": versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if not resume:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str))

    res = resources(cfg)
    threads = max(1, int(math.floor(cfg.cpus_per_trial)))
    use_bundle = not cfg.address  # local: object store; cluster: workers read the shared store
    interrupted = False
    for i, method in enumerate(cfg.methods):
        space = spaces[method]
        spec = TrialSpec(method=method, budget=cfg.budget, floor=floor, seed=cfg.seed,
                         fixed=dict(space.fixed), checkpoint_every=cfg.checkpoint_every, threads=threads,
                         device="cuda" if res["gpu"] > 0 else "cpu",
                         bundle=scen.bundle() if use_bundle else None,
                         store_root=None if use_bundle else store_root, scenario_hash=scen.hash,
                         data_dir=data_dir, fault=cfg.fault)
        trainable = tune.with_resources(tune.with_parameters(unlearn_trial, spec=spec), res)
        path = root / method
        t0 = time.perf_counter()
        _say(f"[sweep] {method} ({i + 1}/{len(cfg.methods)}): {cfg.trials} trials, budget cap {cfg.budget:g}, "
             f"{res['cpu']:g} CPU / {res['gpu']:g} GPU per trial -> {path}")
        if resume and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False)
        else:
            tuner = _new_tuner(tune, ASHAScheduler, OptunaSearch, optuna, trainable, space, cfg, root, method)
        try:
            grid = tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
            break
        done = sum(1 for r in grid if r.metrics and r.metrics.get("final"))
        errors = len(grid.errors)
        cut = len(grid) < cfg.trials or _unfinished(grid)
        _say(f"[sweep] {method}: {done} finished, {errors} errored, {len(grid) - done - errors} "
             f"{'unfinished' if cut else 'stopped early'}, in {time.perf_counter() - t0:.0f}s")
        if cut:
            interrupted = True
            break
    if interrupted:
        _say(f"[sweep] interrupted: resume with `raysweep sweep --resume --name {cfg.name} "
             f"--storage-path {Path(cfg.storage_path).resolve()} ...` (same scenario and options)")
    return root, not interrupted


def reference_scores(scen: Scenario) -> dict:
    """Per-sample GUS scores of θ_initial and θ_retrain (all k poisons) and their fresh-noise controls."""
    out = {}
    for ref, which in (("none", "initial"), ("retrain", "retrain")):
        m = scen.evaluate(scen.new_model(which), parts=("all",), full=False)
        if "_scores" in m:
            out[ref] = {"scores": [round(float(v), 5) for v in m["_scores"]],
                        "control": [round(float(v), 5) for v in m["_control_scores"]]}
    return out


def _unfinished(grid) -> bool:
    """Trials that neither finished, errored nor were stopped by the scheduler (an interrupted fit)."""
    try:
        states = [t.status for t in grid._experiment_analysis.trials]  # noqa: SLF001
    except AttributeError:
        return False
    return any(s in ("PENDING", "RUNNING", "PAUSED") for s in states)


def _new_tuner(tune, ASHAScheduler, OptunaSearch, optuna, trainable, space, cfg, root, method):
    sampler_seed = (cfg.seed * 1000003 + sorted(METHODS.names()).index(method)) % (2**31)
    if cfg.multi_objective:
        searcher = OptunaSearch(space=space.optuna(), metric=["effect", "val_acc"], mode=["min", "max"],
                                sampler=optuna.samplers.TPESampler(seed=sampler_seed),
                                points_to_evaluate=space.warm_start or None)
        scheduler, metric, mode = None, None, None
    else:
        searcher = OptunaSearch(space=space.optuna(), metric="objective", mode="min",
                                sampler=optuna.samplers.TPESampler(seed=sampler_seed),
                                points_to_evaluate=space.warm_start or None)
        scheduler = None
        if METHODS.get(method).iterative:  # a one-shot method (SSD) has no budget axis to stop on
            n_steps = int(round(1 / cfg.checkpoint_every)) + 1
            scheduler = ASHAScheduler(time_attr="step", max_t=n_steps, grace_period=min(cfg.asha_grace, n_steps),
                                      reduction_factor=3)
        metric, mode = "objective", "min"
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, metric=metric, mode=mode,
                                    num_samples=cfg.trials, reuse_actors=cfg.reuse_actors,
                                    max_concurrent_trials=cfg.max_concurrent or None),
        run_config=tune.RunConfig(name=method, storage_path=str(root), verbose=0,
                                  callbacks=[Progress(method, cfg.trials)],
                                  failure_config=tune.FailureConfig(max_failures=cfg.max_failures)),
    )


class Progress(Callback):
    """One line per finished, stopped or failed trial."""

    def __init__(self, method: str, total: int):
        self.method, self.total, self.ended = method, total, 0

    def _line(self, trial, what: str) -> None:
        self.ended += 1
        r = trial.last_result or {}
        figs = ""
        if r:
            figs = (f"val_acc {r.get('val_acc', float('nan')):.3f}  tune_z {r.get('tune_z') or float('nan'):+.2f}  "
                    f"objective {r.get('objective', float('nan')):.3f}  budget {r.get('budget_spent', 0):.3f}")
        _say(f"[{self.method}] trial {self.ended}/{self.total} {what:<8} {figs}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, "finished" if (trial.last_result or {}).get("final") else "stopped")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "errored")
