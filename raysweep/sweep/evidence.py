"""The verdict's evidence (a trial's full evaluation), computed once per method after the search.

A trial's final report needs only what the search and the early stopper use: validation accuracy
and the tuning half's effect (the objective). The full evaluation (test set, forget set, MIA, the
attack's own metrics, the GUS of every poison with the held-out half's per-poison scores) is what
the verdict and the report read, and they read it for each method's best trial only. With
`--evidence best` (the default, docs/performance.md) a trial reports the cheap final and keeps its
final weights if it beats its method's best so far; after the search the driver evaluates each
method's best trial in full (in the driver on a local CPU sweep, else as Ray tasks with a trial's
resources) and drops the other weights.
`--evidence all` evaluates every finished trial in full inside the trial, as before.

The evidence reuses what the trial's final report already took on the same weights (validation
accuracy and the tuning half's per-poison scores, kept beside the weights), a large share of a
full evaluation (docs/performance.md).

Where the weights and the evidence files live, and which trial is best: results/layout.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..artifacts import atomic_write_text
from ..registry import load_plugins
from ..results.layout import evidence_path, model_path, read_evidence
from ..results.tables import load_tables
from ..runs import cached_scenario, evaluate_weights


def write_evidence(root: str | Path, trial_id: str, scen) -> None:
    """`evaluate_weights` of a trial's kept weights on `scen`, written to its evidence file (the driver's
    way: after the search, or in the search's idle tail, tail.py)."""
    metrics = evaluate_weights(scen, str(model_path(root, trial_id)))
    atomic_write_text(evidence_path(root, trial_id), json.dumps(metrics, default=float))


def full_evidence(specs: dict, method: str, weights: str) -> dict:
    """`evaluate_weights` in a Ray task (a cluster, or trials on GPUs); `specs`: the sweep's TrialSpecs."""
    spec = specs[method]
    load_plugins(spec.plugins)  # a plug-in attack or model registers itself in this worker too
    torch.set_num_threads(max(1, spec.threads))
    return evaluate_weights(cached_scenario(spec).discovered(spec.discovery), weights)


def complete_evidence(root: str | Path, specs: dict, res: dict, say=print, scen=None) -> dict:
    """After the search: evaluate each method's best finished trial in full (the export's is_best,
    so the two never disagree; those already done are skipped): in the driver on `scen` when given
    (a local CPU sweep: no worker process to start),
    else in parallel as Ray tasks with a trial's resources; then drop the weights of every other
    trial. A failed evaluation is one warning: that row keeps the search's figures only. Returns
    {"trials": n evaluated, "wall_s"}."""
    import ray

    t0 = time.perf_counter()
    trials, _, _ = load_tables(root)
    best = trials[(trials.status == "finished") & trials.is_best.astype(bool)]
    have = read_evidence(root)
    todo = {r.trial_id: r.method for r in best.itertuples()
            if r.trial_id not in have and r.method in specs and getattr(r, "evidence", None) == "deferred"}
    for tid in [t for t in todo if not model_path(root, t).is_file()]:
        say(f"[sweep] {todo.pop(tid)}: the best trial {tid} kept no weights, so its row has no test-set figures "
            "(`raysweep report --seeds N` re-runs its configuration)")
    done = 0
    if todo and scen is not None:
        for tid in todo:
            try:
                write_evidence(root, tid, scen)
                done += 1
            except Exception as e:  # noqa: BLE001 - one method's evidence must not lose the sweep
                say(f"[sweep] {todo[tid]}: the full evaluation of {tid} failed ({e}); "
                    "its row keeps the search's figures only")
    elif todo:
        task = ray.remote(num_cpus=res["cpu"], num_gpus=res["gpu"], max_retries=1)(full_evidence)
        shared = ray.put(specs)  # the scenario bundle goes into the object store once
        refs = {tid: task.remote(shared, m, str(model_path(root, tid))) for tid, m in todo.items()}
        for tid, ref in refs.items():
            try:
                atomic_write_text(evidence_path(root, tid), json.dumps(ray.get(ref), default=float))
                done += 1
            except Exception as e:  # noqa: BLE001 - one method's evidence must not lose the sweep
                say(f"[sweep] {todo[tid]}: the full evaluation of {tid} failed ({str(e).strip().splitlines()[-1]}); "
                    "its row keeps the search's figures only")
    keep = set(best.trial_id)
    for folder, pattern in (("models", "*.pt"), ("evidence", "*.json")):  # evidence: the tail's (tail.py)
        for f in (Path(root) / folder).glob(pattern) if (Path(root) / folder).is_dir() else []:
            if f.name.split(".")[0] not in keep:
                f.unlink(missing_ok=True)
    return {"trials": done, "wall_s": time.perf_counter() - t0}
