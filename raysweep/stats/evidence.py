"""What an attack's verdict tests found, and the building blocks the attacks share.

The report (raysweep/verdict/judge.py) hands an attack the runs of one model (a method's best
configuration on every seed and scenario it ran on, or θ_initial) and the reference runs
(θ_initial "none", θ_retrain "retrain", one per scenario); the attack answers with an `Evidence`:
the effect left (in its own units, θ_retrain's = 0), a p-value that it remains ("fails"), a p-value
that it lies within the equivalence margin ("removes"), and what the report needs to say how many
units would decide an inconclusive case. docs/verdict.md states each attack's tests.

Runs tables (pandas): one row per run with `scenario` (the scenario's hash), `tuned` (True for the
sweep's own scenario, whose evidence the search saw parts of), `seed` (the unlearning seed), the
model's flat metrics, `scores` (the held-out poisons' GUS scores, a list, when the attack carries
Gaussian noise) and the attack's per-item vectors (`Attack.item_keys`, encoded with `encode_bits`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .exact import mean_ci, noninferiority, norm_ppf, norm_sf, proportion_less, sign_test_greater, t_cdf, tost


@dataclass
class Evidence:
    effect: float | None = None       # the poison effect left (attack units; θ_retrain's is 0)
    lo: float | None = None           # its 95 % confidence interval
    hi: float | None = None
    n: int = 0                        # units the tests counted (held-out poisons, targets, test images ...)
    sd: float | None = None           # per-unit SD of the effect (sample sizes)
    null_sd: float | None = None      # per-unit SD when no effect remains, where known (GUS: 1)
    two_sided: bool = False           # "fails" is two-sided (GUS) or one-sided (a directional effect)
    margin: float | None = None       # the equivalence margin, attack units
    p_fails: float | None = None      # p of "no effect remains": small = the effect is shown to remain
    p_removes: float | None = None    # p of "the effect is at least the margin": small = shown inside it
    runs: int = 0                     # unlearning runs pooled (seeds × scenarios)
    base: float | None = None         # θ_retrain's level of the attack's rate on the same units, if any
    scenarios: int = 0
    per_run: list = field(default_factory=list)   # the effect of each run: the spread over seeds
    note: str = ""
    p_destroyed: float | None = None  # p of "the positive control kept its effect": small = the signal was
    #                                   destroyed rather than the poison removed (canaries; None: no control)
    figures: dict = field(default_factory=dict)   # the attack's own figures for the verdict table


def fmt3(v) -> str:
    """A figure to 3 significant digits, or '–' when missing."""
    return "–" if v is None or v != v else f"{float(v):.3g}"


def encode_bits(values) -> str:
    """A boolean vector as compact text that survives CSV and Parquet: "<n>:<hex of the packed bits>"."""
    a = np.asarray(values, dtype=bool).ravel()
    return f"{len(a)}:{np.packbits(a).tobytes().hex()}"


def decode_bits(text) -> np.ndarray | None:
    if not isinstance(text, str) or ":" not in text:
        return None
    n, hexa = text.split(":", 1)
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexa), dtype=np.uint8))[: int(n)].astype(bool)


def missing(v) -> bool:
    """None or NaN: a figure that was not measured."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def first(rows: pd.DataFrame, col: str):
    """The first non-missing value of a column (None when there is none)."""
    if col not in rows:
        return None
    vals = [v for v in rows[col] if not missing(v)]
    return vals[0] if vals else None


