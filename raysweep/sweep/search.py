"""Run a sweep: every method's seeded Optuna search inside one Ray Tune experiment.

Layout of a sweep directory (`<storage_path>/<name>/`):
    sweep.json          what was asked (scenario, methods, budget, trials, seed, spaces, ...)
    trials/             the Tune experiment: one folder per trial (any method; params.json names it)
    ledger/, done/      what the driver saw happen to each trial; finished trials' final reports
    models/, evidence/  each method's best trial: its weights and its full evaluation (sweep/evidence.py)
    utilisation.json    busy / available slot-seconds and the share of trial time spent evaluating
    early_stopping.jsonl each early-stopping decision: trial, method, step, objective, the trials it was judged on
One `Tuner` runs all methods (sweep/dispatch.py): a free slot takes the next trial of any method whose
search still wants one; each method keeps its own search and its own early stopping.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from ..artifacts import Store, atomic_write_text, open_store
from ..prepare.scenario import Scenario, derive_seed, rounded_scores, versions
from ..registry import loaded_plugins
from ..results.ledger import mark_lost, read_ledger
from ..unlearn import METHODS
from .dispatch import MethodDispatchScheduler, MethodDispatchSearch
from .evidence import complete_evidence
from .ledger import trial_ledger
from .observe import LiveStatus
from .schedule import schedule_of
from .setup import (  # noqa: F401  (re-exported: the sweep's public API lives here)
    RESUME_FIELDS,
    SweepConfig,
    _say,
    check_address,
    check_resume,
    check_sweep_name_free,
    claim_sweep_dir,
    init_ray,
    resources,
    sweep_dir,
    trial_resources,
)
from .spaces import load_space
from .tail import TailEvidence
from .trackers import StoredOptunaSearch, mlflow_callback, open_optuna_storage, optuna_study_kwargs
from .trainable import TrialSpec, unlearn_trial

EXPERIMENT = "trials"  # the Tune experiment's folder inside the sweep directory


def search_seed(seed: int, method: str) -> int:
    """A method's sampler seed: from the sweep seed and the method's own name only, so adding a method
    changes no other method's trials."""
    return derive_seed(seed, f"search:{method}")


