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

KEY_COLUMNS = ["method", "budget", "seed", "status", "control", "config"]
SANITY_BUDGET = 1.0  # where the sanity controls (controls.py) must come out "removes": retraining's compute
DROP = ("scores", "canary_scores", "hp")  # lists and dicts stay in the run files (runs/*.json), not in the tables



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


def tidy_table(cells: list[dict], refs: list[dict], configs: dict, item_keys=()) -> pd.DataFrame:
    """One row per finished cell (row label x budget x seed), the references first, with the figures the
    runs have (the references' trial bookkeeping left out); no list columns. `configs`: (label, budget)
    -> the configuration's text."""
    rows = [{**c, "status": "run", "control": bool(c.get("control", False)),
             "config": configs.get((c["method"], c["budget"]), "")} for c in cells]
    keep = {k for c in rows for k in c} | {*KEY_COLUMNS, "spent_sample_grads", "train_wall_s", "budget_spent"}
    refs = [{k: v for k, v in r.items() if k in keep} for r in refs] if rows else refs
    df = pd.DataFrame(refs + rows)
    df = df.drop(columns=[c for c in (*DROP, *item_keys) if c in df], errors="ignore")
    df["seed"] = pd.array(df["seed"], dtype="Int64")
    df = df.sort_values(["budget", "method", "seed"], kind="stable", na_position="first")
    cols = [c for c in KEY_COLUMNS if c in df] + [c for c in df.columns if c not in KEY_COLUMNS]
    return df[cols].reset_index(drop=True)


def budget_verdicts(cells: list[dict], trials: pd.DataFrame, meta: dict, alpha: float = D.ALPHA,
                    tolerance: float | None = None, margin: float = D.MARGIN) -> pd.DataFrame:
    """The verdict at each budget: `judge` (verdict/judge.py) on a trials table whose best row per
    row label is its first seed's run at that budget and whose other seeds are the re-runs it pools,
    exactly as `raysweep report --seeds` pools a method's runs. Each budget is one Holm family of the
    methods; the sanity controls (controls.py) are judged in a family of their own, so that they do not
    change the methods' levels. References once: θ_initial at budget 0, θ_retrain at 1.0."""
    cfg = meta.get("config") or {}
    tol = cfg.get("tolerance", D.TOLERANCE) if tolerance is None else tolerance
    refs = trials[trials.status == "reference"]
    runs = pd.DataFrame(cells)
    if len(runs) and "control" not in runs:
        runs["control"] = False
    out = []
    for b in sorted(runs.budget.unique()) if len(runs) else []:
        for control in (False, True):
            at = runs[(runs.budget == b) & (runs.control.fillna(False).astype(bool) == control)]
            if not len(at):
                continue
            v = _judge_at(at, b, refs, meta, alpha, tol, margin).assign(budget=b)
            if not out:  # the references: θ_initial at budget 0, θ_retrain at retraining's compute
                ref = v[v.status == "reference"].copy()
                ref["budget"] = ref.method.map({"none": 0.0, "retrain": 1.0})
                ref["budget_spent"] = ref.method.map({"none": 0.0})
                out.append(ref.assign(control=False))
            out.append(v[v.status != "reference"].assign(control=control))
    cols = ["budget", *verdict_columns(ATTACKS.get(meta["attack"], "attack")), "control"]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]


def _judge_at(at: pd.DataFrame, b: float, refs: pd.DataFrame, meta: dict, alpha: float, tol: float,
              margin: float) -> pd.DataFrame:
    """One family at one budget: the first seed of each row stands for its best trial, the others pool."""
    firsts, rest, score_rows = [], [], []
    for m, g in at.groupby("method", sort=False):
        g = g.sort_values("seed")
        first = g.iloc[0].to_dict()
        tid = f"curve:{m}:{b:g}:{first['seed']}"
        hp = {f"hp_{k}": v for k, v in (first.get("hp") or {}).items()} if isinstance(first.get("hp"), dict) else {}
        firsts.append({**first, **hp, "status": "finished", "is_best": True, "trial_id": tid, "selected": False,
                       "diverged": bool(g.diverged.fillna(False).astype(bool).any()) if "diverged" in g else False})
        score_rows += [{"method": m, "trial_id": tid, "part": "holdout", "poison": i, "score": v}
                       for i, v in enumerate(first.get("scores") or [])]
        score_rows += [{"method": m, "trial_id": tid, "part": "canary", "poison": i, "score": v}
                       for i, v in enumerate(first.get("canary_scores") or [])]
        rest += [{**r, "scenario": meta.get("scenario", "sweep"), "tuned": True}
                 for r in g.iloc[1:].to_dict("records")]
    drop = ["scores", "canary_scores", "hp"]
    table = pd.concat([refs, pd.DataFrame(firsts).drop(columns=drop, errors="ignore")], ignore_index=True)
    scores = pd.DataFrame(score_rows, columns=["method", "trial_id", "part", "poison", "score"])
    j = judge(table, alpha, tol, meta["attack"], meta.get("n_test"), pd.DataFrame(rest) if rest else None,
              margin, scores, meta)
    return j.table


