"""The runs a verdict pools: each method's best trial, and its best configuration re-run on fresh seeds.

    raysweep report SWEEP --seeds N [--scenario-seeds M]

`--seeds N` re-runs every method's best configuration with N fresh unlearning seeds on the sweep's
own scenario (same poisons, same θ_initial and θ_retrain); `--scenario-seeds M` also prepares M
fresh scenarios (the scenario's `seed` + 1 .. + M: new poisons or targets, new θ_initial and
θ_retrain; each built once and cached in the store under its hash) and runs the best configuration
there with the sweep's seed and the same N fresh seeds. The verdict pools all of them
(raysweep/attacks/evidence.py describes the runs table).
"""
from __future__ import annotations

import math

import pandas as pd


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def best_rows(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials.status == "finished") & trials.is_best.astype(bool)].set_index("method")


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

    def trial_scores(method, trial_id):
        if scores is None or not len(scores):
            return None
        s = scores[(scores.method == method) & (scores.trial_id == trial_id) & (scores.part == "holdout")]
        return [float(v) for v in s.sort_values("poison").score] if len(s) else None

    for _, r in trials[trials.status == "reference"].iterrows():
        row = {**r.to_dict(), "scenario": scen, "tuned": True, "seed": None}
        sc = ref_scores.get(r.method)
        if sc and holdout:
            row["scores"] = [float(sc["scores"][i]) for i in holdout]
        else:
            row["scores"] = trial_scores(r.method, r.trial_id if "trial_id" in r else r.method)
        for key in item_keys:
            if _missing(row.get(key)):
                row[key] = (ref_metrics.get(r.method) or {}).get(key)
        rows.append(row)
    for method, r in best_rows(trials).iterrows():
        row = {**r.to_dict(), "method": method, "scenario": scen, "tuned": True,
               "seed": seed if _missing(r.get("seed")) else r.get("seed")}
        row["scores"] = trial_scores(method, r.get("trial_id"))
        rows.append(row)
    out = pd.DataFrame(rows)
    if seeds is not None and len(seeds):
        extra = seeds.copy()
        if "scenario" not in extra:  # a table of one run per fresh scenario, keyed by its seed
            extra["scenario"], extra["tuned"] = "seed " + extra["seed"].astype(str), False
        out = pd.concat([out, extra], ignore_index=True)
    return out


def rerun_best(meta: dict, trials: pd.DataFrame, n_seeds: int, n_scenarios: int, log,
               device: str = "cpu") -> pd.DataFrame:
    """Re-run each method's best configuration: n_seeds fresh unlearning seeds on the sweep's
    scenario; on each of n_scenarios fresh scenarios, the sweep's seed and the same fresh seeds,
    next to that scenario's θ_initial and θ_retrain."""
    from dataclasses import replace

    from ..artifacts import open_store, read_manifest
    from ..config import scenario_from_dict
    from ..runtime import deterministic
    from ..scenario import Scenario, prepare, store_key

    deterministic(device)  # every re-run alike (`prepare` sets it too, when it builds a fresh scenario)
    store = open_store(meta["store"])
    base = scenario_from_dict(read_manifest(store.open_dir(store_key(meta["scenario"])))["config"])
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
        scen = Scenario.load(store, cfg, device)
        tag = {"scenario": scen.hash, "scenario_seed": cfg.seed, "tuned": tuned}
        if not tuned:
            for ref, which in (("none", "initial"), ("retrain", "retrain")):
                rows.append({**tag, "seed": None, "method": ref, **_evaluated(scen, scen.new_model(which))})
        for m in best.index:
            for s in useeds:
                rows.append({**tag, "seed": s, "method": m, **_rerun(scen, best.loc[m], m, meta, s, log)})
    return pd.DataFrame(rows)


def best_hparams(r: pd.Series) -> dict:
    """A trial row's hyperparameters (the hp_ columns) as plain values."""
    return {k[3:]: (v.item() if hasattr(v, "item") else v) for k, v in r.items()
            if k.startswith("hp_") and not _missing(v)}


def _rerun(scen, r: pd.Series, method: str, meta: dict, seed: int, log, budget: float | None = None,
           keep_model: bool = False) -> dict:
    """One run of the configuration in row `r`; budget: the sweep's cap x the row's cap_share unless
    given (the budget curve, raysweep/curve/, passes its own); keep_model: the unlearned model too,
    under "model" (raysweep/explain/ measures it)."""
    from ..unlearn.session import unlearn_scenario

    # the method's own Hyper validates and converts (3.0 -> 3 for integer fields)
    hp = best_hparams(r)
    if budget is None:
        share = r.get("cap_share")
        budget = float(meta["config"]["budget"]) * (1.0 if _missing(share) else float(share))
    log(f"[report] {method}: seed {seed} on scenario {scen.hash}")
    every = (meta.get("config") or {}).get("checkpoint_every")  # a diverged run restores what its trial did
    res = unlearn_scenario(scen, method, budget, hp, seed, **({"checkpoint_every": every} if every else {}))
    return {**_evaluated(scen, res.model), "budget_spent": res.budget_spent, "diverged": res.diverged,
            "unlearn_wall_s": res.wall_s, **({"model": res.model} if keep_model else {})}


def _evaluated(scen, model) -> dict:
    out, scores = scen.scored(model)
    if scores:
        out["scores"] = scen.holdout_scores(scores)["scores"]
    return out


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
    if ev.lo is None or ev.hi is None or _missing(ev.lo) or _missing(ev.hi):
        return "–"
    return f"[{ev.lo:+.3f}, {ev.hi:+.3f}]"
