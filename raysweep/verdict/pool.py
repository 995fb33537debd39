"""The runs a verdict pools: each method's best trial, and its best configuration re-run on fresh seeds.

    raysweep report SWEEP --seeds N [--scenario-seeds M]

`--seeds N` re-runs every method's best configuration with N fresh unlearning seeds on the sweep's
own scenario (same poisons, same θ_initial and θ_retrain); `--scenario-seeds M` also prepares M
fresh scenarios (the scenario's `seed` + 1 .. + M: new poisons or targets, new θ_initial and
θ_retrain; each built once and cached in the store under its hash) and runs the best configuration
there with the sweep's seed and the same N fresh seeds. The verdict pools all of them
(raysweep/stats/evidence.py describes the runs table).
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..artifacts import open_store
from ..prepare.scenario import Scenario, prepare
from ..results.tables import best_rows
from ..runs import evaluated, run_config
from ..runtime import deterministic
from ..stats.evidence import missing


def collect_runs(trials: pd.DataFrame, scores: pd.DataFrame | None = None, meta: dict | None = None,
                 seeds: pd.DataFrame | None = None, item_keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per run: the references and each method's best trial on the sweep's scenario (with
    their held-out scores and per-item vectors where the tables carry them), then the re-runs."""
    meta = meta or {}
    scen = meta.get("scenario", "sweep")
    holdout = list(meta.get("holdout_rows") or [])
    ref_scores = meta.get("reference_scores") or {}
    ref_metrics = meta.get("references") or {}
    seed = (meta.get("config") or {}).get("seed", 0)
    rows = []

    def trial_scores(method, trial_id, part="holdout"):
        if scores is None or not len(scores):
            return None
        s = scores[(scores.method == method) & (scores.trial_id == trial_id) & (scores.part == part)]
        return [float(v) for v in s.sort_values("poison").score] if len(s) else None

    for _, r in trials[trials.status == "reference"].iterrows():
        row = {**r.to_dict(), "scenario": scen, "tuned": True, "seed": None, "selected": False}
        sc = ref_scores.get(r.method)
        if sc and holdout:
            row["scores"] = [float(sc["scores"][i]) for i in holdout]
        else:
            row["scores"] = trial_scores(r.method, r.trial_id if "trial_id" in r else r.method)
        if sc and sc.get("canary"):
            row["canary_scores"] = [float(v) for v in sc["canary"]]
        for key in (*item_keys, "test_correct"):
            if missing(row.get(key)):
                row[key] = (ref_metrics.get(r.method) or {}).get(key)
        rows.append(row)
    for method, r in best_rows(trials).iterrows():
        # the search's pick, unless the table says otherwise (the budget curve's first seed is a fresh run)
        row = {**r.to_dict(), "method": method, "scenario": scen, "tuned": True,
               "selected": True if missing(r.get("selected")) else bool(r.get("selected")),
               "seed": seed if missing(r.get("seed")) else r.get("seed")}
        found = trial_scores(method, r.get("trial_id"))
        if found is not None or not isinstance(row.get("scores"), list):  # a table may carry them in the row
            row["scores"] = found
        canary = trial_scores(method, r.get("trial_id"), "canary")
        if canary is not None:
            row["canary_scores"] = canary
        rows.append(row)
    out = pd.DataFrame(rows)
    if seeds is not None and len(seeds):
        extra = seeds.copy()
        if "scenario" not in extra:  # a table of one run per fresh scenario, keyed by its seed
            extra["scenario"], extra["tuned"] = "seed " + extra["seed"].astype(str), False
        extra["selected"] = False
        out = pd.concat([out, extra], ignore_index=True)
    return out


