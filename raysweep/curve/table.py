"""The budget curve's tables: the tidy runs, the verdict at each budget, the per-method summary.

    curve.parquet / curve.csv   one row per method x budget x seed, plus θ_initial (budget 0) and
                                θ_retrain (budget 1.0, retraining's compute) as reference rows
    curve_verdict.csv           per budget, each method's three-way verdict over its seeds there
                                (report/verdict.py `judge`, Holm over the methods at that budget)
    curve_summary.csv           per method: the smallest budget whose verdict is "removes" with
                                accuracy kept ("none up to <largest budget>" otherwise) and its cost
                                relative to retraining
"""
from __future__ import annotations

import pandas as pd

from .. import defaults as D
from ..attacks import ATTACKS
from ..stats.evidence import missing
from ..verdict.judge import judge, verdict_columns

KEY_COLUMNS = ["method", "budget", "seed", "status", "config"]
DROP = ("scores",)   # per-poison score lists stay in the run files (runs/*.json), not in the tables



def _true(v) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() == "true") or (
        not isinstance(v, (str, type(None))) and not missing(v) and bool(v))


def reference_rows(trials: pd.DataFrame, manifest: dict | None = None) -> list[dict]:
    """θ_initial at budget 0 and θ_retrain at budget 1.0, with the figures the sweep recorded and, for
    θ_retrain, its training compute and wall time from the scenario's manifest."""
    manifest = manifest or {}
    compute, wall = manifest.get("compute") or {}, manifest.get("wall_s") or {}
    refs = trials[trials.status == "reference"].set_index("method")
    out = []
    for name, budget, label in (("none", 0.0, "θ_initial"), ("retrain", 1.0, "θ_retrain")):
        if name not in refs.index:
            continue
        r = {k: v for k, v in refs.loc[name].items() if not k.startswith("hp_") and k not in ("status", "budget")}
        r.update(method=name, budget=budget, seed=None, status="reference", config=label)
        if name == "retrain":
            r["spent_sample_grads"] = compute.get("retrain_sample_grads")
            r["train_wall_s"] = wall.get("train_retrain_s")
            if compute.get("retrain_sample_grads") and compute.get("initial_sample_grads"):
                r["budget_spent"] = compute["retrain_sample_grads"] / compute["initial_sample_grads"]
        else:
            r["spent_sample_grads"], r["budget_spent"] = 0.0, 0.0
        out.append(r)
    return out


def tidy_table(cells: list[dict], refs: list[dict], configs: dict[str, str], item_keys=()) -> pd.DataFrame:
    """One row per finished cell (method x budget x seed), the references first, with the figures the
    runs have (the references' trial bookkeeping left out); no list columns."""
    rows = [{**c, "status": "run", "config": configs.get(c["method"], "")} for c in cells]
    keep = {k for c in rows for k in c} | {*KEY_COLUMNS, "spent_sample_grads", "train_wall_s", "budget_spent"}
    refs = [{k: v for k, v in r.items() if k in keep} for r in refs] if rows else refs
    df = pd.DataFrame(refs + rows)
    df = df.drop(columns=[c for c in (*DROP, *item_keys) if c in df], errors="ignore")
    df["seed"] = pd.array(df["seed"], dtype="Int64")
    df = df.sort_values(["budget", "method", "seed"], kind="stable", na_position="first")
    cols = [c for c in KEY_COLUMNS if c in df] + [c for c in df.columns if c not in KEY_COLUMNS]
    return df[cols].reset_index(drop=True)


