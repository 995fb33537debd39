"""Build the report of a sweep from its exported tables alone.

    raysweep report SWEEP [--out DIR] [--seeds N]

SWEEP is a sweep directory or a folder written by `raysweep export --out` (trials/history/scores
tables + sweep.json), so a copied sweep can be reported offline without Ray.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from ..artifacts import atomic_write_text
from ..errors import RaysweepError
from ..results import load_tables
from . import figures
from .render import to_html, to_markdown
from .verdict import ATTACK_TESTS, detection_floor, verdict_table


def read_tables(path: str | Path):
    """(meta, trials, history, scores) from exported tables if present, else from the sweep dir."""
    path = Path(path)
    if not (path / "sweep.json").is_file():
        raise RaysweepError(f"{path} holds no sweep.json: pass a sweep directory or an export folder")
    meta = json.loads((path / "sweep.json").read_text())
    for ext, reader in (("parquet", pd.read_parquet), ("csv", pd.read_csv)):
        if (path / f"trials.{ext}").is_file():
            return meta, *(reader(path / f"{n}.{ext}") for n in ("trials", "history", "scores"))
    return meta, *load_tables(path)


def importances(meta: dict, trials: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Optuna fANOVA parameter importances per method, rebuilt from the finished trials."""
    import optuna

    from ..sweep.spaces import parse_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = {}
    for method, sp in meta["spaces"].items():
        space = parse_space({"method": method, "params": sp["params"]}, sp.get("source", method), method)
        dists = space.optuna()
        g = trials[(trials.method == method) & (trials.status == "finished")]
        study = optuna.create_study(direction="minimize")
        for _, r in g.iterrows():
            params = {}
            for name in dists:
                v = r["cap_share"] if name == "cap_share" else r.get(f"hp_{name}")
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    break
                params[name] = type(dists[name].to_external_repr(dists[name].to_internal_repr(v)))(v) \
                    if not isinstance(v, str) else v
            else:
                study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                          value=float(r["objective"])))
        try:
            out[method] = dict(optuna.importance.get_param_importances(study)) if len(study.trials) >= 3 else {}
        except (RuntimeError, ValueError):
            out[method] = {}
    return out


def seed_rows(meta: dict, trials: pd.DataFrame, n: int, log) -> pd.DataFrame:
    """Re-run each method's best configuration on n fresh seeds (new poison draws and base models,
    prepared once each), next to θ_initial and θ_retrain of those seeds."""
    from dataclasses import replace

    from ..artifacts import LocalStore, read_manifest
    from ..config import scenario_from_dict
    from ..scenario import Scenario, prepare, public, store_key
    from ..unlearn.session import unlearn_scenario

    store = LocalStore(meta["store"])
    base = scenario_from_dict(read_manifest(store.open_dir(store_key(meta["scenario"])))["config"])
    best = trials[(trials.status == "finished") & trials.is_best.astype(bool)].set_index("method")
    rows = []
    for i in range(1, n + 1):
        cfg = replace(base, seed=base.seed + i)
        log(f"[report] seed {cfg.seed}: preparing scenario {cfg.hash()}")
        manifest, _ = prepare(cfg, store, "cpu", log=log)
        for ref, which in (("none", "initial"), ("retrain", "retrain")):
            rows.append({"seed": cfg.seed, "method": ref, **manifest["metrics"][which]})
        scen = Scenario.load(store, cfg)
        for m in best.index:
            r = best.loc[m]
            # the method's own Hyper validates and converts (3.0 -> 3 for integer fields)
            hp = {k[3:]: (v.item() if hasattr(v, "item") else v) for k, v in r.items()
                  if k.startswith("hp_") and not _isnan(v)}
            share = r.get("cap_share")
            budget = float(meta["config"]["budget"]) * (1.0 if _isnan(share) else float(share))
            res = unlearn_scenario(scen, m, budget, hp, meta["config"]["seed"])
            rows.append({"seed": cfg.seed, "method": m, **public(scen.evaluate(res.model)),
                         "budget_spent": res.budget_spent, "diverged": res.diverged})
    return pd.DataFrame(rows)


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


