"""Build the report of a sweep from its exported tables alone.

    raysweep report SWEEP [--out DIR] [--seeds N] [--scenario-seeds M] [--margin DELTA]

SWEEP is a sweep directory or a folder written by `raysweep export --out` (trials/history/scores
tables + sweep.json), so a copied sweep can be reported offline without Ray.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from .. import defaults as D
from ..artifacts import atomic_write_table, atomic_write_text, open_store
from ..attack_search.figure import report_blocks as attack_search_blocks
from ..attacks import ATTACKS
from ..curve.figure import report_blocks as curve_blocks
from ..discovery.figure import report_blocks as discovery_blocks
from ..explain.figure import report_blocks as why_blocks
from ..prepare.scenario import store_key
from ..results.layout import require
from ..results.tables import read_tables
from ..stats.evidence import missing
from ..stats.power import POWER_REPS
from ..sweep.spaces import parse_space
from ..verdict.judge import DEFAULT_MARGIN, OUTCOMES, judge
from ..verdict.pool import rerun_best, spread_table
from . import figures
from .render import to_html, to_markdown


def importances(meta: dict, trials: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Optuna fANOVA parameter importances per method, rebuilt from the finished trials."""
    import optuna

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


HEADERS = {"method": "method", "config": "best configuration (chosen on the search's evidence)", "runs": "runs",
           "n": "n", "ci": "95 % CI", "p_fails": "p (fails)", "holm_fails": "Holm level (fails)",
           "p_removes": "p (removes)", "holm_removes": "Holm level (removes)",
           "test_acc": "test acc (mean over runs)", "mia_tpr": "MIA TPR@1%", "budget_spent": "budget",
           "p_destroyed": "p (signal destroyed)", "accuracy": "accuracy vs θ_retrain",
           "verdict": "verdict"}


def verdict_view(table: pd.DataFrame, cls) -> pd.DataFrame:
    """The verdict table as shown: generic columns around the attack's own (`Attack.verdict_columns`)."""
    v = table.copy()
    v["ci"] = [("–" if missing(lo) or missing(hi) else f"[{lo:+.3f}, {hi:+.3f}]")
               for lo, hi in zip(v.effect_lo, v.effect_hi)]
    cols = ["method", "config", "runs", "effect", "ci", "n", "p_fails", "holm_fails", "p_removes", "holm_removes",
            *(["p_destroyed"] if v.p_destroyed.notna().any() else []), *cls.verdict_columns, "test_acc", "accuracy",
            "budget_spent", "verdict"]
    return v[cols].rename(columns={**HEADERS, **cls.column_headers, "effect": cls.effect_header})


