"""The verdict's evidence, computed once per method after the search instead of once per trial.

A trial's final report needs only what the search and the early stopper use: validation accuracy
and the tuning half's effect (the objective). The full evaluation (test set, forget set, MIA, the
attack's own metrics, the GUS of every poison with the held-out half's per-poison scores) is what
the verdict and the report read, and they read it for each method's best trial only. With
`--evidence best` (the default, docs/performance.md) a trial reports the cheap final and keeps its
final weights if it beats its method's best so far; after the search the driver evaluates each
method's best trial in full (Ray tasks with a trial's resources) and drops the other weights.
`--evidence all` evaluates every finished trial in full inside the trial, as before.

Layout in the sweep directory:
    models/<trial_id>.pt         final weights of the best trial of each method (others are removed)
    evidence/<trial_id>.json     the full evaluation of that trial, merged into its row on export
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..artifacts import atomic_write, atomic_write_text

MODES = ("best", "all")


def model_path(root: str | Path, trial_id: str) -> Path:
    return Path(root) / "models" / f"{trial_id}.pt"


def evidence_path(root: str | Path, trial_id: str) -> Path:
    return Path(root) / "evidence" / f"{trial_id}.json"


def finished_reports(root: str | Path) -> dict[str, dict]:
    """trial_id -> final report of every finished trial (the done/ records)."""
    folder = Path(root) / "done"
    out = {}
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[f.stem] = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
    return out


def _objective(report: dict) -> float:
    v = report.get("objective")
    return float(v) if v is not None and math.isfinite(float(v)) else math.inf


def best_trials(reports: dict[str, dict]) -> dict[str, str]:
    """method -> trial_id of its lowest objective among finished trials (ties: the first id, as the
    export's is_best)."""
    best: dict[str, tuple[float, str]] = {}
    for tid, r in sorted(reports.items()):
        m, obj = r.get("method"), _objective(r)
        if m is not None and (m not in best or obj < best[m][0]):
            best[m] = (obj, tid)
    return {m: tid for m, (_, tid) in best.items()}


def keep_if_best(root: str | Path, trial_id: str, method: str, objective: float, model) -> bool:
    """Save the final weights of a trial that is at least as good as every finished trial of its
    method so far (two trials finishing at once may both save; the driver prunes after the search)."""
    others = [_objective(r) for tid, r in finished_reports(root).items()
              if r.get("method") == method and tid != trial_id]
    obj = objective if objective is not None and math.isfinite(objective) else math.inf
    if others and obj > min(others):
        return False
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(model_path(root, trial_id), lambda tmp: torch.save(state, tmp))
    return True


def read_evidence(root: str | Path) -> dict[str, dict]:
    """trial_id -> the full evaluation done after the search."""
    folder = Path(root) / "evidence"
    out = {}
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[f.stem] = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
    return out


def full_evidence(specs: dict, method: str, weights: str) -> dict:
    """The full evaluation of saved weights, as a trial's final report under `--evidence all`
    (runs in a Ray task; `specs`: the sweep's per-method TrialSpecs)."""
    from ..scenario import scenario_model
    from .trainable import load_scenario_for_trial

    spec = specs[method]
    t = time.perf_counter()
    torch.set_num_threads(max(1, spec.threads))
    scen = load_scenario_for_trial(spec)
    model = scenario_model(scen.cfg, scen.data, scen.device, torch.load(weights, map_location="cpu"))
    metrics, scores = scen.scored(model)
    held = scen.holdout_scores(scores)
    if held:
        metrics["holdout_scores"], metrics["holdout_control_scores"] = held["scores"], held["control"]
    metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    return {**metrics, "evidence_eval_s": time.perf_counter() - t}


def complete_evidence(root: str | Path, specs: dict, res: dict, say=print) -> dict:
    """After the search: evaluate each method's best finished trial in full (skipping those already
    done), in parallel as Ray tasks with a trial's resources; then drop the weights of every trial
    that is not a method's best. Returns {"trials": n evaluated, "wall_s": seconds}."""
    import ray

    t0 = time.perf_counter()
    reports = finished_reports(root)
    best = best_trials(reports)
    have = read_evidence(root)
    todo = {tid: m for m, tid in best.items() if tid not in have and m in specs and reports[tid].get("evidence") == "deferred"}
    missing = [tid for tid in todo if not model_path(root, tid).is_file()]
    for tid in missing:  # its weights are gone (deleted by hand): the report re-runs it instead
        say(f"[sweep] {todo.pop(tid)}: the best trial {tid} kept no weights; its evidence is missing")
    if todo:
        task = ray.remote(num_cpus=res["cpu"], num_gpus=res["gpu"], max_retries=1)(full_evidence)
        shared = ray.put(specs)  # the scenario bundle goes into the object store once
        refs = {tid: task.remote(shared, m, str(model_path(root, tid))) for tid, m in todo.items()}
        for tid, ref in refs.items():
            atomic_write_text(evidence_path(root, tid), json.dumps(ray.get(ref), default=float))
    keep = set(best.values())
    folder = Path(root) / "models"
    for f in folder.glob("*.pt") if folder.is_dir() else []:
        if f.stem not in keep:
            f.unlink(missing_ok=True)
    return {"trials": len(todo), "wall_s": time.perf_counter() - t0}


def merged(report: dict, evidence: dict | None) -> dict:
    """A trial's last report with its after-search evidence (the evidence's figures win)."""
    if not evidence or not report.get("final"):
        return report
    return {**report, **evidence}

