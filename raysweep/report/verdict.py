"""Decide, per method, whether its best tuned configuration removed the poison.

The configuration is chosen on the tuning evidence (lowest objective: |GUS| on the tuning half of
the poisons, validation accuracy) and judged on other evidence: the held-out half of the poisons
and the test set.

  poison removed  <=>  the two-sided z-test of holdout GUS = 0 (z = sqrt(k/2) * GUS ~ N(0, 1) when
                       the model never saw the noise: exact, no shadow models) does NOT reject at
                       family-wise level alpha, Holm-corrected over the methods judged;
  accuracy kept   <=>  test_acc >= θ_retrain's test_acc - tolerance.
A method "removes the poison" only if both hold; otherwise it "fails" and the verdict names the
condition(s) that failed. Not rejecting is absence of evidence at this sample size, not proof of
removal: the table prints the detection floor of the test next to it.
"""
from __future__ import annotations

import math

import pandas as pd

VERDICT_COLUMNS = ["method", "status", "config", "holdout_gus", "holdout_z", "holdout_p", "holdout_tpr_two",
                   "test_acc", "mia_tpr", "budget_spent", "asr", "asr_n", "target_success", "n_targets", "p",
                   "holm_level", "poison_removed", "accuracy_kept", "verdict"]
ATTACK_TESTS = {
    "gaussian": "two-sided z-test of holdout GUS = 0",
    "gradient_matching": "one-sided Fisher exact test: target hits over fresh seeds, method > θ_retrain",
    "gradient_canceling": "one-sided two-proportion z-test: test accuracy, method < θ_retrain",
    "backdoor": "one-sided two-proportion z-test: attack success rate on triggered test reviews, method > θ_retrain",
}


def holm_levels(pvalues: dict[str, float], alpha: float) -> dict[str, float]:
    """Holm's step-down thresholds: the i-th smallest p (i = 0..m-1) is compared with alpha/(m - i);
    once one is not rejected, none after it is. Returns each name's threshold (the level its p had
    to be under to reject), with non-reached names given their nominal step threshold as well."""
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


def _config(row: pd.Series) -> str:
    hp = {k[3:]: row[k] for k in row.index if k.startswith("hp_") and not _missing(row[k])}
    parts = []
    for k, v in sorted(hp.items()):
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    if not _missing(row.get("cap_share")):
        parts.append(f"cap_share={row['cap_share']:.2f}")
    return ", ".join(parts)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _pvalue(attack: str, row: pd.Series, refs: pd.DataFrame, seeds: pd.DataFrame | None,
            n_test: int | None) -> tuple[float | None, float | None, int | None]:
    """(p-value of "the poison's effect remains", target hit rate, number of targets) for one method."""
    if attack == "gaussian":
        p = row.get("holdout_p")
        return (None if _missing(p) else float(p)), None, None
    if attack == "gradient_matching":
        if seeds is None or not len(seeds):
            return None, row.get("target_success"), 1
        mine = seeds[seeds.method == row.name].target_success.astype(float)
        base = seeds[seeds.method == "retrain"].target_success.astype(float)
        if not len(mine) or not len(base):
            return None, None, None
        from .tests_exact import fisher_greater

        return fisher_greater(int(mine.sum()), len(mine), int(base.sum()), len(base)), mine.mean(), len(mine)
    if attack == "gradient_canceling":
        if _missing(row.get("test_acc")) or not n_test:
            return None, None, None
        from .tests_exact import proportion_less

        return proportion_less(float(row["test_acc"]), n_test, float(refs.loc["retrain", "test_acc"]), n_test), \
            None, None
    if attack == "backdoor":
        n = row.get("asr_n")
        if _missing(row.get("asr")) or _missing(n) or not n:
            return None, None, None
        from .tests_exact import proportion_less

        return proportion_less(float(refs.loc["retrain", "asr"]), int(n), float(row["asr"]), int(n)), None, None
    raise ValueError(f"no verdict test for attack {attack!r}")


def verdict_table(trials: pd.DataFrame, alpha: float = 0.05, tolerance: float = 0.02, attack: str = "gaussian",
                  n_test: int | None = None, seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per reference (none, retrain) and per method (its best finished trial).

    The test that decides "poison removed" fits the attack (ATTACK_TESTS); p-values are
    Holm-corrected over the methods judged. `seeds`: re-runs on fresh seeds (needed for the
    gradient-matching test over targets); `n_test`: test-set size (Gradient Canceling's test)."""
    refs = trials[trials.status == "reference"].set_index("method")
    if "retrain" not in refs.index:
        raise ValueError("the trials table has no retrain reference row")
    floor = float(refs.loc["retrain", "test_acc"]) - tolerance
    best = trials[(trials.status == "finished") & trials.is_best.astype(bool)].set_index("method")
    methods = [m for m in dict.fromkeys(trials.method) if m not in ("none", "retrain")]
    evidence = {m: _pvalue(attack, best.loc[m], refs, seeds, n_test) for m in methods if m in best.index}
    judged = {m: e[0] for m, e in evidence.items() if e[0] is not None}
    reject = holm_reject(judged, alpha)
    levels = holm_levels(judged, alpha)
    rows = []
    for ref in ("none", "retrain"):
        r = refs.loc[ref]
        hits = None
        if seeds is not None and len(seeds) and "target_success" in seeds:
            hits = seeds[seeds.method == ref].target_success.astype(float).mean()
        rows.append({"method": ref, "status": "reference", "config": "θ_initial" if ref == "none" else "θ_retrain",
                     **{c: r.get(c) for c in VERDICT_COLUMNS[3:12]},
                     "target_success": hits if hits is not None else r.get("target_success"),
                     "holm_level": None, "poison_removed": None, "accuracy_kept": None, "verdict": "reference"})
    for m in methods:
        if m not in best.index:
            status = "no finished trial"
            rows.append({"method": m, "status": status, "config": "", "verdict": f"not judged: {status}"})
            continue
        r = best.loc[m]
        p, hits, n_t = evidence[m]
        removed = not reject.get(m, False) if m in judged else None
        kept = float(r["test_acc"]) >= floor if not _missing(r["test_acc"]) else None
        if removed is None:
            verdict = ("not judged: one target; `raysweep report --seeds N` tests over N fresh targets"
                       if attack == "gradient_matching" else "not judged: missing figures")
        elif kept is None:
            verdict = "not judged: missing test accuracy"
        elif removed and kept:
            verdict = "removes the poison"
        else:
            why = [w for w, bad in (("poison remains", not removed), ("accuracy below retrain", not kept)) if bad]
            verdict = "fails: " + " and ".join(why)
        if bool(r.get("diverged")):
            verdict += " (diverged)"
        rows.append({"method": m, "status": "tuned", "config": _config(r),
                     **{c: r.get(c) for c in VERDICT_COLUMNS[3:12]}, "target_success": hits, "n_targets": n_t,
                     "p": p, "holm_level": levels.get(m), "poison_removed": removed, "accuracy_kept": kept,
                     "verdict": verdict})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def detection_floor(k_half: int, alpha_level: float) -> float:
    """Smallest |GUS| the two-sided test rejects at `alpha_level` with k_half scores."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha_level / 2) / math.sqrt(max(1, k_half))
