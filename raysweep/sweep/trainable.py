"""The Ray Tune function trainable: one unlearning run under its budget, reported at checkpoints.

The scenario reaches a trial once, through `tune.with_parameters` (the Ray object store; a small
artifact bundle, shared by all trials) or, on a cluster, as a path into a shared store; never
through the trial config. Each worker process keeps the assembled scenario, so reused actors
(`reuse_actors=True`) skip even that.

Each budget checkpoint reports: budget_spent (fraction of θ_initial's training compute), step
(checkpoints of the sweep cap, ASHA's time axis), val_acc, effect (the attack's, `Attack.effect`),
the attack's own checkpoint figures (`Attack.checkpoint_keys`), objective, diverged. The last
report (final=True) is, under `--evidence best` (the default), what the search needs: val_acc, the
attack's metrics and the whole tuning half's figures, the objective; the trial keeps its weights if
it is its method's best so far, and the driver evaluates the best trials in full after the search
(sweep/evidence.py). Under `--evidence all` the last report adds everything `Scenario.evaluate`
gives: the verdict evidence (test accuracy, MIA, forget-set figures, the attack's own metrics, and
for noise attacks the GUS figures of all poisons and of each half, with the held-out half's
per-poison scores).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch

from ..artifacts import Store
from ..defaults import CHECKPOINT_EVERY, CHECKPOINT_POISONS, EVIDENCE
from ..objective import DIVERGED, objective
from ..registry import load_plugins
from ..results.layout import keep_if_best
from ..results.ledger import record_final, replay_final
from ..runs import cached_scenario, full_evaluation, unlearn_scenario
from ..runtime import node_id


@dataclass
class TrialSpec:
    method: str
    budget: float                   # the sweep's cap, a fraction of θ_initial's training compute
    floor: float                    # val accuracy the objective demands (retrain val_acc - tolerance)
    seed: int = 0
    fixed: dict = field(default_factory=dict)
    checkpoint_every: float = CHECKPOINT_EVERY  # report every this share of the sweep's cap (ASHA's step)
    threads: int = 1
    device: str = "cpu"
    bundle: dict | None = None      # {"manifest", "tensors"}: the artifact, through the object store
    store: Store | None = None      # ... or the shared store (cluster) it is read from
    scenario_hash: str = ""
    data_dir: str | None = None
    sweep_root: str | None = None   # the sweep directory (its done/ markers make a finished trial replayable)
    plugins: str = ""               # the driver's plug-ins ($RAYSWEEP_PLUGINS form), loaded by each trial first
    evidence: str = EVIDENCE        # best: full evaluation after the search, of the best trials only (evidence.py)
    discovery: float = 1.0          # share of the poisons requested: Scenario.discovered (tuned on their half)
    evaluate_at: tuple[int, ...] | None = None  # the steps a checkpoint evaluates and reports at (None: every one)


def unlearn_trial(config: dict, specs: dict[str, TrialSpec]) -> None:
    """Function trainable: `config` holds the method and its searched hyperparameters (and cap_share);
    `specs` the per-method settings (one object, shared by every trial through the object store)."""
    from ray import tune

    config = dict(config)
    spec = specs[config.pop("method")]
    load_plugins(spec.plugins)  # a plug-in method or attack registers itself in this worker too
    ctx = tune.get_context()
    done = replay_final(spec.sweep_root, ctx.get_trial_id())
    if done is not None:  # finished before its driver was killed: report the same result, run nothing
        tune.report({**done, "replayed": True})
        return
    torch.set_num_threads(max(1, spec.threads))
    t0 = time.perf_counter()
    attempt = round(time.time(), 3)  # tells this attempt's reports from an earlier, failed attempt's
    scen = cached_scenario(spec).discovered(spec.discovery)
    params = {**spec.fixed, **config}
    share = float(params.pop("cap_share", 1.0))
    budget = spec.budget * share
    cap_step = spec.budget * scen.train_compute * spec.checkpoint_every  # sample-grads per ASHA step
    node = node_id()

    refs = {"none": scen.manifest["metrics"]["initial"], "retrain": scen.manifest["metrics"]["retrain"]}
    attack = scen.attack
    eval_s = [0.0]  # time spent in checkpoint evaluations (reported: the sweep's evaluation share)
    report_s = [0.0]  # time blocked in checkpoint reports (Tune's round trip to the driver)
    last_step = [0]  # the step of the checkpoint before: a rung is reached when a checkpoint passes it

    def on_checkpoint(model, info):
        if info["cap_used"] >= 1 - 1e-9:
            return False  # the final report, with the verdict evidence, follows at once
        before, step = last_step[0], max(1, round(info["spent"] / cap_step))
        last_step[0] = step
        if spec.evaluate_at is not None and not any(before < r <= step for r in spec.evaluate_at):
            return False  # the deep schedule evaluates where a rung was reached only (sweep/schedule.py)
        t = time.perf_counter()
        # the tuning half's GUS (a fixed subset of CHECKPOINT_POISONS: docs/performance.md) where noise is the attack
        m = scen.evaluate(model, parts=("tune",), full=False, tune_cap=CHECKPOINT_POISONS)
        eval_s[0] += time.perf_counter() - t
        eff = attack.effect(m, refs)
        t = time.perf_counter()
        tune.report({"budget_spent": info["budget_spent"], "step": step,
                     "val_acc": m["val_acc"], **{k: m[k] for k in attack.checkpoint_keys if k in m}, "effect": eff,
                     "objective": objective(eff, m["val_acc"], spec.floor),
                     "diverged": False, "final": False, "node_id": node, "attempt": attempt,
                     "method": spec.method, "eval_s": eval_s[0], "report_s": report_s[0]})
        report_s[0] += time.perf_counter() - t
        return False

    # checkpoints at multiples of checkpoint_every x the sweep's cap (ASHA's steps), not of this trial's
    # own budget: a trial with a small cap_share evaluates less often instead of as often (docs/performance.md)
    every = min(1.0, spec.checkpoint_every / share) if share > 0 else 1.0
    res = unlearn_scenario(scen, spec.method, budget, params, spec.seed, on_checkpoint, every)
    t = time.perf_counter()
    deferred = spec.evidence == "best" and spec.sweep_root is not None
    # what the search needs; the verdict's evidence comes after the search (evidence.py) or here
    final, scores = scen.scored(res.model, parts=("tune",), full=False) if deferred else \
        (full_evaluation(scen, res.model), {})
    eff = attack.effect(final, refs)
    obj = objective(eff, final["val_acc"], spec.floor, res.diverged)
    if deferred:  # with what this report took on the weights: the evidence reuses it
        keep_if_best(spec.sweep_root, ctx.get_trial_id(), spec.method, obj, res.model,
                     {"val_acc": final["val_acc"], **scores})
    final_eval_s = time.perf_counter() - t
    final = {k: (v if not (isinstance(v, float) and math.isnan(v)) else None) for k, v in final.items()}
    report = {**final, "budget_spent": res.budget_spent,
              "step": max(1, math.ceil(res.spent / cap_step - 1e-9)) if cap_step else 1,
              "effect": eff if not res.diverged else DIVERGED, "objective": obj,
              "diverged": res.diverged, "final": True, "steps": res.steps, "unlearn_wall_s": res.wall_s,
              "trial_wall_s": time.perf_counter() - t0, "node_id": node, "pid": os.getpid(),
              "hparams": {**res.hparams, "cap_share": share}, "attempt": attempt, "method": spec.method,
              "eval_s": eval_s[0], "report_s": report_s[0], "final_eval_s": final_eval_s,
              "evidence": "deferred" if deferred else "trial"}
    record_final(spec.sweep_root, ctx.get_trial_id(), report)
    tune.report(report)