def mean_of(rows: pd.DataFrame, col: str) -> float | None:
    if col not in rows:
        return None
    v = pd.to_numeric(rows[col], errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def per_scenario(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    key = rows["scenario"] if "scenario" in rows else pd.Series("sweep", index=rows.index)
    return {s: rows[key == s] for s in dict.fromkeys(key)}


def unit_evidence(x: np.ndarray, margin: float | None, two_sided: bool, null_sd: float | None = None,
                  p_fails: float | None = None) -> Evidence:
    """Evidence from per-unit effects x (independent units): effect = mean(x) with a t interval;
    removes = TOST (two-sided effects) or a one-sided non-inferiority t-test against the margin;
    fails = `p_fails` if given, else a z-test with the known null SD."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else None
    sd = float(x.std(ddof=1)) if n > 1 else None
    lo, hi = mean_ci(mean, sd, n) if sd is not None else (None, None)
    if p_fails is None and n and null_sd:
        z = abs(mean) * math.sqrt(n) / null_sd
        p_fails = math.erfc(z / math.sqrt(2)) if two_sided else 0.5 * math.erfc(mean * math.sqrt(n) / null_sd
                                                                                / math.sqrt(2))
    p_removes = None
    if margin is not None and sd is not None:
        p_removes = tost(mean, sd, n, margin) if two_sided else noninferiority(mean, sd, n, margin)
    return Evidence(mean, lo, hi, n, sd, null_sd, two_sided, margin, p_fails, p_removes)


def needed_normal(ev: Evidence, level: float, fails_level: float | None = None) -> int | None:
    """Units at which the observed effect and SD would decide at `level` (normal approximation):
    fails needs |effect| >= z·σ0/√n (at `fails_level` when the fails test runs at its own level),
    removes needs (margin - |effect|) >= z·s/√n; the smaller n."""
    if ev.effect is None:
        return None
    out = []
    eff = abs(ev.effect) if ev.two_sided else ev.effect
    sd0 = ev.null_sd or ev.sd
    lf = level if fails_level is None else fails_level
    z_f = norm_ppf(1 - lf / 2) if ev.two_sided else norm_ppf(1 - lf)
    if sd0 and eff > 0:
        out.append((z_f * sd0 / eff) ** 2)
    if ev.margin is not None and ev.sd and eff < ev.margin:
        out.append((norm_ppf(1 - level) * ev.sd / (ev.margin - eff)) ** 2)
    return max(2, math.ceil(min(out))) if out else None


def paired_binary(mine: pd.DataFrame, refs: dict[str, pd.DataFrame], key: str, scalar: str, sign: int,
                  margin_fraction: float, n_fallback: int | None) -> Evidence:
    """Evidence for an attack whose effect is a rate on fixed items (test images, triggered reviews)
    that every model sees: paired with θ_retrain item by item. d_i = sign · (model's correctness on
    item i, averaged over its seeds − θ_retrain's), so d > 0 is the poison's direction (sign -1:
    accuracy, the poison lowers it; +1: attack success, the poison raises it).
      fails:   exact one-sided sign test on the items where the two differ (McNemar's exact test
               for one seed; the sign test of the seed-averaged differences for several);
      removes: one-sided t-test that mean(d) < margin = fraction · θ_initial's mean d.
    Without per-item vectors (sweeps from before they were recorded) it falls back to the unpaired
    rates, and says so in `note`."""
    ret = per_scenario(refs["retrain"])
    ini = per_scenario(refs["none"])
    d_all, d_init, per_run = [], [], []
    paired = True
    for scen, rows in per_scenario(mine).items():
        r = decode_bits(first(ret.get(scen, pd.DataFrame()), key))
        vecs = [decode_bits(v) for v in rows[key]] if key in rows else [None]
        if r is None or any(v is None or len(v) != len(r) for v in vecs):
            paired = False
            break
        m = np.mean(np.stack(vecs), axis=0)
        d_all.append(sign * (m - r))
        per_run += [float(sign * (v.mean() - r.mean())) for v in vecs]
        i = decode_bits(first(ini.get(scen, pd.DataFrame()), key))
        if i is not None and len(i) == len(r):
            d_init.append(sign * (i.astype(float) - r))
    if paired and d_all:
        d = np.concatenate(d_all)
        margin = max(0.0, margin_fraction * float(np.concatenate(d_init).mean())) if d_init else None
        ev = unit_evidence(d, margin, False, p_fails=sign_test_greater(int((d > 0).sum()), int((d < 0).sum())))
        ev.per_run, ev.runs, ev.scenarios = per_run, len(per_run), len(d_all)
        if len(d_all) >= 2 and margin is not None:  # θ_retrain as a distribution: each scenario has its own
            means = np.array([float(x.mean()) for x in d_all])
            between = float(means.std(ddof=1)) / math.sqrt(len(means))
            if ev.sd is not None and between > ev.sd / math.sqrt(len(d)):  # the spread over scenarios decides
                ev.p_removes = t_cdf((float(means.mean()) - margin) / between, len(means) - 1) if between > 0 \
                    else float(means.mean() >= margin)
                ev.note = "removes tested over the scenarios' θ_retrain spread (t, S − 1 df)"
        return ev
    # unpaired fallback: two independent proportions
    pm, pr, pi = mean_of(mine, scalar), mean_of(refs["retrain"], scalar), mean_of(refs["none"], scalar)
    n = int(n_fallback or 0)
    if pm is None or pr is None or n < 2:
        return Evidence(note="not judged: missing figures")

    eff = sign * (pm - pr)
    p_fails = proportion_less(pr, n, pm, n) if sign > 0 else proportion_less(pm, n, pr, n)
    sd = math.sqrt(pm * (1 - pm) + pr * (1 - pr)) or 1 / math.sqrt(n)
    margin = max(0.0, margin_fraction * sign * (pi - pr)) if pi is not None else None
    ev = Evidence(eff, eff - 1.96 * sd / math.sqrt(n), eff + 1.96 * sd / math.sqrt(n), n, sd, None, False, margin,
                  p_fails, noninferiority(eff, sd, n, margin) if margin is not None else None)
    ev.per_run = [sign * (float(v) - pr) for v in pd.to_numeric(mine[scalar], errors="coerce").dropna()]
    ev.runs, ev.scenarios = len(ev.per_run), len(per_scenario(mine))
    ev.note = "unpaired: per-item results not recorded in this sweep"
    return ev


def accuracy_evidence(mine: pd.DataFrame, retrain: pd.DataFrame, tolerance: float,
                      n_test: int | None) -> dict:
    """Accuracy as a non-inferiority test with the tolerance as its margin: H0 "the model's test
    accuracy is at least `tolerance` below θ_retrain's". Per scenario, d_s = the model's accuracy
    (mean over its runs) − that scenario's θ_retrain's, with its standard error from the test images
    paired (per-image `test_correct` of both) or, without them, two binomials; over scenarios D =
    mean d_s, whose SE is the larger of the pooled within-scenario SE and, with two or more
    scenarios, the spread of d_s over scenarios (which carries θ_retrain's seed-to-seed spread).
    p_kept small: accuracy shown within the tolerance; p_lost small: shown below it. Without per-image
    results or a test-set size: a point comparison (p None), said in `note`."""
    ret = per_scenario(retrain)
    d, se2, paired = [], [], True
    for scen, rows in per_scenario(mine).items():
        r = ret.get(scen)
        acc_m, acc_r = mean_of(rows, "test_acc"), mean_of(r, "test_acc") if r is not None else None
        if acc_m is None or acc_r is None:
            continue
        bits_r = decode_bits(first(r, "test_correct"))
        bits_m = [decode_bits(v) for v in rows["test_correct"]] if "test_correct" in rows else [None]
        if bits_r is not None and all(b is not None and len(b) == len(bits_r) for b in bits_m):
            di = np.mean(np.stack(bits_m), axis=0) - bits_r
            d.append(float(di.mean()))
            se2.append(float(di.var(ddof=1)) / len(di))
            continue
        paired = False
        if not n_test:
            d.append(acc_m - acc_r)
            se2.append(float("nan"))
            continue
        d.append(acc_m - acc_r)  # runs on the same test images are not independent: n_test, not n_test x runs
        se2.append(acc_m * (1 - acc_m) / n_test + acc_r * (1 - acc_r) / n_test)
    if not d:
        return {"diff": None, "p_kept": None, "p_lost": None, "se": None, "note": "no test accuracy"}
    big_d = float(np.mean(d))
    if any(math.isnan(v) for v in se2):
        return {"diff": big_d, "p_kept": None, "p_lost": None, "se": None,
                "note": "accuracy: a point comparison (neither per-image results nor the test-set size recorded)"}
    se = math.sqrt(sum(se2)) / len(d)
    df = None  # the within-scenario SE rests on thousands of images: normal
    if len(d) >= 2:
        between = float(np.std(d, ddof=1)) / math.sqrt(len(d))
        if between > se:  # the spread over scenarios decides: a t with S - 1 degrees of freedom
            se, df = between, len(d) - 1
    z = (big_d + tolerance) / se if se > 0 else math.copysign(math.inf, big_d + tolerance)
    upper = (lambda t: 1 - t_cdf(t, df)) if df else norm_sf
    note = "" if len(d) >= 2 else "θ_retrain's seed-to-seed spread not measured (one scenario: --scenario-seeds)"
    if not paired:
        note = "; ".join(x for x in (note, "accuracy unpaired: per-image results not recorded") if x)
    return {"diff": big_d, "se": se, "df": df, "p_kept": upper(z), "p_lost": upper(-z), "note": note}