def build_report(path: str | Path, out: str | Path | None = None, alpha: float = D.ALPHA,
                 tolerance: float | None = None, seeds: int = 0, log=None, margin: float = DEFAULT_MARGIN,
                 scenario_seeds: int = 0, demo: bool = False, reruns_optional: bool = False) -> Path:
    """Verdict, figures, Markdown + HTML. seeds: fresh unlearning seeds per best configuration;
    scenario_seeds: fresh scenarios (verdict/pool.py); margin: δ, the equivalence margin as a
    fraction of θ_initial's effect. The library call judges what it is given (0, 0: the tables alone);
    `raysweep report` re-runs by default (defaults.REPORT_SEEDS, REPORT_SCENARIO_SEEDS). demo: the
    report says that it is the demo's, and what its power is. reruns_optional (the command's defaults):
    a sweep whose store no longer holds its scenario (a copied sweep) is judged on its tables alone."""
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    meta, trials, history, scores = read_tables(path)
    require(meta, path, "attack", "spaces", "versions")
    out = Path(out or Path(path) / "report").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = meta["config"]
    attack = meta["attack"]
    cls = ATTACKS.get(attack, "attack")
    tol = cfg["tolerance"] if tolerance is None else tolerance
    offline = bool(reruns_optional and (seeds or scenario_seeds) and not has_scenario(meta))
    if offline:
        say("[report] the sweep's scenario is not in its store (a copied sweep?): judging its tables alone")
        seeds = scenario_seeds = 0
    sr = None
    if seeds or scenario_seeds:
        sr = rerun_best(meta, trials, seeds, scenario_seeds, say)
        vectors = ["scores", "canary_scores", "test_correct", *cls.item_keys]  # per-item lists: not CSV cells
        atomic_write_table(sr.drop(columns=vectors, errors="ignore"), out / "seeds.csv")
    j = judge(trials, alpha, tol, attack, meta.get("n_test"), sr, margin, scores, meta)
    verdict = j.table
    atomic_write_table(verdict, out / "verdict.csv")
    tuned = verdict[verdict.status == "tuned"]
    best = {r.method: r.trial_id for r in trials[trials.is_best.astype(bool)].itertuples()}
    figs = [*([(figures.score_histograms(scores, best, out), "GUS scores I_z with the N(0, 1) density: fresh "
                "noise vs θ_initial, the poisons vs θ_initial, and the held-out poisons vs each method's best "
                "unlearned model")] if len(scores) else []),  # per-poison scores: noise attacks only
        (figures.gus_vs_budget(history, trials, out, cls.effect_label, cls.curve_key, cls.curve_label),
         f"{cls.curve_label or cls.effect_label} vs budget spent, every trial (best in blue), with θ_initial and "
         "θ_retrain"),
        (figures.accuracy_vs_gus(trials, meta.get("floor", float("nan")), out, cls.effect_label),
         "validation accuracy vs the poison effect the search minimised, every finished trial, with the Pareto "
         "front; diverged runs at the right edge"),
        *([(figures.mia_vs_gus(verdict, out, cls.tpr_column, cls.tpr_label), "TPR at 1 % FPR of the "
            f"loss-threshold MIA and of the attack's own per-sample test ({cls.tpr_label})")]
          if cls.tpr_column else []),
        (figures.optimisation_history(trials, out), "objective per trial and its running best (Optuna TPE); runs "
         "below the accuracy floor and diverged runs marked at the top edge"),
        (figures.param_importances(importances(meta, trials), out), "parameter importances (Optuna fANOVA)"),
    ]
    counts = (trials[trials.status != "reference"].groupby(["method", "status"]).size().unstack(fill_value=0)
              .reset_index())
    by = {o: tuned[tuned.outcome == o].method.tolist() for o in OUTCOMES}
    j.ctx["power"] = cls.power(j.evidence, j.ctx)  # a simulation: here, not in every judge (curve, discovery)
    power = power_line(j.ctx, demo)
    removed = tuned[tuned.verdict == "removes the poison"].method.tolist()
    failed_acc = tuned[tuned.accuracy_kept.eq(False)].method.tolist()
    runs_note = (f"the re-runs of each method's best configuration ({seeds} fresh unlearning seed(s) on the sweep's "
                 f"scenario, {scenario_seeds} fresh scenario(s); the selected trial's own run only where there is no "
                 "other)" if sr is not None else "each method's best trial alone (one unlearning seed: "
                 "`raysweep report SWEEP --seeds N` re-runs it on N fresh seeds, `--scenario-seeds M` on M fresh "
                 "scenarios)")
    blocks = [
        ("h", 1, f"raysweep report: {meta['name']}"),
        ("p", f"Scenario {meta.get('scenario_name') or ''} ({meta['scenario']}): attack {attack}, {meta.get('k')} "
              f"poisons, budget cap {cfg['budget']:g} of θ_initial's training compute ({meta.get('train_compute')} "
              f"sample-gradients), {cfg['trials']} trials per method, seed {cfg['seed']}. Sweep created "
              f"{meta.get('created')}; raysweep {meta['versions'].get('raysweep')}, torch "
              f"{meta['versions'].get('torch')}."),
        ("h", 2, "Verdict"),
        ("p", f"Each method's configuration was chosen on the search's evidence and is judged on evidence the "
              f"search did not see, pooled over {runs_note}. Four outcomes for the poison, each with its own test: "
              f"**fails**: the effect is shown to remain; **signal destroyed**: the canaries (noised samples that "
              f"stay in the retain set and are never requested) are shown to have lost their effect too, so a fall "
              f"of the poisons' effect cannot be credited to unlearning; **removes**: the effect is shown to lie "
              f"within the equivalence margin of θ_retrain's (δ = {margin:g} of θ_initial's effect) and the "
              f"canaries kept theirs; **inconclusive**: none of these, with the sample size that would decide. "
              f"Each family is Holm-corrected over the {j.m} methods at family-wise α = {alpha:g}. Accuracy is a "
              f"non-inferiority test against θ_retrain's ({fmt_acc(verdict.set_index('method'), 'retrain')}) with "
              f"the tolerance {tol:g} as its margin (kept, below, or undecided); a method removes the poison only "
              f"if the poison is removed and accuracy is kept. See docs/verdict.md."),
        ("p", cls.verdict_text(j.ctx)),
        ("p", power),
        ("table", verdict_view(verdict, cls)),
        ("p", f"Measured: {len(removed)} of {len(tuned)} tuned methods remove the poison"
              f"{(': ' + ', '.join(removed)) if removed else ''}. Poison effect shown to remain: "
              f"{', '.join(by['fails']) or 'none'}; signal destroyed (canaries lost too): "
              f"{', '.join(by['signal destroyed']) or 'none'}; shown gone: {', '.join(by['removes']) or 'none'}; "
              f"inconclusive: {', '.join(by['inconclusive']) or 'none'}. Accuracy shown below the tolerance: "
              f"{', '.join(failed_acc) or 'none'}."),
    ]
    if offline:
        blocks.append(("p", f"Note: the store {meta.get('store')} does not hold this sweep's scenario, so nothing "
                            "was re-run: the verdict rests on the sweep's own tables."))
    if j.ctx.get("selected_judges"):
        blocks.append(("p", "Note: the selected trial judges itself for " + ", ".join(j.ctx["selected_judges"]) +
                       " (no fresh run of its configuration): its unlearning seed's luck is part of why the search "
                       "picked it. `raysweep report` re-runs each pick on fresh seeds by default."))
    blocks += [("p", f"Note: {n}.") for n in j.ctx.get("accuracy_notes") or []]
    blocks += [("p", c) for c in cls.caution(j.evidence["none"], j.ctx)]
    notes = dict.fromkeys(ev.note for ev in j.evidence.values() if ev.note and ev.effect is not None)
    blocks += [("p", f"Note: {n}.") for n in notes]
    if sr is None:
        blocks.append(("p", "Note: each verdict rests on one unlearning run per method; the spread over seeds is "
                            "not measured (`--seeds N`)."))
    else:
        tested = {m: j.evidence[m] for m in ["none", "retrain", *tuned.method] if m in j.evidence}
        blocks += [("h", 2, "Spread over seeds"),
                   ("p", f"Every run the verdict pooled: {seeds} fresh unlearning seed(s) and "
                         f"{scenario_seeds} fresh scenario(s) (new poisons and references, prepared once each and "
                         "cached); the pooled effect with its 95 % interval, and the effect of each run. All runs: "
                         "seeds.csv."),
                   ("table", spread_table(j.runs, tested, cls.effect_header))]
    blocks += curve_blocks(path, out, cls.effect_header, tol)  # the budget curve, when `raysweep curve` has run
    blocks += discovery_blocks(path, out, cls.effect_header)  # when `raysweep discovery` has run
    blocks += why_blocks(path, out)  # "Why: H1 and H2", when `raysweep explain` has run
    blocks.append(("h", 2, "Figures"))
    for p, caption in figs:
        blocks.append(("img", p.name, caption))
    blocks += [("h", 2, "Trials"), ("table", counts)]
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, f"raysweep report: {meta['name']}"))
    say(f"[report] written to {out / 'report.md'} and report.html")
    return out / "report.md"