SHOW = {
    "gaussian": ["method", "config", "holdout_gus", "holdout_z", "holdout_p", "holdout_tpr_two", "test_acc", "mia_tpr",
                 "budget_spent", "holm_level", "verdict"],
    "gradient_matching": ["method", "config", "target_success", "n_targets", "p", "test_acc", "budget_spent",
                          "holm_level", "verdict"],
    "gradient_canceling": ["method", "config", "test_acc", "p", "budget_spent", "holm_level", "verdict"],
    "backdoor": ["method", "config", "asr", "p", "test_acc", "mia_tpr", "budget_spent", "holm_level", "verdict"],
}
VERDICT_SHOW = {"method": "method", "config": "best configuration (chosen on the tuning half)",
                "holdout_gus": "GUS", "holdout_z": "z", "holdout_p": "p (two-sided)", "holdout_tpr_two": "TPR@1%",
                "test_acc": "test acc", "mia_tpr": "MIA TPR@1%", "budget_spent": "budget", "holm_level": "Holm level",
                "target_success": "target hit rate", "asr": "attack success rate", "n_targets": "targets", "p": "p",
                "verdict": "verdict"}


def build_report(path: str | Path, out: str | Path | None = None, alpha: float = 0.05,
                 tolerance: float | None = None, seeds: int = 0, log=None) -> Path:
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    meta, trials, history, scores = read_tables(path)
    out = Path(out or Path(path) / "report").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = meta["config"]
    attack = meta.get("attack", "gaussian")
    tol = cfg.get("tolerance", 0.02) if tolerance is None else tolerance
    sr = None
    if seeds:
        sr = seed_rows(meta, trials, seeds, say)
        sr.to_csv(out / "seeds.csv", index=False)
    verdict = verdict_table(trials, alpha, tol, attack, meta.get("n_test"), sr)
    verdict.to_csv(out / "verdict.csv", index=False)
    tuned = verdict[verdict.status == "tuned"]
    m = len(tuned)
    k_half = len(meta.get("holdout_rows") or []) or int(meta.get("k", 0)) // 2
    strict = alpha / max(1, m)
    best = {r.method: r.trial_id for r in trials[trials.is_best.astype(bool)].itertuples()}
    figs = [
        (figures.score_histograms(scores, best, out), "GUS scores I_z with the N(0, 1) density: fresh noise vs "
         "θ_initial, the poisons vs θ_initial, and the held-out poisons vs each method's best unlearned model"),
        (figures.gus_vs_budget(history, trials, out), "GUS on the tuning half vs budget spent, every trial "
         "(best in blue), with θ_initial and θ_retrain"),
        (figures.accuracy_vs_gus(trials, meta.get("floor", float("nan")), out),
         "validation accuracy vs |GUS| (tuning half) of every finished trial, with the Pareto front"),
        (figures.mia_vs_gus(verdict, out), "TPR at 1 % FPR of the loss-threshold MIA and of the Gaussian test "
         "(held-out poisons)"),
        (figures.optimisation_history(trials, out), "objective per trial and its running best (Optuna TPE)"),
        (figures.param_importances(importances(meta, trials), out), "parameter importances (Optuna fANOVA)"),
    ]
    counts = (trials[trials.status != "reference"].groupby(["method", "status"]).size().unstack(fill_value=0)
              .reset_index())
    removed = tuned[tuned.verdict == "removes the poison"].method.tolist()
    failed_poison = tuned[tuned.poison_removed.eq(False)].method.tolist()
    failed_acc = tuned[tuned.accuracy_kept.eq(False)].method.tolist()
    refs = verdict.set_index("method")
    blocks = [
        ("h", 1, f"raysweep report: {meta['name']}"),
        ("p", f"Scenario {meta.get('scenario_name') or ''} ({meta['scenario']}): attack {attack}, {meta.get('k')} "
              f"poisons, "
              f"budget cap {cfg['budget']:g} of θ_initial's training compute ({meta.get('train_compute')} "
              f"sample-gradients), {cfg['trials']} trials per method, seed {cfg['seed']}. Sweep created "
              f"{meta.get('created')}; raysweep {meta['versions'].get('raysweep')}, torch "
              f"{meta['versions'].get('torch')}."),
        ("h", 2, "Verdict"),
        *(_gaussian_text(k_half, m, alpha, strict, tol, refs) if attack == "gaussian" else
          [("p", f"Each method's configuration was chosen on the search's evidence (validation split, the "
                 f"attack's effect: {meta.get('attack_metric')}) and judged by the {ATTACK_TESTS[attack]}, "
                 f"Holm-corrected over {m} methods at family-wise α = {alpha:g}. Accuracy kept: test accuracy ≥ "
                 f"θ_retrain's ({fmt_acc(refs, 'retrain')}) − {tol:g}.")]),
        ("table", verdict[[c for c in SHOW[attack]]].rename(columns=_headers(attack))),
        ("p", f"Measured: {len(removed)} of {m} tuned methods remove the poison by both criteria"
              f"{(': ' + ', '.join(removed)) if removed else ''}. Poison effect still detected: "
              f"{', '.join(failed_poison) or 'none'}. Accuracy below the tolerance: {', '.join(failed_acc) or 'none'}."
              f" Not rejecting is absence of evidence at this sample size, not proof of removal."),
    ]
    blocks.extend(_caution(attack, refs, alpha, tol, meta.get("n_test")))
    if sr is not None:
        cols = [c for c in ("holdout_gus", "holdout_z", "target_success", "test_acc", "mia_tpr") if c in sr]
        agg = sr.groupby("method", sort=False)[cols].agg(["mean", "std"])
        agg.columns = [f"{a} {b}" for a, b in agg.columns]
        blocks += [("h", 2, f"Best configurations on {seeds} fresh seeds"),
                   ("p", "New poison draws and base models per seed (prepared once each); mean and std."),
                   ("table", agg.reset_index())]
    blocks.append(("h", 2, "Figures"))
    for p, caption in figs:
        blocks.append(("img", p.name, caption))
    blocks += [("h", 2, "Trials"), ("table", counts)]
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, f"raysweep report: {meta['name']}"))
    say(f"[report] written to {out / 'report.md'} and report.html")
    return out / "report.md"


