"""Where a sweep keeps what its trials leave behind, and the one rule for "best".

Layout in the sweep directory (besides Tune's experiment folder, `ledger/` and `done/`: ledger.py):
    sweep.json                   what was asked (`read_sweep_meta` reads and checks it)
    models/<trial_id>.pt         final weights of the best trial of each method (others are removed)
    models/<trial_id>.known.pt   what its final report took on them (val_acc, per-poison scores)
    evidence/<trial_id>.json     the full evaluation of that trial, merged into its row on export

"Best" is defined here once: the lowest `objective_value` among a method's finished trials (a tie goes
to the trial evaluated in full), whether read from the trials' own records during the search
(`keep_if_best`, `best_finished`) or from the exported table (`tables.best_rows`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TypedDict

import torch

from ..artifacts import atomic_write, read_json
from ..errors import ArtifactError, RaysweepError
from ..registry import load_plugins
from .ledger import read_records


class SweepMeta(TypedDict, total=False):
    """sweep.json: what was asked and what the search was judged against (sweep/search.py writes it)."""

    name: str                 # the sweep's name (its folder)
    scenario: str             # the scenario's content hash
    scenario_name: str
    attack: str               # the attack's registry name
    store: str                # where the scenario artifact lives (a store URI)
    config: dict              # the SweepConfig as run: methods, trials, budget, seed, tolerance, ...
    spaces: dict              # method -> {params, fixed, warm_start, source}
    references: dict          # {"none": θ_initial's metrics, "retrain": θ_retrain's}
    reference_scores: dict    # per-poison scores of the references (noise attacks)
    holdout_rows: list        # the held-out half's poison rows
    layout: str               # Tune's experiment folder inside the sweep folder
    versions: dict
    plugins: str              # the plug-ins the sweep ran with ($RAYSWEEP_PLUGINS form)
    floor: float              # the accuracy floor of the objective
    n_test: int
    train_compute: float
    k: int
    created: str


# the keys every reader relies on, and the JSON types of the others where they are present (readers that
# need one of those ask for it with `require`)
REQUIRED = {"name": str, "scenario": str, "config": dict}
TYPED = {"attack": str, "spaces": dict, "references": dict, "layout": str, "versions": dict, "plugins": str,
         "holdout_rows": list, "reference_scores": dict, "store": str}
REMEDY = "restore it from a copy, or re-run the sweep under a new --name"


def read_sweep_meta(sweep: str | Path) -> SweepMeta:
    """sweep.json of a sweep folder (or an export folder), checked, with the plug-ins the sweep ran with
    loaded again (a plug-in attack's or method's registry entry is needed to export, report or re-run
    it). Any damage is one line naming the file."""
    p = Path(sweep) / "sweep.json"
    if not p.is_file():
        raise RaysweepError(f"{sweep} is not a sweep directory (no sweep.json)")
    remedy = REMEDY
    meta = read_json(p, remedy)
    for key, typ in {**REQUIRED, **{k: t for k, t in TYPED.items() if k in meta}}.items():
        if not isinstance(meta.get(key), typ):
            raise ArtifactError(f"{p} is damaged ({key}: a JSON {typ.__name__} expected): {remedy}")
    for ref in ("none", "retrain") if "references" in meta else ():
        if not isinstance(meta["references"].get(ref), dict):
            raise ArtifactError(f"{p} is damaged (references.{ref}: a mapping of figures expected): {remedy}")
    for method, space in meta.get("spaces", {}).items():
        if not isinstance(space, dict) or not isinstance(space.get("params", {}), dict) or \
                not isinstance(space.get("fixed", {}), dict):
            raise ArtifactError(f"{p} is damaged (spaces.{method}: a mapping with params and fixed expected): {remedy}")
    for key, typ in (("seed", int), ("budget", (int, float)), ("trials", int)):
        v = meta["config"].get(key)
        if (key in ("seed", "budget") or key in meta["config"]) and (not isinstance(v, typ) or isinstance(v, bool)):
            raise ArtifactError(f"{p} is damaged (config.{key} missing or of the wrong type): {remedy}")
    load_plugins(meta.get("plugins") or "", source=f"{p} (plugins)")
    return meta



def model_path(root: str | Path, trial_id: str) -> Path:
    return Path(root) / "models" / f"{trial_id}.pt"


def known_path(weights: str | Path) -> Path:
    """Beside saved weights: the figures the trial's final report took on them (`Scenario.scored`'s known)."""
    return Path(weights).with_suffix(".known.pt")


def evidence_path(root: str | Path, trial_id: str) -> Path:
    return Path(root) / "evidence" / f"{trial_id}.json"


def objective_value(report: dict) -> float:
    """A report's objective as the search ranks it: lower is better; none, NaN or inf ranks last."""
    v = report.get("objective")
    return float(v) if v is not None and math.isfinite(float(v)) else math.inf


def keep_if_best(root: str | Path, trial_id: str, method: str, objective: float, model,
                 known: dict | None = None) -> bool:
    """Save the final weights of a trial that is at least as good as every finished trial of its
    method so far (with `known`, what its final report took on them), and drop the weights of that
    method's finished trials it beats (two trials finishing at once may both keep theirs; the driver
    prunes after the search)."""
    mine = {tid: objective_value(r) for tid, r in read_records(Path(root) / "done").items()
            if r.get("method") == method and tid != trial_id}
    obj = objective_value({"objective": objective})
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

def rank_key(objective, trial_id: str, evaluated: bool = False) -> tuple:
    """The one order of "best" among a method's finished trials: the lower objective first (none, NaN or
    inf last); at a tie, the trial already evaluated in full after the search, then the lower trial id."""
    return objective_value({"objective": objective}), not evaluated, str(trial_id)


def require(meta: SweepMeta, sweep: str | Path, *keys: str) -> None:
    """The keys of sweep.json this reader needs beyond the ones every reader does; one line if absent."""
    missing = [k for k in keys if k not in meta]
    if missing:
        raise ArtifactError(f"{Path(sweep) / 'sweep.json'} is damaged (no {', '.join(missing)}): {REMEDY}")


def best_finished(root: str | Path, method: str) -> str | None:
    """The method's best finished trial so far (`rank_key`, as the export's is_best) if it kept its
    weights, else None."""
    have = read_evidence(root)
    done = [rank_key(r.get("objective"), tid, tid in have) + (tid,)
            for tid, r in read_records(Path(root) / "done").items() if r.get("method") == method]
    ranked = sorted(k for k in done if math.isfinite(k[0]))
    if not ranked or not model_path(root, ranked[0][-1]).is_file():
        return None
    return ranked[0][-1]


def merged(report: dict, evidence: dict | None) -> dict:
    """A trial's last report with its after-search evidence added (the figures the search saw, such
    as the tuning half's, stay as the trial reported them)."""
    if not evidence or not report.get("final"):
        return report
    return {**evidence, **report}

