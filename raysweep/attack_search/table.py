"""The attack search's tables, from the point records alone.

    attack_points.csv     one row per outer point: index, status, the searched values, k, the stealth
                          figures (θ_initial's and the clean model's test accuracy, the drop, feasible),
                          θ_initial's held-out effect and whether it took, the objective, and per method
                          <method>_outcome and <method>_remaining (held-out effect / θ_initial's)
    attack_verdicts.csv   one row per point x method (tidy): the searched values, outcome, held-out effect
    (.parquet too)        with its 95 % interval, remaining share, p (fails), p (removes), test accuracy,
                          accuracy vs θ_retrain, the verdict in words, the configuration judged
    attack_boundary.csv   boundary mode: per method, the bracket along the axis where the verdict stops
                          being "fails" (the strongest point not failing below the weakest of the run of
                          "fails" that reaches the strongest stealthy point), the outcome at its low end and
                          whether θ_initial's own effect was significant there (took_below: if not, the
                          boundary is the attack's detection floor, not removal)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..artifacts import atomic_write_table
from .plan import Plan, brackets
from .run import outcomes_of

TABLES = ("attack_points", "attack_verdicts", "attack_boundary")


def points_table(plan: Plan, points: list[dict]) -> pd.DataFrame:
    rows = []
    for p in points:
        st, ini = p.get("stealth") or {}, p.get("initial") or {}
        row = {"point": p["index"], "status": p["status"], **{a: p["values"].get(a) for a in plan.names},
               "k": p.get("k"), "initial_test_acc": st.get("initial_test_acc"),
               "clean_test_acc": st.get("clean_test_acc"), "accuracy_drop": st.get("drop"),
               "stealthy": st.get("feasible"), "initial_effect": ini.get("effect"), "initial_p": ini.get("p_fails"),
               "took": ini.get("took"), "objective": p.get("objective"), "repeat_of": p.get("repeat_of")}
        for m, v in (p.get("methods") or {}).items():
            row[f"{m}_outcome"], row[f"{m}_remaining"] = v.get("outcome"), v.get("remaining")
        rows.append(row)
    return pd.DataFrame(rows)


def verdicts_table(plan: Plan, points: list[dict]) -> pd.DataFrame:
    cols = ["point", *plan.names, "method", "outcome", "effect", "effect_lo", "effect_hi", "remaining", "p_fails",
            "p_removes", "test_acc", "accuracy", "verdict", "config", "took"]
    rows = [{"point": p["index"], **{a: p["values"].get(a) for a in plan.names}, "method": m, **v,
             "took": (p.get("initial") or {}).get("took")}
            for p in points for m, v in (p.get("methods") or {}).items()]
    return pd.DataFrame(rows, columns=cols)


def boundary_table(plan: Plan, points: list[dict]) -> pd.DataFrame:
    cols = ["method", "axis", "below", "outcome_below", "took_below", "fails_from", "points", "reading"]
    if plan.mode != "boundary":
        return pd.DataFrame(columns=cols)
    a = plan.axes[0].name
    done = [p for p in points if p.get("status") in ("done", "not stealthy")]
    at = {p["values"][a]: outcomes_of(p) or {} for p in done}
    took = {p["values"][a]: (p.get("initial") or {}).get("took") for p in done}
    rows = []
    for m, (lo, hi) in brackets(plan, done, outcomes_of).items():
        cap = min((p["values"][a] for p in done if not p["stealth"]["feasible"]), default=None)
        if lo is None:
            reading = f"fails at every stealthy point down to {a} = {hi:g}"
        elif hi is None:
            reading = f"does not fail up to {a} = {lo:g} (the strongest point)"
        elif cap is not None and hi == cap:
            reading = f"does not fail up to {a} = {lo:g}; {a} = {hi:g} is not stealthy"
        else:
            reading = f"turns from fails at {a} = {hi:g} to {at[lo].get(m)} at {a} = {lo:g}"
        rows.append({"method": m, "axis": a, "below": lo, "outcome_below": None if lo is None else at[lo].get(m),
                     "took_below": None if lo is None else took[lo],
                     "fails_from": None if hi == cap else hi, "points": sum(1 for o in at.values() if m in o),
                     "reading": reading})
    return pd.DataFrame(rows, columns=cols)


def write_tables(root: Path, plan: Plan, points: list[dict]) -> dict[str, pd.DataFrame]:
    out = {"attack_points": points_table(plan, points), "attack_verdicts": verdicts_table(plan, points),
           "attack_boundary": boundary_table(plan, points)}
    for name, df in out.items():
        atomic_write_table(df, Path(root) / f"{name}.csv")
    atomic_write_table(out["attack_verdicts"], Path(root) / "attack_verdicts.parquet")
    return out
