"""The discovery runs judged: per share found f, per part of the held-out poisons (found, hidden, all),
right after unlearning and after the relearning probe, through the report's own `judge`.

    discovery.csv           one row per run: fraction, method, seed, the held-out GUS of each part,
                            canaries, test accuracy, and the same after the probe (relearn_*)
    discovery_verdict.csv   per fraction x part x phase (unlearned | relearned): each method's
                            verdict columns (verdict.csv's) judged over its seeds, Holm over the methods
    discovery_summary.csv   per method x fraction: the outcome on the found, the hidden and all
                            held-out poisons, and whether an effect returns after the probe
θ_retrain's probe is in discovery.csv (method retrain): its GUS must stay at 0, it never saw a poison.
"""
from __future__ import annotations

import pandas as pd

from ..artifacts import atomic_write_table
from ..verdict.judge import judge
from . import DIR, gus_z

PARTS = ("found", "hidden", "all")


def _mask(rows: list[dict], fraction: float, part: str) -> list[bool]:
    """Which held-out poisons (in holdout_rows order) belong to `part` at `fraction` (the runs record it)."""
    found = next((r["holdout_found"] for r in rows if r.get("fraction") == fraction and r.get("holdout_found")), [])
    return [True] * len(found) if part == "all" else [bool(v) == (part == "found") for v in found]


def part_verdicts(rows: list[dict], trials: pd.DataFrame, meta: dict, fraction: float, part: str,
                  phase: str, alpha: float, tolerance: float, margin: float) -> pd.DataFrame:
    """`judge` over the runs at `fraction`, scores restricted to `part` of the held-out poisons;
    phase "relearned": the figures after the relearning probe."""
    mask = _mask(rows, fraction, part)
    if not any(mask):
        return pd.DataFrame()
    pick = lambda v: [x for x, k in zip(v, mask) if k] if isinstance(v, list) else None  # noqa: E731
    pre = "relearn_" if phase == "relearned" else ""
    runs = [r for r in rows if r.get("fraction") == fraction and r.get("method") != "retrain"]
    firsts, rest, seen = [], [], set()
    for r in sorted(runs, key=lambda r: (r["method"], r["seed"])):
        run = {"method": r["method"], "seed": r["seed"], "scores": pick(r.get(f"{pre}scores")),
               "canary_scores": r.get(f"{pre}canary_scores"), "test_acc": r.get(f"{pre}test_acc"),
               "test_correct": r.get(f"{pre}test_correct"), "holdout_gus": gus_z(pick(r.get(f"{pre}scores")))[0],
               "budget_spent": r.get("budget_spent"), "diverged": r.get("diverged")}
        if r["method"] in seen:
            rest.append({**run, "scenario": meta["scenario"], "tuned": True})
        else:
            seen.add(r["method"])
            firsts.append({**run, "status": "finished", "is_best": True, "selected": False,
                           "trial_id": f"discovery:{r['method']}:{fraction:g}", "cap_share": 1.0})
    if not firsts:
        return pd.DataFrame()
    refs = trials[trials.status == "reference"]
    table = pd.concat([refs, pd.DataFrame(firsts)], ignore_index=True)
    sub = {**meta, "holdout_rows": [i for i, k in zip(meta.get("holdout_rows") or [], mask) if k]}
    j = judge(table, alpha, tolerance, meta["attack"], meta.get("n_test"), pd.DataFrame(rest) if rest else None,
              margin, None, sub)
    return j.table.assign(fraction=fraction, part=part, phase=phase)


def tidy(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        flat = {k: v for k, v in r.items() if not isinstance(v, list) and not str(k).endswith("test_correct")}
        found = r.get("holdout_found") or []
        for part, keep in (("found", True), ("hidden", False)):
            for pre in ("", "relearn_"):
                flat[f"{pre}holdout_{part}_gus"] = gus_z([x for x, k in zip(r.get(f"{pre}scores") or [], found)
                                                           if bool(k) == keep])[0]
        g, z = gus_z(r.get("relearn_scores"))
        out.append({**flat, "relearn_holdout_gus": flat.get("relearn_holdout_gus", g),
                    "relearn_holdout_z": flat.get("relearn_holdout_z", z)})
    return pd.DataFrame(out)


def summary(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per method x fraction: the outcome per part after unlearning, and whether the effect on the found
    held-out poisons (those requested: all of them at f = 1) returns after the probe (not "fails" before,
    "fails" after)."""
    v = verdicts[verdicts.status == "tuned"]
    out = []
    for (m, f), g in v.groupby(["method", "fraction"], sort=False):
        def get(part, phase, g=g):
            return next(iter(g[(g.part == part) & (g.phase == phase)].outcome), None)

        row = {"method": m, "fraction": f, **{p: get(p, "unlearned") for p in PARTS}}
        after = get("found", "relearned")
        row["after probe"] = after
        row["effect returns"] = None if after is None else bool(row["found"] != "fails" and after == "fails")
        out.append(row)
    return pd.DataFrame(out, columns=["method", "fraction", *PARTS, "after probe", "effect returns"])


def write_tables(sweep, rows: list[dict], trials: pd.DataFrame, meta: dict, alpha: float, tolerance: float,
                 margin: float) -> dict[str, pd.DataFrame]:
    fractions = sorted({r["fraction"] for r in rows if "fraction" in r})
    probe = any("relearn_scores" in r for r in rows if r.get("method") != "retrain")
    parts = [part_verdicts(rows, trials, meta, f, p, ph, alpha, tolerance, margin) for f in fractions
             for p in PARTS for ph in (("unlearned", "relearned") if probe and p != "hidden" else ("unlearned",))]
    verdicts = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) \
        else pd.DataFrame()
    out = {"discovery": tidy(rows), "discovery_verdict": verdicts,
           "discovery_summary": summary(verdicts) if len(verdicts) else pd.DataFrame()}
    root = sweep / DIR
    for name, df in out.items():
        atomic_write_table(df, root / f"{name}.csv")
    atomic_write_table(out["discovery"], root / "discovery.parquet")
    return out
