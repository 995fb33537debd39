"""Decide, per method, whether its best tuned configuration removes the poison: three outcomes.

The configuration is chosen on the tuning evidence (lowest objective) and judged on evidence the
search did not see, pooled over every run of it (the best trial, re-runs on fresh unlearning seeds,
fresh scenarios: report/seeds.py). The attack owns its tests (`Attack.verdict_evidence`); this
module is generic:

  fails         the test of "no poison effect remains" rejects (Holm over the methods judged);
  removes       it does not, and the equivalence test rejects: the effect is shown to lie within
                the margin δ × θ_initial's effect of θ_retrain's (Holm over the methods, a second
                family at the same α);
  inconclusive  neither: the report gives the number of units (held-out poisons, targets, images)
                at which the observed effect would decide at the Bonferroni level α/m (which Holm
                always rejects at).
Accuracy is a separate condition: test accuracy (mean over the runs) >= θ_retrain's - tolerance.
A method "removes the poison" only when the poison outcome is "removes" and accuracy is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .. import defaults as D
from ..attacks import ATTACKS
from ..results.tables import best_rows
from ..stats.evidence import missing
from .pool import collect_runs

DEFAULT_MARGIN = D.MARGIN  # δ: docs/verdict.md ("The equivalence margin") gives the pilot behind it
OUTCOMES = ("fails", "removes", "inconclusive")
# verdict.csv; "p" repeats p_fails for readers of earlier reports
VERDICT_HEAD = ["method", "status", "config", "runs", "scenarios", "n", "effect", "effect_lo", "effect_hi",
                "margin", "p_fails", "p", "holm_fails", "p_removes", "holm_removes", "outcome", "n_needed"]
VERDICT_TAIL = ["test_acc", "mia_tpr", "budget_spent", "accuracy_kept", "verdict"]


def verdict_columns(cls) -> list[str]:
    """verdict.csv's columns: the generic ones around the attack's own (`Attack.verdict_columns`)."""
    own = [c for c in cls.verdict_columns if c not in VERDICT_HEAD + VERDICT_TAIL]
    return VERDICT_HEAD + own + VERDICT_TAIL


def holm_levels(pvalues: dict[str, float], alpha: float) -> dict[str, float]:
    """Holm's step-down thresholds: the i-th smallest p (i = 0..m-1) is compared with alpha/(m - i);
    once one is not rejected, none after it is. Returns each name's step threshold."""
    order = sorted(pvalues, key=lambda n: (pvalues[n], n))
    m = len(order)
    return {name: alpha / (m - i) for i, name in enumerate(order)}


def holm_reject(pvalues: dict[str, float], alpha: float) -> dict[str, bool]:
    order = sorted(pvalues, key=lambda n: (pvalues[n], n))
    m, out, stopped = len(order), {}, False
    for i, name in enumerate(order):
        if not stopped and pvalues[name] <= alpha / (m - i):
            out[name] = True
        else:
            stopped = True
            out[name] = False
    return out



def config_label(row: pd.Series) -> str:
    hp = {k[3:]: row[k] for k in row.index if k.startswith("hp_") and not missing(row[k])}
    parts = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hp.items())]
    if not missing(row.get("cap_share")):
        parts.append(f"cap_share={row['cap_share']:.2f}")
    return ", ".join(parts)


@dataclass
class Judgement:
    table: pd.DataFrame
    evidence: dict = field(default_factory=dict)   # name (methods, "none", "retrain") -> Evidence
    runs: pd.DataFrame | None = None
    m: int = 0
    ctx: dict = field(default_factory=dict)


