"""One configuration on one prepared scenario: unlearn θ_initial with a method under a budget, and
evaluate the result. Everything that runs a configuration calls this module: `raysweep unlearn`, the
sweep's trials and after-search evidence, the report's re-runs on fresh seeds, the budget curve,
`raysweep discovery` and `raysweep explain`.

    raysweep unlearn --method gd --budget 0.1 --hp lr=1e-2     (cli/unlearn.py: `unlearn_and_evaluate`)
"""
from __future__ import annotations

import math
import sys
import time

import pandas as pd
import torch

from .defaults import CHECKPOINT_EVERY
from .prepare.scenario import Scenario, scenario_model
from .results.layout import known_path
from .stats.evidence import missing
from .unlearn import METHODS, run_unlearning

_SCENARIOS: dict[str, Scenario] = {}


def unlearn_scenario(scen: Scenario, method: str, budget: float, hparams: dict | None = None, seed: int = 0,
                     on_checkpoint=None, checkpoint_every: float = CHECKPOINT_EVERY, log=None):
    """θ_initial -> unlearned model; returns the UnlearnResult."""
    model = scen.new_model("initial")
    ps = scen.poisoned
    return run_unlearning(METHODS.get(method, "method")(), model, ps.forget(), ps.retain(), ps.train, budget,
                          scen.train_compute, hparams, seed, on_checkpoint, checkpoint_every, log)


def result_row(scen: Scenario, method: str, res, metrics: dict) -> dict:
    return {"method": method, **metrics, "budget_spent": res.budget_spent, "budget_cap": res.cap /
            scen.train_compute, "spent_sample_grads": res.spent, "steps": res.steps, "diverged": res.diverged,
            "wall_s": res.wall_s, "hparams": res.hparams}


def unlearn_and_evaluate(store, cfg, method, budget, hparams, seed, device, data_dir=None, log=None) -> dict:
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    scen = Scenario.load(store, cfg, device, data_dir)
    res = unlearn_scenario(scen, method, budget, hparams, seed, log=say)
    return result_row(scen, method, res, scen.evaluate(res.model))

def is_cached(scenario_hash: str) -> bool:
    """Whether this process holds the scenario already (a Ray task then need not fetch its bundle)."""
    return scenario_hash in _SCENARIOS


def cached_scenario(spec) -> Scenario:
    """The scenario a worker process runs on, assembled once per process and kept (reused actors and
    Ray tasks skip even that). `spec` carries scenario_hash, device, data_dir and either bundle (the
    artifact through Ray's object store) or store (a shared store on a cluster): sweep/trainable.py's
    TrialSpec."""
    scen = _SCENARIOS.get(spec.scenario_hash)
    if scen is None:
        device = torch.device(spec.device if spec.device != "cuda" or torch.cuda.is_available() else "cpu")
        if spec.bundle is not None:
            scen = Scenario.from_bundle(spec.bundle, device, spec.data_dir)
        else:
            scen = Scenario.load(spec.store, spec.scenario_hash, device, spec.data_dir)
        _SCENARIOS.clear()
        _SCENARIOS[spec.scenario_hash] = scen
    return scen


def best_hparams(r: pd.Series) -> dict:
    """A trial row's hyperparameters (the hp_ columns) as plain values."""
    return {k[3:]: (v.item() if hasattr(v, "item") else v) for k, v in r.items()
            if k.startswith("hp_") and not missing(v)}


def run_config(scen, r: pd.Series, method: str, meta: dict, seed: int, log, budget: float | None = None,
               keep_model: bool = False, discovery: float = 1.0, relearn: float = 0.0,
               relearn_lr: float | None = None) -> dict:
    """One run of the configuration in row `r`; budget: the sweep's cap x the row's cap_share unless
    given (the budget curve, raysweep/curve/, passes its own); keep_model: the unlearned model too,
    under "model" (raysweep/explain/ measures it); discovery: the share of the poisons requested
    (`Scenario.discovered`); relearn > 0: the relearning probe after it (`relearn_probe`, that share of
    the budget), its figures prefixed relearn_."""
    # the method's own Hyper validates and converts (3.0 -> 3 for integer fields)
    hp = best_hparams(r)
    if budget is None:
        share = r.get("cap_share")
        budget = float(meta["config"]["budget"]) * (1.0 if missing(share) else float(share))
    log(f"[report] {method}: seed {seed} on scenario {scen.hash}" + (f", {discovery:g} of the poisons found"
                                                                       if discovery < 1 else ""))
    every = (meta.get("config") or {}).get("checkpoint_every")  # a diverged run restores what its trial did
    view = scen.discovered(discovery)
    res = unlearn_scenario(view, method, budget, hp, seed, **({"checkpoint_every": every} if every else {}))
    out = {**evaluated(view, res.model), "budget_spent": res.budget_spent, "diverged": res.diverged,
           "unlearn_wall_s": res.wall_s}
    if relearn:  # a share of the sweep's cap (not of this row's cap_share): θ_retrain's probe gets the same
        cap = float((meta.get("config") or {}).get("budget", budget))
        out.update({f"relearn_{k}": v for k, v in relearn_probe(scen, res.model, relearn * cap, seed,
                                                                  relearn_lr).items()})
    return {**out, **({"model": res.model} if keep_model else {})}


RELEARN_LR_SHARE = 0.1  # the probe's default learning rate: this share of the scenario's (docs/discovery.md)


def relearn_probe(scen, model, budget: float, seed: int, lr: float | None = None) -> dict:
    """Fine-tune `model` (in place) on the retain set without any poison (the scenario's own: also after a
    partial request, whose undiscovered poisons are left out here) with GD (SGD, momentum 0.9) at `lr`
    (default RELEARN_LR_SHARE x the scenario's training rate), for `budget` of the training compute; the
    model's figures after it. The probe asks whether a removed effect comes back from the retain data
    alone (docs/discovery.md)."""
    ps = scen.poisoned
    lr = float(scen.cfg.train.lr) * RELEARN_LR_SHARE if lr is None else float(lr)
    res = run_unlearning(METHODS.get("gd", "method")(), model, ps.forget(), ps.retain(), ps.train, budget,
                         scen.train_compute, {"lr": lr}, seed)
    return {**evaluated(scen, res.model), "budget_spent": res.budget_spent}


def evaluated(scen, model) -> dict:
    out, scores = scen.scored(model)
    if scores:
        held = scen.holdout_scores(scores)
        out["scores"] = held["scores"]
        if "canary" in held:
            out["canary_scores"] = held["canary"]
    return out


def full_evaluation(scen, model, known: dict | None = None) -> dict:
    """The verdict's evidence of `model`: every figure of `Scenario.evaluate`, with the held-out half's
    per-poison scores (histograms and the verdict) for noise attacks; `known` as `Scenario.scored`'s."""
    metrics, scores = scen.scored(model, known=known)
    held = scen.holdout_scores(scores)
    if held:
        metrics["holdout_scores"], metrics["holdout_control_scores"] = held["scores"], held["control"]
    if "canary" in held:  # the positive control of the verdict, per canary (scores table, part "canary")
        metrics["canary_scores"] = held["canary"]
    return metrics


def evaluate_weights(scen, weights: str) -> dict:
    """`full_evaluation` of saved weights on `scen` (NaN as None, for JSON)."""
    t = time.perf_counter()
    model = scenario_model(scen.cfg, scen.data, scen.device, torch.load(weights, map_location="cpu"))
    known = torch.load(known_path(weights)) if known_path(weights).is_file() else None
    metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in full_evaluation(scen, model, known).items()}
    return {**metrics, "evidence_eval_s": time.perf_counter() - t}