def budget_verdicts(cells: list[dict], trials: pd.DataFrame, meta: dict, alpha: float = D.ALPHA,
                    tolerance: float | None = None, margin: float = D.MARGIN,
                    best: pd.DataFrame | None = None) -> pd.DataFrame:
    """The three-way verdict at each budget: `judge` (report/verdict.py) on a trials table whose
    best row per method is its first seed's run at that budget and whose other seeds are the
    re-runs it pools, exactly as `raysweep report --seeds` pools a method's runs. References once:
    θ_initial at budget 0, θ_retrain at 1.0."""
    cfg = meta.get("config") or {}
    tol = cfg.get("tolerance", D.TOLERANCE) if tolerance is None else tolerance
    refs = trials[trials.status == "reference"]
    runs = pd.DataFrame(cells)
    out = []
    for b in sorted(runs.budget.unique()) if len(runs) else []:
        at = runs[runs.budget == b]
        firsts, rest, score_rows = [], [], []
        for m, g in at.groupby("method", sort=False):
            g = g.sort_values("seed")
            first = g.iloc[0].to_dict()
            tid = f"curve:{m}:{b:g}:{first['seed']}"
            hp = {} if best is None or m not in best.index else \
                {k: v for k, v in best.loc[m].items() if k.startswith("hp_")}
            firsts.append({**first, **hp, "status": "finished", "is_best": True, "trial_id": tid, "selected": False,
                           "diverged": bool(g.diverged.fillna(False).astype(bool).any()) if "diverged" in g else False})
            score_rows += [{"method": m, "trial_id": tid, "part": "holdout", "poison": i, "score": v}
                           for i, v in enumerate(first.get("scores") or [])]
            rest += [{**r, "scenario": meta.get("scenario", "sweep"), "tuned": True}
                     for r in g.iloc[1:].to_dict("records")]
        table = pd.concat([refs, pd.DataFrame(firsts).drop(columns=["scores"], errors="ignore")], ignore_index=True)
        scores = pd.DataFrame(score_rows, columns=["method", "trial_id", "part", "poison", "score"])
        j = judge(table, alpha, tol, meta["attack"], meta.get("n_test"),
                  pd.DataFrame(rest) if rest else None, margin, scores, meta)
        v = j.table.assign(budget=b)
        if not out:  # the references: θ_initial at budget 0, θ_retrain at retraining's compute
            ref = v[v.status == "reference"].copy()
            ref["budget"] = ref.method.map({"none": 0.0, "retrain": 1.0})
            ref["budget_spent"] = ref.method.map({"none": 0.0})
            out.append(ref)
        out.append(v[v.status != "reference"])
    cols = ["budget", *verdict_columns(ATTACKS.get(meta["attack"], "attack"))]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]


def summary_table(verdict: pd.DataFrame, tidy: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: the smallest budget at which the verdict is "removes" with accuracy kept, else
    "none up to <largest budget judged>"; its cost relative to retraining: the budget itself
    (a fraction of θ_initial's training compute, which retraining from scratch costs, up to the
    poisons), and, where the tables have them, the mean measured unlearning wall time there over
    θ_retrain's training wall time; and the verdict at the largest budget."""
    tuned = verdict[verdict.status != "reference"]
    retrain_wall = None
    if tidy is not None and "train_wall_s" in tidy:
        w = pd.to_numeric(tidy.loc[tidy.method == "retrain", "train_wall_s"], errors="coerce").dropna()
        retrain_wall = float(w.iloc[0]) if len(w) else None
    rows = []
    for m, g in tuned.groupby("method", sort=False):
        g = g.sort_values("budget")
        ok = g[(g.outcome == "removes") & g.accuracy_kept.map(_true)]
        top = g.iloc[-1]
        nan = float("nan")
        row = {"method": m, "budgets": ", ".join(f"{b:g}" for b in g.budget), "smallest_budget": nan,
               "removes_at": f"none up to {top.budget:g}", "compute_vs_retrain": nan, "unlearn_wall_s": nan,
               "wall_vs_retrain": nan, "largest_budget": float(top.budget), "verdict_at_largest": top.verdict}
        if len(ok):
            b = float(ok.budget.iloc[0])
            row.update(smallest_budget=b, removes_at=f"{b:g}", compute_vs_retrain=b)
            if tidy is not None and "unlearn_wall_s" in tidy:
                w = pd.to_numeric(tidy[(tidy.method == m) & (tidy.budget == b)].unlearn_wall_s, errors="coerce")
                if w.notna().any():
                    row["unlearn_wall_s"] = float(w.mean())
                    if retrain_wall:
                        row["wall_vs_retrain"] = row["unlearn_wall_s"] / retrain_wall
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "budgets", "smallest_budget", "removes_at", "compute_vs_retrain",
                                       "unlearn_wall_s", "wall_vs_retrain", "largest_budget", "verdict_at_largest"])


def outcome_grid(verdict: pd.DataFrame) -> pd.DataFrame:
    """Method x budget: the outcome at each budget, "+ accuracy kept" / "accuracy lost" appended."""
    tuned = verdict[verdict.status != "reference"]
    if not len(tuned):
        return pd.DataFrame(columns=["method"])

    def cell(r) -> str:
        if missing(r.outcome):
            return str(r.verdict)
        return f"{r.outcome}, accuracy {'kept' if _true(r.accuracy_kept) else 'lost'}"

    grid = tuned.assign(cell=[cell(r) for r in tuned.itertuples()]).pivot(index="method", columns="budget",
                                                                            values="cell")
    grid = grid.reindex(list(dict.fromkeys(tuned.method)))
    grid.columns = [f"budget {b:g}" for b in grid.columns]
    return grid.reset_index()


SUMMARY_HEADERS = {"method": "method", "budgets": "budgets run", "removes_at": "smallest budget that removes "
                   "(accuracy kept)", "compute_vs_retrain": "compute vs retraining",
                   "unlearn_wall_s": "unlearning wall s (mean)", "wall_vs_retrain": "wall time vs retraining",
                   "verdict_at_largest": "verdict at the largest budget"}


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[list(SUMMARY_HEADERS)].rename(columns=SUMMARY_HEADERS)