def judge(trials: pd.DataFrame, alpha: float = D.ALPHA, tolerance: float = D.TOLERANCE, attack: str | None = None,
          n_test: int | None = None, seeds: pd.DataFrame | None = None, margin: float = DEFAULT_MARGIN,
          scores: pd.DataFrame | None = None, meta: dict | None = None) -> Judgement:
    """The verdict of every method, with the evidence behind it (see the module docstring)."""
    if attack is None:
        raise TypeError("judge needs the sweep's attack (sweep.json: attack)")
    cls = ATTACKS.get(attack, "attack")
    refs_t = trials[trials.status == "reference"].set_index("method")
    if "retrain" not in refs_t.index:
        raise ValueError("the trials table has no retrain reference row")
    every = collect_runs(trials, scores, meta, seeds, cls.item_keys)  # accuracy: the test split is never tuned on
    runs = every if cls.uses_tuned_scenario else every[~every["tuned"].fillna(False).astype(bool)]
    refs = {r: runs[runs.method == r] for r in ("none", "retrain")}
    k_half = len((meta or {}).get("holdout_rows") or []) or None
    ctx = {"alpha": alpha, "delta": margin, "n_test": n_test, "k_half": k_half}
    best = best_rows(trials)
    # the sweep's own method order (sweep.json), not the order its trials happened to end in: the same
    # sweep gives the same table
    present = set(trials.method) - {"none", "retrain"}
    methods = [m for m in dict.fromkeys([*((meta or {}).get("spaces") or []), *sorted(present)]) if m in present]
    evidence = {r: cls.verdict_evidence(refs[r], refs, margin, ctx) for r in ("none", "retrain")}
    for m in methods:
        if m in best.index:
            evidence[m] = cls.verdict_evidence(runs[runs.method == m], refs, margin, ctx)
    judged = [m for m in methods if m in best.index]
    m_n = max(1, len(judged))
    pf = {m: evidence[m].p_fails for m in judged if evidence[m].p_fails is not None}
    pr = {m: evidence[m].p_removes for m in judged if evidence[m].p_removes is not None}
    rej_f, lev_f = holm_reject(pf, alpha), holm_levels(pf, alpha)
    rej_r, lev_r = holm_reject(pr, alpha), holm_levels(pr, alpha)
    ctx.update(m=m_n, initial=evidence["none"], n=evidence["none"].n)
    acc_of = {m: pd.to_numeric(g.get("test_acc"), errors="coerce").mean() for m, g in every.groupby("method")}
    floor = float(acc_of.get("retrain", float("nan"))) - tolerance
    shown = [c for c in verdict_columns(cls) if c not in VERDICT_HEAD]
    rows = [_row(shown, r, "reference", "θ_initial" if r == "none" else "θ_retrain", refs_t.loc[r] if r in refs_t.index
                 else pd.Series(dtype=object), evidence[r], verdict="reference", test_acc=acc_of.get(r))
            for r in ("none", "retrain")]
    for m in methods:
        if m not in best.index:
            rows.append({"method": m, "status": "no finished trial", "config": "",
                         "verdict": "not judged: no finished trial"})
            continue
        ev, r = evidence[m], best.loc[m]
        outcome = "fails" if rej_f.get(m) else "removes" if rej_r.get(m) else "inconclusive"
        need = cls.needed(ev, alpha / m_n) if outcome == "inconclusive" else None
        acc = acc_of.get(m, float("nan"))
        kept = None if missing(acc) else bool(acc >= floor)
        verdict = verdict_text(cls, ev, outcome, need, kept, both=bool(rej_f.get(m) and rej_r.get(m)))
        if bool(r.get("diverged")):
            verdict += " (diverged)"
        rows.append(_row(shown, m, "tuned", config_label(r), r, ev, outcome=outcome, n_needed=need, accuracy_kept=kept,
                         holm_fails=lev_f.get(m), holm_removes=lev_r.get(m), verdict=verdict, test_acc=acc))
    return Judgement(pd.DataFrame(rows, columns=verdict_columns(cls)), evidence, runs, m_n, ctx)


def _row(shown: list[str], method, status, config, r: pd.Series, ev, **extra) -> dict:
    return {"method": method, "status": status, "config": config, "runs": ev.runs, "scenarios": ev.scenarios,
            "n": ev.n, "effect": ev.effect, "effect_lo": ev.lo, "effect_hi": ev.hi, "margin": ev.margin,
            "p_fails": ev.p_fails, "p": ev.p_fails, "p_removes": ev.p_removes, **{c: r.get(c) for c in shown},
            **extra}  # test_acc: the mean over the runs (the accuracy condition's); the rest: the best trial's


def verdict_text(cls, ev, outcome: str, need, kept, both: bool) -> str:
    """The verdict in words, from the poison test's outcome and the accuracy condition (`kept`)."""
    if ev.effect is None and ev.note.startswith("not judged"):
        return ev.note
    if kept is None:
        return "not judged: missing test accuracy"
    if outcome == "fails":
        head = "fails: poison remains" + (" (detectable, though inside the margin)" if both else "")
        return head + ("" if kept else " and accuracy below retrain")
    if outcome == "removes":
        return "removes the poison" if kept else "fails: accuracy below retrain (poison effect removed)"
    if not kept:
        return "fails: accuracy below retrain (poison effect inconclusive)"
    return "inconclusive: " + (ev.note + "; " if ev.note and ev.effect is None else "") + cls.advice(ev, need)


def verdict_table(trials: pd.DataFrame, alpha: float = D.ALPHA, tolerance: float = D.TOLERANCE,
                  attack: str | None = None,
                  n_test: int | None = None, seeds: pd.DataFrame | None = None, margin: float = DEFAULT_MARGIN,
                  scores: pd.DataFrame | None = None, meta: dict | None = None) -> pd.DataFrame:
    """One row per reference (none, retrain) and per method; `judge` with the evidence."""
    return judge(trials, alpha, tolerance, attack, n_test, seeds, margin, scores, meta).table
