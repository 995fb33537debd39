"""Decide, per method, whether its best tuned configuration removes the poison: four outcomes.

The configuration is chosen on the tuning evidence (lowest objective) and judged on evidence the
search did not see, pooled over the runs of it (re-runs on fresh unlearning seeds and fresh
scenarios, verdict/pool.py; the selected trial's own run only where there is no other). The attack
owns its tests (`Attack.verdict_evidence`); this module is generic, and `stats.power.outcomes`
applies the rule:

  fails             the test of "no poison effect remains" rejects (Holm over the methods judged);
  signal destroyed  else, the positive control (the canaries: noised samples kept and never
                    requested) is shown to have lost its effect (Holm, a family of its own);
  removes           else, the equivalence test rejects: the effect is shown to lie within the margin
                    δ × θ_initial's effect of θ_retrain's (Holm, a family of its own);
  inconclusive      none: the report gives the number of units (held-out poisons, targets, images) at
                    which the observed effect would decide at the Bonferroni level α/m.
Accuracy is a non-inferiority test with the tolerance as its margin against θ_retrain's (over the
scenarios: their θ_retrain's spread counts; stats.evidence.accuracy_evidence), Holm over the
methods: kept, lost (shown below), or undecided. A method "removes the poison" only when the poison
outcome is "removes" and accuracy is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .. import defaults as D
from ..attacks import ATTACKS
from ..results.tables import best_rows
from ..stats.evidence import accuracy_evidence, missing
from ..stats.exact import holm_reject
from ..stats.power import outcomes
from .pool import collect_runs, judged_runs

DEFAULT_MARGIN = D.MARGIN  # δ: docs/verdict.md ("The equivalence margin") gives the pilot behind it
OUTCOMES = ("fails", "signal destroyed", "removes", "inconclusive")
# verdict.csv; "p" repeats p_fails for readers of earlier reports
VERDICT_HEAD = ["method", "status", "config", "runs", "scenarios", "n", "effect", "effect_lo", "effect_hi",
                "margin", "p_fails", "p", "holm_fails", "p_removes", "holm_removes", "p_destroyed", "holm_destroyed",
                "outcome", "n_needed"]
VERDICT_TAIL = ["test_acc", "acc_diff", "p_acc_kept", "accuracy", "mia_tpr", "budget_spent", "accuracy_kept",
                "verdict"]


def verdict_columns(cls) -> list[str]:
    """verdict.csv's columns: the generic ones around the attack's own (`Attack.verdict_columns`)."""
    own = [c for c in cls.verdict_columns if c not in VERDICT_HEAD + VERDICT_TAIL]
    return VERDICT_HEAD + own + VERDICT_TAIL


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
    every = collect_runs(trials, scores, meta, seeds, cls.item_keys)
    runs = judged_runs(every, cls.uses_tuned_scenario)
    refs = {r: runs[runs.method == r] for r in ("none", "retrain")}
    k_half = len((meta or {}).get("holdout_rows") or []) or None
    ctx = {"alpha": alpha, "delta": margin, "n_test": n_test, "k_half": k_half, "tolerance": tolerance}
    best = best_rows(trials)
    # the sweep's own method order (sweep.json), not the order its trials happened to end in: the same
    # sweep gives the same table
    present = set(trials.method) - {"none", "retrain"}
    methods = [m for m in dict.fromkeys([*((meta or {}).get("spaces") or []), *sorted(present)]) if m in present]
    evidence = {r: cls.verdict_evidence(refs[r], refs, margin, ctx) for r in ("none", "retrain")}
    judged = [m for m in methods if m in best.index]
    for m in judged:
        evidence[m] = cls.verdict_evidence(runs[runs.method == m], refs, margin, ctx)
    m_n = max(1, len(judged))
    family = lambda key: {m: getattr(evidence[m], key) for m in judged if getattr(evidence[m], key) is not None}  # noqa: E731
    outcome_of, levels = outcomes(family("p_fails"), family("p_removes"), alpha, family("p_destroyed"))
    rej_r = holm_reject(family("p_removes"), alpha)
    # accuracy: the test split is never tuned on, so the sweep's scenario counts for every attack (the
    # selected run still only where there is no other: the search's floor on validation accuracy picked it)
    acc_runs = judged_runs(every, need="test_acc")
    acc_ev = {m: accuracy_evidence(acc_runs[acc_runs.method == m], acc_runs[acc_runs.method == "retrain"], tolerance,
                                   n_test) for m in judged}
    acc_kept = holm_reject({m: a["p_kept"] for m, a in acc_ev.items() if a["p_kept"] is not None}, alpha)
    acc_lost = holm_reject({m: a["p_lost"] for m, a in acc_ev.items() if a["p_lost"] is not None}, alpha)
    ctx.update(m=m_n, initial=evidence["none"], n=evidence["none"].n,
               selected_judges=[m for m in judged if runs[runs.method == m].get("selected", pd.Series(dtype=bool))
                                .fillna(False).astype(bool).any()],
               accuracy_notes=list(dict.fromkeys(a["note"] for a in acc_ev.values() if a.get("note"))))
    acc_of = {m: pd.to_numeric(g.get("test_acc"), errors="coerce").mean() for m, g in acc_runs.groupby("method")}
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
        ev, r, a = evidence[m], best.loc[m], acc_ev[m]
        outcome = outcome_of.get(m, "inconclusive")
        need = cls.needed(ev, alpha / m_n) if outcome == "inconclusive" else None
        acc = acc_of.get(m, float("nan"))
        if missing(acc):
            state = None
        elif a["p_kept"] is None:  # a point comparison (old tables without per-image results or test size)
            state = "kept" if acc >= floor else "below"
        else:
            state = "kept" if acc_kept.get(m) else "below" if acc_lost.get(m) else "undecided"
        verdict = verdict_text(cls, ev, outcome, need, state, tolerance,
                               both=outcome == "fails" and rej_r.get(m, False))
        if bool(r.get("diverged")):
            verdict += " (diverged)"
        lev = levels.get(m, {})
        rows.append(_row(shown, m, "tuned", config_label(r), r, ev, outcome=outcome, n_needed=need,
                         accuracy_kept=None if state in (None, "undecided") else state == "kept", accuracy=state,
                         acc_diff=a["diff"], p_acc_kept=a["p_kept"], holm_fails=lev.get("fails"),
                         holm_removes=lev.get("removes"), holm_destroyed=lev.get("destroyed"), verdict=verdict,
                         test_acc=acc))
    return Judgement(pd.DataFrame(rows, columns=verdict_columns(cls)), evidence, runs, m_n, ctx)


def _row(shown: list[str], method, status, config, r: pd.Series, ev, **extra) -> dict:
    return {"method": method, "status": status, "config": config, "runs": ev.runs, "scenarios": ev.scenarios,
            "n": ev.n, "effect": ev.effect, "effect_lo": ev.lo, "effect_hi": ev.hi, "margin": ev.margin,
            "p_fails": ev.p_fails, "p": ev.p_fails, "p_removes": ev.p_removes, "p_destroyed": ev.p_destroyed,
            # test_acc: the mean over the runs (the accuracy test's); the attack's figures; the rest: the best trial's
            **{c: r.get(c) for c in shown}, **{c: v for c, v in ev.figures.items() if c in shown}, **extra}


def verdict_text(cls, ev, outcome: str, need, accuracy: str | None, tolerance: float = D.TOLERANCE,
                 both: bool = False) -> str:
    """The verdict in words, from the poison test's outcome and the accuracy test (`accuracy`: kept,
    below, undecided, or None when missing)."""
    if ev.effect is None and ev.note.startswith("not judged"):
        return ev.note
    if accuracy is None:
        return "not judged: missing test accuracy"
    lost = " and accuracy below retrain" if accuracy == "below" else ""
    if outcome == "fails":
        return "fails: poison remains" + (" (detectable, though inside the margin)" if both else "") + lost
    if outcome == "signal destroyed":
        return "signal destroyed, not removed: the canaries lost their effect too" + lost
    if outcome == "removes":
        if accuracy == "kept":
            return "removes the poison"
        if accuracy == "below":
            return "fails: accuracy below retrain (poison effect removed)"
        return f"inconclusive: poison effect removed, accuracy not shown within {tolerance:g} of θ_retrain's"
    if accuracy == "below":
        return "fails: accuracy below retrain (poison effect inconclusive)"
    return "inconclusive: " + (ev.note + "; " if ev.note and ev.effect is None else "") + cls.advice(ev, need)


def verdict_table(trials: pd.DataFrame, alpha: float = D.ALPHA, tolerance: float = D.TOLERANCE,
                  attack: str | None = None,
                  n_test: int | None = None, seeds: pd.DataFrame | None = None, margin: float = DEFAULT_MARGIN,
                  scores: pd.DataFrame | None = None, meta: dict | None = None) -> pd.DataFrame:
    """One row per reference (none, retrain) and per method; `judge` with the evidence."""
    return judge(trials, alpha, tolerance, attack, n_test, seeds, margin, scores, meta).table