def _headers(attack: str) -> dict:
    if attack == "gaussian":
        return VERDICT_SHOW
    return {**VERDICT_SHOW, "config": "best configuration (chosen on validation)"}


def _gaussian_text(k_half, m, alpha, strict, tol, refs) -> list[tuple]:
    return [("p", f"Each method's configuration was chosen on the tuning half of the poisons and the validation "
                  f"split, then judged on the other {k_half} poisons and the test set. Poison removed: the two-sided "
                  f"z-test of holdout GUS = 0 (exact N(0, 1) null) does not reject at family-wise level "
                  f"α = {alpha:g}, Holm-corrected over {m} methods (the strictest step is α/{m} = {strict:.4g}, "
                  f"which rejects |GUS| ≥ {detection_floor(k_half, strict):.3f}; the loosest, α = {alpha:g}, "
                  f"rejects |GUS| ≥ {detection_floor(k_half, alpha):.3f}). Accuracy kept: test accuracy ≥ "
                  f"θ_retrain's ({fmt_acc(refs, 'retrain')}) − {tol:g}.")]


def _caution(attack: str, refs: pd.DataFrame, alpha: float, tol: float, n_test: int | None = None) -> list[tuple]:
    """A warning when θ_initial itself shows no poison effect (by the attack's own test against
    θ_retrain, uncorrected): every "removes" is then uninformative."""
    from .tests_exact import proportion_less

    if "none" not in refs.index:
        return []
    r, base = refs.loc["none"], refs.loc["retrain"]
    if attack == "gaussian":
        weak = _isnan(r.get("holdout_p")) or float(r["holdout_p"]) > alpha
        what = f"no significant signal on the held-out half (p = {fmt_p(r.get('holdout_p'))} > α = {alpha:g})"
    elif attack == "gradient_matching":
        weak = _isnan(r.get("target_success")) or float(r["target_success"]) == 0
        what = f"a target hit rate of {fmt_p(r.get('target_success'))}"
    elif attack == "backdoor":
        n = r.get("asr_n")
        p = None if _isnan(r.get("asr")) or _isnan(n) else proportion_less(float(base["asr"]), int(n),
                                                                            float(r["asr"]), int(n))
        weak = p is None or p > alpha
        what = (f"an attack success rate ({fmt_p(r.get('asr'))}) not significantly above θ_retrain's "
                f"({fmt_p(base.get('asr'))}; p = {fmt_p(p)})")
    else:
        p = proportion_less(float(r["test_acc"]), int(n_test), float(base["test_acc"]), int(n_test)) \
            if n_test else None
        weak = (p is None or p > alpha) or float(r["test_acc"]) >= float(base["test_acc"]) - tol
        what = (f"no significant accuracy loss against θ_retrain ({fmt_p(r.get('test_acc'))} vs "
                f"{fmt_p(base.get('test_acc'))}; one-sided p = {fmt_p(p)})")
    if not weak:
        return []
    return [("p", f"Caution: θ_initial itself shows {what}, so 'removes the poison' is uninformative here: there "
                  "was nothing detectable to remove. Use a scenario where θ_initial shows the poison.")]


def fmt_p(v) -> str:
    return "–" if _isnan(v) else f"{float(v):.3g}"


def fmt_acc(refs: pd.DataFrame, name: str) -> str:
    v = refs.loc[name, "test_acc"] if name in refs.index else None
    return "–" if _isnan(v) else f"{float(v):.3f}"
