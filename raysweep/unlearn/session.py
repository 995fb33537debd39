"""Unlearn on a prepared scenario and evaluate, next to the two reference rows."""
from __future__ import annotations

import sys

from ..defaults import CHECKPOINT_EVERY
from ..scenario import Scenario
from . import METHODS, run_unlearning


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