def attack_search_report(root: str | Path, out: str | Path | None = None) -> Path:
    """An attack search's report (`raysweep attack-search`, `raysweep report ROOT`): its section alone, as
    Markdown and HTML in `out` (default ROOT/report); each point's sweep has its own `raysweep report`."""
    out = Path(out or Path(root) / "report").resolve()
    out.mkdir(parents=True, exist_ok=True)
    blocks = [("h", 1, f"raysweep attack search: {Path(root).name}"), *attack_search_blocks(root, out)]
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, f"raysweep attack search: {Path(root).name}"))
    return out / "report.md"


def has_scenario(meta: dict) -> bool:
    """Whether the store the sweep names holds its scenario (re-runs need it)."""
    try:
        return open_store(meta["store"]).has(store_key(meta["scenario"]))
    except Exception:  # noqa: BLE001 - a store that cannot be opened holds nothing usable here
        return False


def power_line(ctx: dict, demo: bool = False) -> str:
    """The line beginning `power:`: P(a method as good as θ_retrain is judged removes), then P(one keeping
    half of θ_initial's effect is judged fails), at this report's own sample (Attack.power)."""
    pw = ctx.get("power")
    who = "this demo's report" if demo else "this report"
    if not pw:
        return (f"power: not computed for this attack's tests at {who}'s sample (only Gaussian poisoning's tests "
                "are simulated; docs/verdict.md).")
    text = (f"power: {pw['removes']:.2f} that a method as good as θ_retrain is judged \"removes\", "
            f"{pw['fails']:.2f} that one keeping half of θ_initial's effect is judged \"fails\" ({who}: "
            f"{pw['n']} {pw['unit']}, {pw['canaries']} canaries, margin {pw['margin']:.3f}, Holm over {ctx['m']} "
            f"methods at α = {ctx['alpha']:g}; {POWER_REPS:,} simulated reports; the poison tests only, accuracy is "
            "tested apart).")
    if demo:
        text += (" This is the demo: one scenario, and each pick judges itself; `raysweep report SWEEP` re-runs the "
                 f"picks on {D.REPORT_SEEDS} fresh seed(s) and {D.REPORT_SCENARIO_SEEDS} fresh scenarios, which the "
                 "docs size for power ≥ 0.9 and ≥ 0.95 on the default scenario (docs/verdict.md).")
    elif pw["removes"] < 0.9 or pw["fails"] < 0.95:
        text += (" Below the 0.9 / 0.95 the defaults aim at: pool more scenarios (`--scenario-seeds`) before "
                 "reading a \"removes\" or an \"inconclusive\".")
    return text


def fmt_acc(refs: pd.DataFrame, name: str) -> str:
    v = refs.loc[name, "test_acc"] if name in refs.index else None
    return "–" if missing(v) else f"{float(v):.3f}"
