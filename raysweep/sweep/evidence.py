"""The verdict's evidence, computed once per method after the search instead of once per trial.

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
accuracy and the tuning half's per-poison scores, kept beside the weights): 46 % of a full
evaluation of the default scenario (docs/performance.md).

Layout in the sweep directory:
    models/<trial_id>.pt         final weights of the best trial of each method (others are removed)
    models/<trial_id>.known.pt   what its final report took on them (val_acc, per-poison scores)
    evidence/<trial_id>.json     the full evaluation of that trial, merged into its row on export
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..artifacts import atomic_write, atomic_write_text
from .ledger import read_records


def model_path(root: str | Path, trial_id: str) -> Path:
    return Path(root) / "models" / f"{trial_id}.pt"


def known_path(weights: str | Path) -> Path:
    """Beside saved weights: the figures the trial's final report took on them (`Scenario.scored`'s known)."""
    return Path(weights).with_suffix(".known.pt")


def evidence_path(root: str | Path, trial_id: str) -> Path:
    return Path(root) / "evidence" / f"{trial_id}.json"


def _objective(report: dict) -> float:
    v = report.get("objective")
    return float(v) if v is not None and math.isfinite(float(v)) else math.inf


def keep_if_best(root: str | Path, trial_id: str, method: str, objective: float, model,
                 known: dict | None = None) -> bool:
    """Save the final weights of a trial that is at least as good as every finished trial of its
    method so far (with `known`, what its final report took on them), and drop the weights of that
    method's finished trials it beats (two trials finishing at once may both keep theirs; the driver
    prunes after the search)."""
    mine = {tid: _objective(r) for tid, r in read_records(Path(root) / "done").items()
            if r.get("method") == method and tid != trial_id}
    obj = _objective({"objective": objective})
    if mine and obj > min(mine.values()):
        return False
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if known:  # first, so weights on disk always come with their figures
        atomic_write(known_path(model_path(root, trial_id)), lambda tmp: torch.save(known, tmp))
    atomic_write(model_path(root, trial_id), lambda tmp: torch.save(state, tmp))
    for tid, o in mine.items():
        if o > obj:
            _drop(model_path(root, tid))
    return True


def _drop(weights: Path) -> None:
    weights.unlink(missing_ok=True)
    known_path(weights).unlink(missing_ok=True)


def read_evidence(root: str | Path) -> dict[str, dict]:
    """trial_id -> the full evaluation done after the search."""
    return read_records(Path(root) / "evidence")


def full_evaluation(scen, model, known: dict | None = None) -> dict:
    """The verdict's evidence of `model`: every figure of `Scenario.evaluate`, with the held-out half's
    per-poison scores (histograms and the verdict) for noise attacks; `known` as `Scenario.scored`'s."""
    metrics, scores = scen.scored(model, known=known)
    held = scen.holdout_scores(scores)
    if held:
        metrics["holdout_scores"], metrics["holdout_control_scores"] = held["scores"], held["control"]
    return metrics


def evaluate_weights(scen, weights: str) -> dict:
    """`full_evaluation` of saved weights on `scen` (NaN as None, for JSON)."""
    from ..scenario import scenario_model

    t = time.perf_counter()
    model = scenario_model(scen.cfg, scen.data, scen.device, torch.load(weights, map_location="cpu"))
    known = torch.load(known_path(weights)) if known_path(weights).is_file() else None
    metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in full_evaluation(scen, model, known).items()}
    return {**metrics, "evidence_eval_s": time.perf_counter() - t}


def write_evidence(root: str | Path, trial_id: str, scen) -> None:
    """`evaluate_weights` of a trial's kept weights on `scen`, written to its evidence file (the driver's
    way: after the search, or in the search's idle tail, tail.py)."""
    metrics = evaluate_weights(scen, str(model_path(root, trial_id)))
    atomic_write_text(evidence_path(root, trial_id), json.dumps(metrics, default=float))


def full_evidence(specs: dict, method: str, weights: str) -> dict:
    """`evaluate_weights` in a Ray task (a cluster, or trials on GPUs); `specs`: the sweep's TrialSpecs."""
    from ..registry import load_plugins
    from .trainable import load_scenario_for_trial

    spec = specs[method]
    load_plugins(spec.plugins)  # a plug-in attack or model registers itself in this worker too
    torch.set_num_threads(max(1, spec.threads))
    return evaluate_weights(load_scenario_for_trial(spec), weights)


def complete_evidence(root: str | Path, specs: dict, res: dict, say=print, scen=None) -> dict:
    """After the search: evaluate each method's best finished trial in full (the export's is_best,
    so the two never disagree; those already done are skipped): in the driver on `scen` when given
    (a local CPU sweep: no worker process to start, ~4 s per evaluation saved on the tiny scenario),
    else in parallel as Ray tasks with a trial's resources; then drop the weights of every other
    trial. A failed evaluation is one warning: that row keeps the search's figures only. Returns
    {"trials": n evaluated, "wall_s"}."""
    import ray

    from ..results import load_tables

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


def merged(report: dict, evidence: dict | None) -> dict:
    """A trial's last report with its after-search evidence added (the figures the search saw, such
    as the tuning half's, stay as the trial reported them)."""
    if not evidence or not report.get("final"):
        return report
    return {**evidence, **report}