def sanity(verdict: pd.DataFrame) -> dict:
    """Whether the controls remove at budget 1.0: decides True (every one is "removes" with accuracy not
    shown below θ_retrain's), False (one is not: the curve cannot decide at this size), None (none ran
    there); with the line the report prints. A control below θ_retrain's accuracy is not a stand-in for
    retraining, and the check then fails: an under-trained network also under-learns the canaries."""
    flag = verdict["control"].map(_true) if "control" in verdict else pd.Series(False, verdict.index, dtype=bool)
    rows = verdict[(verdict.status != "reference") & flag]
    at = rows[pd.to_numeric(rows.budget, errors="coerce") == SANITY_BUDGET] if len(rows) else rows
    if not len(at):
        return {"decides": None, "outcomes": {}, "line": "Sanity rows: none at budget 1.0 (run the curve with "
                "budget 1.0 and without --no-controls), so whether this referee could call a method \"removes\" "
                "at this size is not checked."}
    outcomes = {r.method: ("not judged" if missing(r.outcome) else str(r.outcome)) for r in at.itertuples()}
    below = {r.method for r in at.itertuples() if "accuracy" in at and str(r.accuracy) == "below"}
    said = ", ".join(f"{m} {o}" + (" with accuracy below θ_retrain's" if m in below else "")
                     for m, o in outcomes.items())
    ok = all(o == "removes" for o in outcomes.values()) and not below
    if ok:
        line = (f"Sanity rows at budget 1.0: {said}. Retraining-equivalent runs are called \"removes\" here, so "
                "this referee could have said \"removes\" for a method as good as retraining.")
    else:
        line = (f"Sanity rows at budget 1.0: {said}. Not every run that cannot carry the poison is called "
                "\"removes\" with accuracy kept, so at this size the verdict cannot decide whether a method removes "
                "the poison: read \"fails\" as measured, and no \"none removes\" as shown (docs/curve.md, \"Sanity "
                "rows\").")
    return {"decides": ok, "outcomes": outcomes, "line": line}


SUMMARY_COLUMNS = ["method", "control", "budgets", "smallest_budget", "removes_at", "compute_vs_retrain",
                   "unlearn_wall_s", "wall_vs_retrain", "largest_budget", "verdict_at_largest"]


def summary_table(verdict: pd.DataFrame, tidy: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: the smallest budget at which the verdict is "removes" with accuracy kept, else
    "none up to <largest budget judged>"; its cost relative to retraining: the budget itself
    (a fraction of θ_initial's training compute, which retraining from scratch costs, up to the
    poisons), and, where the tables have them, the mean measured unlearning wall time there over
    θ_retrain's training wall time; and the verdict at the largest budget."""
    decides = sanity(verdict)["decides"] if len(verdict) else None
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
        control = bool(g.control.map(_true).any()) if "control" in g else False
        if decides is True or control:
            none = f"none up to {top.budget:g}"
        elif decides is False:
            none = f"cannot decide at this size (the sanity rows do not remove at 1.0); none shown up to {top.budget:g}"
        else:
            none = f"none shown up to {top.budget:g} (sanity rows not run at 1.0: not checked)"
        row = {"method": m, "control": control, "budgets": ", ".join(f"{b:g}" for b in g.budget),
               "smallest_budget": nan, "removes_at": none, "compute_vs_retrain": nan, "unlearn_wall_s": nan,
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
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


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
    view = summary.copy()
    if "control" in view:
        view["method"] = [f"{m} (sanity row)" if _true(c) else m for m, c in zip(view.method, view.control)]
    return view[list(SUMMARY_HEADERS)].rename(columns=SUMMARY_HEADERS)