def judged_runs(every: pd.DataFrame, uses_tuned_scenario: bool = True, need: str | None = None) -> pd.DataFrame:
    """The runs a verdict pools: the selected trial's own run only for a method with no other run (with
    column `need` measured, if given): its unlearning seed's luck is part of why the search selected it;
    and the sweep's scenario only for an attack whose verdict units the search did not see there."""
    runs = every if uses_tuned_scenario else every[~every["tuned"].fillna(False).astype(bool)]
    sel = runs["selected"].fillna(False).astype(bool) if "selected" in runs else pd.Series(False, index=runs.index)
    has = runs[need].notna() if need and need in runs else pd.Series(need is None, index=runs.index)
    others = runs[~sel & has].groupby("method").size()
    drop = sel & runs["method"].map(lambda m: others.get(m, 0) > 0).astype(bool)
    return runs[~drop]


def rerun_best(meta: dict, trials: pd.DataFrame, n_seeds: int, n_scenarios: int, log,
               device: str = "cpu") -> pd.DataFrame:
    """Re-run each method's best configuration: n_seeds fresh unlearning seeds on the sweep's
    scenario; on each of n_scenarios fresh scenarios, the sweep's seed and the same fresh seeds,
    next to that scenario's θ_initial and θ_retrain."""
    deterministic(device)  # every re-run alike (`prepare` sets it too, when it builds a fresh scenario)
    store = open_store(meta["store"])
    own = Scenario.load(store, meta["scenario"], device)  # by its hash: a sweep from before a new default too
    base = own.cfg  # as loaded: its attack's parameters as its artifact has them (Attack.stored_params)
    discovery = float((meta.get("config") or {}).get("discovery", 1.0))
    best = best_rows(trials)
    s0 = int(meta["config"]["seed"])
    fresh = [s0 + i for i in range(1, n_seeds + 1)]
    rows = []
    plan = [(base, True, fresh)] + [(replace(base, seed=base.seed + j), False, [s0] + fresh)
                                    for j in range(1, n_scenarios + 1)]
    for cfg, tuned, useeds in plan:
        if not useeds:
            continue
        if not tuned:
            log(f"[report] fresh scenario seed {cfg.seed}: preparing {cfg.hash()} (cached once built)")
            prepare(cfg, store, device, log=log)
        scen = own if tuned else Scenario.load(store, cfg, device)
        tag = {"scenario": scen.hash, "scenario_seed": cfg.seed, "tuned": tuned}
        if not tuned:
            for ref, which in (("none", "initial"), ("retrain", "retrain")):
                rows.append({**tag, "seed": None, "method": ref, **evaluated(scen, scen.new_model(which))})
        for m in best.index:
            for s in useeds:
                rows.append({**tag, "seed": s, "method": m,
                             **run_config(scen, best.loc[m], m, meta, s, log, discovery=discovery)})
    return pd.DataFrame(rows)


def spread_table(runs: pd.DataFrame, evidence: dict, header: str) -> pd.DataFrame:
    """Per method: runs pooled, the effect of each run summarised (mean, SD, min, max), the pooled
    effect with its 95 % interval, and test accuracy over the runs."""
    rows = []
    for method, ev in evidence.items():
        mine = runs[runs.method == method]
        acc = pd.to_numeric(mine.get("test_acc"), errors="coerce").dropna() if "test_acc" in mine else pd.Series()
        per = pd.Series(ev.per_run, dtype=float)
        rows.append({"method": method, "runs": ev.runs or len(mine), "scenarios": ev.scenarios,
                     f"{header}: pooled": ev.effect, "95 % CI": _ci(ev),
                     "per-run mean": per.mean() if len(per) else None,
                     "per-run SD": per.std() if len(per) > 1 else None,
                     "per-run min": per.min() if len(per) else None, "per-run max": per.max() if len(per) else None,
                     "test acc mean": acc.mean() if len(acc) else None,
                     "test acc SD": acc.std() if len(acc) > 1 else None})
    return pd.DataFrame(rows)


def _ci(ev) -> str:
    if ev.lo is None or ev.hi is None or missing(ev.lo) or missing(ev.hi):
        return "–"
    return f"[{ev.lo:+.3f}, {ev.hi:+.3f}]"