def run_sweep(scen: Scenario, cfg: SweepConfig, store: Store | str, resume: bool = False,
              device: str = "cpu", data_dir: str | None = None, auto_name: bool = False) -> tuple[Path, bool]:
    """Run (or resume) the sweep. Returns (its directory, complete). Ctrl-C leaves it resumable.
    Everything is checked (spaces, resources, name) before the sweep directory is created."""
    import ray
    from ray import tune


    cfg.check()
    store = open_store(store)
    layers = len(scen.new_model("initial").layer_groups())  # a bound `all` (EU-k's k) resolves to these
    spaces = {m: load_space(m, cfg.spaces_dir).resolved(layers) for m in cfg.methods}  # checked before anything runs
    res = resources(cfg)
    if resume:
        check_sweep_name_free(cfg, True)
        check_resume(cfg, scen.hash)
    elif not auto_name:
        check_sweep_name_free(cfg, False)
    retrain = scen.manifest["metrics"]["retrain"]
    floor = retrain["val_acc"] - cfg.tolerance
    meta = {"scenario": scen.hash, "holdout_rows": scen.holdout_rows.tolist(),
            "attack": scen.cfg.attack, "plugins": loaded_plugins(), "n_test": len(scen.data.test),
            "reference_scores": reference_scores(scen), "scenario_name": scen.cfg.name, "store": store.uri,
            "floor": floor, "references": {"none": scen.manifest["metrics"]["initial"], "retrain": retrain},
            "train_compute": scen.train_compute, "k": scen.poisoned.k, "layout": EXPERIMENT,
            "spaces": {m: {"params": {n: {k: a} for n, (k, a) in s.params.items()}, "fixed": s.fixed,
                           "warm_start": s.warm_start, "source": s.source}
                       for m, s in spaces.items()},
            "versions": versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    storage = None
    if cfg.optuna_storage:  # a study named after the sweep per method; refused if it exists and not resuming
        storage = open_optuna_storage(cfg.optuna_storage, cfg.name, cfg.methods, resume)
    root = sweep_dir(cfg) if resume else claim_sweep_dir(cfg, auto_name)  # the name is final from here
    if not resume:
        meta = {"name": cfg.name, **meta, "config": asdict(cfg)}
        atomic_write_text(root / "sweep.json", json.dumps(meta, indent=2, default=str))

    threads = max(1, int(math.floor(cfg.cpus_per_trial)))
    use_bundle = not cfg.address  # local: object store; cluster: workers read the shared store
    bundle = scen.bundle() if use_bundle else None
    plan = schedule_of(cfg)
    specs = {m: TrialSpec(method=m, budget=cfg.budget, floor=floor, seed=cfg.seed, fixed=dict(spaces[m].fixed),
                          checkpoint_every=cfg.checkpoint_every, threads=threads,
                          evaluate_at=plan.evaluate_at,
                          device="cuda" if res["gpu"] > 0 else "cpu", bundle=bundle,
                          store=None if use_bundle else store, scenario_hash=scen.hash,
                          data_dir=data_dir, sweep_root=str(root), plugins=loaded_plugins(),
                          evidence=cfg.evidence, discovery=cfg.discovery)
             for m in cfg.methods}
    trainable = tune.with_resources(tune.with_parameters(unlearn_trial, specs=specs), res)
    path = root / EXPERIMENT
    slots = cfg.slots(ray.cluster_resources())
    _say(f"[sweep] {cfg.name}: {', '.join(cfg.methods)} x {cfg.trials} trials at once, budget cap {cfg.budget:g}, "
         f"{res['cpu']:g} CPU / {res['gpu']:g} GPU per trial, {slots} slots, schedule {plan.name} (rungs at "
         f"{', '.join(f'{r:.3g}' for r in plan.rung_shares())} of the cap) -> {root}")
    status = LiveStatus({m: cfg.trials for m in cfg.methods}, method_of=_method_of, title=cfg.name)
    callbacks = [status, trial_ledger(root, _method_of)]
    local = not cfg.address and not res["gpu"]  # the driver holds the scenario: no worker to start
    tail = None  # each method's evidence in the search's idle tail, where it can be (tail.py)
    if local and cfg.evidence == "best" and not resume:
        tail = TailEvidence(root, scen.discovered(cfg.discovery), {m: cfg.trials for m in cfg.methods}, slots,
                            _method_of, threads)
        callbacks.append(tail)
    if cfg.mlflow:
        callbacks.append(mlflow_callback(cfg.mlflow, cfg.name, method_of=_method_of, tags={"sweep": cfg.name}))
    if resume and tune.Tuner.can_restore(str(path)):
        mark_lost(root)  # what the killed driver left `running`; the restored trials start again
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = _new_tuner(tune, trainable, spaces, cfg, root, callbacks, storage, slots)
    t0, wall0 = time.perf_counter(), time.time()
    try:
        grid = tuner.fit()
        cut = len(grid) < cfg.trials * len(cfg.methods)
    except KeyboardInterrupt:
        cut = True
    finally:  # the tail's evaluation under way ends, and no other starts, whatever ended the search
        in_tail = tail.finish() if tail is not None else {"trials": 0, "slot_s": 0.0}
    search_wall = time.perf_counter() - t0
    cut = cut or any(e["status"] == "running" for e in read_ledger(root).values())  # an interrupted fit left it so
    ev = {"trials": 0, "wall_s": 0.0}
    if not cut:  # each method's best trial, in full (evidence.py); a resumed sweep does it when it ends
        ev = complete_evidence(root, specs, res, _say, scen.discovered(cfg.discovery) if local else None)
    ev = {**ev, "tail_trials": in_tail["trials"], "tail_slot_s": in_tail["slot_s"]}
    wall = time.perf_counter() - t0
    ledger = read_ledger(root)
    for m in cfg.methods:
        ended = [e for e in ledger.values() if e["method"] == m]
        counts = {s: sum(e["status"] == s for e in ended) for s in ("finished", "stopped", "errored")}
        _say(f"[sweep] {m}: {counts['finished']} finished, {counts['errored']} errored, "
             f"{counts['stopped']} stopped early, {max(0, cfg.trials - sum(counts.values()))} not run")
    use = utilisation(root, ledger, slots, wall0, search_wall, ev)
    _say(f"[sweep] {wall:.0f}s; slots busy {use['busy_share']:.0%} ({use['busy_slot_s']:.0f} of "
         f"{use['available_slot_s']:.0f} slot-seconds, {slots} slots); checkpoint evaluation "
         f"{use['eval_share']:.0%} of trial time; evidence of {ev['trials'] + ev['tail_trials']} best trial(s): "
         f"{ev['tail_trials']} in the search's idle tail, {ev['trials']} after it in {ev['wall_s']:.0f}s")
    if cut:
        _say(f"[sweep] interrupted: resume with `raysweep sweep --resume --name {cfg.name} "
             f"--storage-path {Path(cfg.storage_path).resolve()} ...` (same scenario and options)")
    return root, not cut


def _method_of(trial) -> str:
    return (trial.config or {}).get("method", "?")


def utilisation(root: Path, ledger: dict, slots: int, wall0: float, wall: float, ev: dict | None = None) -> dict:
    """Busy slot-seconds (trial start to end, this session) over available slot-seconds (slots x the
    search's wall time), the share of the trials' time spent in checkpoint evaluation, the time the
    after-search evidence took (evidence_trials, evidence_s) and the evidence done in the search's
    idle tail (evidence_tail_trials, evidence_tail_slot_s: seconds x idle slots used, within the search's
    idle slot-seconds); appended to utilisation.json (one entry per session: a resumed sweep adds one)."""
    busy = sum(min(e["ended"] or wall0 + wall, wall0 + wall) - max(e["started"] or wall0, wall0)
               for e in ledger.values() if (e.get("ended") or 0) > wall0)
    evals = sum(float(e.get("eval_s") or 0.0) for e in ledger.values())
    trial_s = sum(float(e.get("trial_s") or 0.0) for e in ledger.values())
    entry = {"started": wall0, "wall_s": round(wall, 2), "slots": slots, "busy_slot_s": round(busy, 2),
             "available_slot_s": round(slots * wall, 2), "busy_share": busy / (slots * wall) if wall else 0.0,
             "eval_s": round(evals, 2), "trial_s": round(trial_s, 2), "eval_share": evals / trial_s if trial_s else 0.0,
             "evidence_trials": (ev or {}).get("trials", 0), "evidence_s": round((ev or {}).get("wall_s", 0.0), 2),
             "evidence_tail_trials": (ev or {}).get("tail_trials", 0),
             "evidence_tail_slot_s": round((ev or {}).get("tail_slot_s", 0.0), 2)}
    path = root / "utilisation.json"
    sessions = json.loads(path.read_text()) if path.is_file() else []
    atomic_write_text(path, json.dumps(sessions + [entry], indent=1))
    return entry


def reference_scores(scen: Scenario) -> dict:
    """Per-sample GUS scores of θ_initial and θ_retrain (all k poisons) and their fresh-noise controls:
    from the scenario's manifest (`prepare` keeps them), computed here for a scenario prepared before."""
    if "reference_scores" in scen.manifest:
        return scen.manifest["reference_scores"]
    out = {}
    for ref, which in (("none", "initial"), ("retrain", "retrain")):
        _, scores = scen.scored(scen.new_model(which), parts=("all",), full=False)
        if scores:
            out[ref] = rounded_scores(scores)
    return out


def make_sampler(cfg: SweepConfig, method: str):
    """A method's seeded TPE sampler; under the deep schedule pinned to multivariate with the constant liar
    (a trial still running counts as a poor result, so the trials running at once are not suggested
    alike). Optuna 5.0 defaults to both for one objective; pinned, the deep schedule keeps them whatever
    a later Optuna defaults to."""

    import optuna

    seed = search_seed(cfg.seed, method)
    if not schedule_of(cfg).constant_liar:
        return optuna.samplers.TPESampler(seed=seed)
    with warnings.catch_warnings():  # both options are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def make_searchers(spaces: dict, cfg: SweepConfig, storage=None) -> dict:
    """One seeded Optuna (TPE) search per method; a method's seed depends on its own name only."""
    metric, mode = (["effect", "val_acc"], ["min", "max"]) if cfg.multi_objective else ("objective", "min")
    searchers = {}
    for m, space in spaces.items():
        study = optuna_study_kwargs(storage, cfg.name, m) if storage is not None else {}
        searchers[m] = StoredOptunaSearch(space=space.optuna(), metric=metric, mode=mode, sampler=make_sampler(cfg, m),
                                          points_to_evaluate=space.warm_start or None, **study)
    return searchers


def make_scheduler(cfg: SweepConfig, root: Path | None = None) -> MethodDispatchScheduler:
    """One ASHA per iterative method on the schedule's rungs (schedule.py); a one-shot method (SSD) has no
    budget axis to stop on, and the `full` schedule stops no trial: no ASHA."""
    from ray.tune.schedulers import ASHAScheduler

    plan = schedule_of(cfg)
    return MethodDispatchScheduler({m: ASHAScheduler(time_attr="step", max_t=plan.max_t, grace_period=plan.grace,
                                                     reduction_factor=plan.reduction_factor)
                                    if METHODS.get(m).iterative and plan.stops_early else None
                                    for m in cfg.methods}, root=root)


def _new_tuner(tune, trainable, spaces, cfg: SweepConfig, root: Path, callbacks: list, storage, slots: int):
    metric, mode = (["effect", "val_acc"], ["min", "max"]) if cfg.multi_objective else ("objective", "min")
    searchers = make_searchers(spaces, cfg, storage)
    search = MethodDispatchSearch(searchers, {m: cfg.trials for m in cfg.methods})
    scheduler = None if cfg.multi_objective else make_scheduler(cfg, root)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler,
                                    metric=None if cfg.multi_objective else metric,
                                    mode=None if cfg.multi_objective else mode,
                                    num_samples=cfg.trials * len(cfg.methods), reuse_actors=cfg.reuse_actors,
                                    # also Tune's count of trials it prepares ahead: without it, a custom
                                    # searcher gets one pending trial at a time and short trials run serially
                                    max_concurrent_trials=slots),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(root), verbose=0, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=cfg.max_failures)),
    )
