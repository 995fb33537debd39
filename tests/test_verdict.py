"""The three outcomes (fails / removes / inconclusive) per attack, on constructed tables, the
objective's ranking at any scale, the statistics behind them, and the figures' diverged runs."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from raysweep.objective import DIVERGED, objective
from raysweep.results.tables import pareto_mask
from raysweep.stats.evidence import encode_bits
from raysweep.verdict.judge import judge, verdict_table

METHODS = ["gd", "ngd", "ga", "euk", "cfk", "scrub", "neggrad_plus", "ssd"]


def constructed_sweep(n_trials=16, diverged=("ga", "neggrad_plus"), seed=0, diverged_effect=DIVERGED,
                      methods=tuple(METHODS)):
    """trials, history, scores of a made-up sweep: real trials near θ_initial's |GUS| 0.45, a few below
    the accuracy floor, and one diverged run in each method of `diverged`."""
    rng = np.random.default_rng(seed)
    floor, rows, hist, scores = 0.672, [], [], []
    for m in methods:
        for i in range(n_trials):
            div = m in diverged and i == 3
            eff = abs(rng.normal(0.42, 0.05)) if not div else diverged_effect
            acc = float(np.clip(rng.normal(0.69, 0.02 if m not in ("ga", "euk") else 0.08), 0.1, 0.75)) \
                if not div else 0.1
            tid = f"{m}_{i:02d}"
            rows.append(dict(method=m, trial_id=tid, order=i, status="finished", effect=eff,
                             val_acc=acc, objective=objective(eff, acc, floor, div), diverged=div,
                             hp_lr=float(10 ** rng.uniform(-5, -1)), cap_share=1.0,
                             holdout_gus=-0.4 if not div else None, holdout_z=-6.3 if not div else None,
                             holdout_tpr_two=0.01, test_acc=acc, mia_tpr=0.002, budget_spent=0.1))
            g = -eff if not div else None
            for r in range(1, 11):
                last = r == 10
                hist.append(dict(method=m, trial_id=tid, report=r, step=r, budget_spent=0.01 * r,
                                 val_acc=acc, tune_gus=(-0.45 + (0.45 + (g or 0)) * r / 10) if not (div and last)
                                 else None, effect=eff if (last or not div) else 0.4,
                                 objective=None, final=last))
    for ref, eff, acc in (("none", 0.45, 0.685), ("retrain", 0.02, 0.692)):
        rows.append(dict(method=ref, trial_id=ref, status="reference", effect=eff, val_acc=acc,
                         tune_gus=-eff, holdout_gus=-0.47 if ref == "none" else -0.03, holdout_tpr_two=0.01,
                         test_acc=acc, mia_tpr=0.003, diverged=False))
    t = pd.DataFrame(rows)
    t["is_best"], t["pareto"] = False, False
    for _, g in t[t.status == "finished"].groupby("method"):
        t.loc[g["objective"].astype(float).idxmin(), "is_best"] = True
        t.loc[g.index, "pareto"] = pareto_mask(g.astype({"effect": float, "val_acc": float}))
    for ref, mu in (("none", -0.45), ("retrain", 0.0)):
        for i in range(500):
            scores.append(dict(method=ref, trial_id=ref, poison=i, part="holdout" if i % 2 else "tune",
                               score=rng.normal(mu, 1), control=rng.normal(0, 1)))
    for r in t[t.is_best].itertuples():
        for i in range(1, 500, 2):
            scores.append(dict(method=r.method, trial_id=r.trial_id, poison=i, part="holdout",
                               score=rng.normal(-0.4, 1), control=rng.normal(0, 1)))
    return t, pd.DataFrame(hist), pd.DataFrame(scores)


def gaussian_sweep(methods: dict[str, np.ndarray], initial: np.ndarray, retrain: np.ndarray, acc: float = 0.70):
    """(trials, scores, meta) of a Gaussian sweep whose held-out scores are given per model."""
    n = len(initial)
    rows = [dict(method="none", trial_id="none", status="reference", holdout_gus=initial.mean(), test_acc=0.71,
                 is_best=False),
            dict(method="retrain", trial_id="retrain", status="reference", holdout_gus=retrain.mean(), test_acc=0.70,
                 is_best=False)]
    scores = []
    for m, s in methods.items():
        rows.append(dict(method=m, trial_id=f"{m}-1", status="finished", is_best=True, holdout_gus=s.mean(),
                         holdout_z=s.mean() * math.sqrt(n), test_acc=acc, hp_lr=1e-3, cap_share=1.0, diverged=False,
                         seed=0))
        scores += [dict(method=m, trial_id=f"{m}-1", poison=i, part="holdout", score=v, control=0.0)
                   for i, v in enumerate(s)]
    meta = {"scenario": "abc", "holdout_rows": list(range(n)), "config": {"seed": 0},
            "reference_scores": {"none": {"scores": list(initial), "control": [0.0] * n},
                                 "retrain": {"scores": list(retrain), "control": [0.0] * n}}}
    return pd.DataFrame(rows), pd.DataFrame(scores), meta


def _judge(methods, initial, retrain, **kw):
    trials, scores, meta = gaussian_sweep(methods, initial, retrain)
    return judge(trials, scores=scores, meta=meta, **{"attack": "gaussian", **kw})


def test_a_model_that_never_saw_the_noise_removes_it_with_enough_poisons_and_is_inconclusive_with_few():
    rng = np.random.default_rng(0)
    for n, outcome in ((250, "removes"), (32, "inconclusive")):
        never = {f"m{i}": rng.normal(0, 1, n) for i in range(4)}  # scored exactly as under the null
        j = _judge(never, rng.normal(-0.476, 1, n), rng.normal(0, 1, n))
        v = j.table.set_index("method")
        assert set(v.loc[list(never), "outcome"]) == {outcome}, (n, v[["effect", "p_fails", "p_removes"]])
        if outcome == "removes":
            assert (v.loc[list(never), "verdict"] == "removes the poison").all()
            assert (v.loc[list(never), "p_removes"] <= v.loc[list(never), "holm_removes"]).all()
        else:
            assert (v.loc[list(never), "n_needed"] > n).all()
            assert v.loc["m0", "verdict"].startswith("inconclusive: ~") and "held-out poisons" in v.loc["m0", "verdict"]
        assert v.loc["m0", "margin"] == pytest.approx(0.5 * abs(j.evidence["none"].effect))


def test_a_remaining_effect_fails_and_accuracy_is_a_separate_condition():
    rng = np.random.default_rng(1)
    n = 250
    j = _judge({"gd": rng.normal(-0.45, 1, n), "ssd": rng.normal(0.0, 1, n)}, rng.normal(-0.476, 1, n),
               rng.normal(0, 1, n))
    v = j.table.set_index("method")
    assert v.loc["gd", "outcome"] == "fails" and v.loc["gd", "verdict"] == "fails: poison remains"
    trials, scores, meta = gaussian_sweep({"ssd": rng.normal(0.0, 1, n)}, rng.normal(-0.476, 1, n),
                                          rng.normal(0, 1, n), acc=0.30)
    low = verdict_table(trials, scores=scores, meta=meta, attack="gaussian").set_index("method")
    assert low.loc["ssd", "outcome"] == "removes"
    assert low.loc["ssd", "verdict"] == "fails: accuracy below retrain (poison effect removed)"


def test_the_verdict_lists_methods_in_the_sweeps_order_whatever_order_its_trials_ended_in():
    rng = np.random.default_rng(2)
    n = 64
    trials, scores, meta = gaussian_sweep({m: rng.normal(-0.3, 1, n) for m in ("ssd", "gd", "cfk")},
                                          rng.normal(-0.476, 1, n), rng.normal(0, 1, n))
    meta["spaces"] = {"gd": {}, "cfk": {}, "ssd": {}, "euk": {}}  # sweep.json's methods, in the sweep's order
    shuffled = pd.concat([trials.iloc[:2], trials.iloc[2:].iloc[::-1]], ignore_index=True)
    for t in (trials, shuffled):
        table = judge(t, scores=scores, meta=meta, attack="gaussian").table
        assert list(table.method) == ["none", "retrain", "gd", "cfk", "ssd"]  # euk: no trial, no row
    del meta["spaces"]  # no sweep.json order: by name
    assert list(judge(shuffled, scores=scores, meta=meta, attack="gaussian").table.method)[2:] == ["cfk", "gd", "ssd"]


def test_seeds_are_pooled_per_poison_and_the_spread_is_kept():
    """Runs on one scenario share the noise: their scores are averaged per poison (n stays the
    number of poisons), and each run's GUS is kept for the spread."""
    rng = np.random.default_rng(2)
    n = 250
    trials, scores, meta = gaussian_sweep({"gd": rng.normal(-0.3, 1, n)}, rng.normal(-0.476, 1, n),
                                          rng.normal(0, 1, n))
    extra = pd.DataFrame([{"scenario": "abc", "tuned": True, "seed": s, "method": "gd", "test_acc": 0.70,
                           "holdout_gus": -0.3, "scores": list(rng.normal(-0.3, 1, n))} for s in (1, 2, 3)])
    j = judge(trials, seeds=extra, scores=scores, meta=meta, attack="gaussian")
    ev = j.evidence["gd"]
    # the selected trial does not judge itself: its fresh seeds do
    assert ev.runs == 3 and ev.n == n and ev.scenarios == 1 and len(ev.per_run) == 3
    assert ev.lo < ev.effect < ev.hi and ev.effect == pytest.approx(-0.3, abs=0.1)
    assert "gd" not in j.ctx["selected_judges"]
    alone = judge(trials, scores=scores, meta=meta, attack="gaussian")  # no fresh seed: it is all there is
    assert alone.evidence["gd"].runs == 1 and alone.ctx["selected_judges"] == ["gd"]


def test_theta_initial_without_an_effect_gives_the_caution():
    from raysweep.attacks import ATTACKS

    rng = np.random.default_rng(3)
    j = _judge({"gd": rng.normal(0, 1, 250)}, rng.normal(0, 1, 250), rng.normal(0, 1, 250))
    said = ATTACKS.get("gaussian").caution(j.evidence["none"], j.ctx)
    assert said and "did not take" in said[0]
    j = _judge({"gd": rng.normal(0, 1, 250)}, rng.normal(-0.476, 1, 250), rng.normal(0, 1, 250))
    assert not ATTACKS.get("gaussian").caution(j.evidence["none"], j.ctx)


def test_the_objective_ranks_every_feasible_run_first_whatever_the_scale():
    from raysweep.objective import DIVERGED, objective

    floor = 0.68
    keeps = objective(5.0, 0.70, floor)         # |GUS| > 1 (possible at paper scale), accuracy kept
    wrecks = objective(0.0, 0.30, floor)        # |GUS| ~ 0 by wrecking accuracy
    slight = objective(0.0, 0.679, floor)
    assert keeps == 5.0 and keeps < slight < wrecks < DIVERGED
    assert objective(900.0, 0.70, floor) < slight  # even far beyond any GUS a model reaches
    assert objective(0.1, float("nan"), floor) == DIVERGED == objective(0.1, 0.7, floor, diverged=True)
    assert all(math.isfinite(v) for v in (keeps, wrecks, DIVERGED))


def _gc_tables(retrain, initial, methods, n_test):
    rows = [dict(method="none", trial_id="none", status="reference", test_acc=initial.mean(), is_best=False),
            dict(method="retrain", trial_id="retrain", status="reference", test_acc=retrain.mean(), is_best=False)]
    for m, c in methods.items():
        rows.append(dict(method=m, trial_id=f"{m}-1", status="finished", is_best=True, test_acc=c.mean(),
                         test_correct=encode_bits(c), hp_lr=1e-3, cap_share=1.0, diverged=False, seed=0))
    meta = {"scenario": "gc", "config": {"seed": 0}, "references": {"none": {"test_correct": encode_bits(initial)},
                                                                    "retrain": {"test_correct": encode_bits(retrain)}}}
    return pd.DataFrame(rows), meta


def test_gradient_canceling_pairs_the_test_images():
    """20 images that θ_retrain gets right and the method gets wrong, none the other way: McNemar's
    exact p = 2^-20, while the unpaired two-proportion test of 0.700 vs 0.680 sees nothing."""
    from raysweep.stats.exact import proportion_less

    n = 1000
    retrain = np.zeros(n, bool)
    retrain[:700] = True
    method = retrain.copy()
    method[:20] = False                               # 20 discordant pairs, all against the method
    initial = retrain.copy()
    initial[:50] = False                              # θ_initial: a 5-point drop (margin 0.025)
    trials, meta = _gc_tables(retrain, initial, {"gd": method}, n)
    j = judge(trials, attack="gradient_canceling", n_test=n, meta=meta)
    ev = j.evidence["gd"]
    assert ev.p_fails == pytest.approx(2.0 ** -20) and ev.effect == pytest.approx(0.02) and not ev.note
    assert proportion_less(0.68, n, 0.70, n) > 0.1  # the unpaired test would call this nothing
    assert j.table.set_index("method").loc["gd", "verdict"] == "fails: poison remains"
    assert j.evidence["none"].p_fails == pytest.approx(2.0 ** -50)  # the attack took: no caution
    # a method that differs from θ_retrain on 10 images each way is shown to remove the effect
    close = retrain.copy()
    close[690:700], close[700:710] = False, True
    trials, meta = _gc_tables(retrain, initial, {"gd": close}, n)
    v = verdict_table(trials, attack="gradient_canceling", n_test=n, meta=meta).set_index("method")
    assert v.loc["gd", "outcome"] == "removes" and v.loc["gd", "margin"] == pytest.approx(0.025)


def test_backdoor_pairs_the_triggered_reviews():
    n = 740
    retrain = np.zeros(n, bool)
    retrain[:222] = True                                   # ASR 0.30
    initial = np.zeros(n, bool)
    initial[:592] = True                                   # ASR 0.80
    kept = initial.copy()
    gone = retrain.copy()
    gone[300:303], gone[:2] = True, False                  # 3 extra successes, 2 fewer
    rows = [dict(method="none", trial_id="none", status="reference", asr=0.8, asr_n=n, asr_hits=encode_bits(initial),
                 test_acc=0.75, is_best=False),
            dict(method="retrain", trial_id="retrain", status="reference", asr=0.3, asr_n=n,
                 asr_hits=encode_bits(retrain), test_acc=0.75, is_best=False)]
    for m, c in (("gd", kept), ("ssd", gone)):
        rows.append(dict(method=m, trial_id=m, status="finished", is_best=True, asr=c.mean(), asr_n=n,
                         asr_hits=encode_bits(c), test_acc=0.75, diverged=False, seed=0))
    v = verdict_table(pd.DataFrame(rows), attack="backdoor").set_index("method")
    assert v.loc["gd", "verdict"] == "fails: poison remains" and v.loc["gd", "p_fails"] < 1e-50
    assert v.loc["ssd", "verdict"] == "removes the poison"


def _gm(hits: dict[str, list[int]]):
    from tests.test_report import table

    t = table([(m, 0.0, 0.70) for m in hits if m not in ("none", "retrain")])
    seeds = pd.DataFrame([{"scenario": f"s{i}", "tuned": False, "seed": 0, "method": m, "target_success": float(h)}
                          for m, hs in hits.items() for i, h in enumerate(hs)])
    return judge(t, attack="gradient_matching", seeds=seeds)


def test_gradient_matching_needs_enough_fresh_targets_and_says_so():
    from raysweep.attacks import ATTACKS

    gm = ATTACKS.get("gradient_matching")
    four = {"none": [1] * 4, "retrain": [0] * 4, "gd": [1] * 4, "ga": [0] * 4, "ssd": [0] * 4, "scrub": [0] * 4}
    j = _gm(four)
    v = j.table.set_index("method")
    assert v.loc["gd", "p_fails"] == pytest.approx(1 / 70) and v.loc["gd", "outcome"] != "fails"  # > 0.05/4
    said = " ".join(gm.caution(j.evidence["none"], j.ctx))
    assert "fewer than 5" in said and "--scenario-seeds 5" in said
    assert "at least **5 fresh targets**" in gm.verdict_text(j.ctx)
    five = {m: h + [h[0]] for m, h in four.items()}
    j = _gm(five)
    assert j.table.set_index("method").loc["gd", "verdict"] == "fails: poison remains"  # 1/252 <= 0.0125
    assert not gm.caution(j.evidence["none"], j.ctx)
    # θ_initial no better than θ_retrain on the same targets: the attack did not take
    j = _gm({"none": [1, 0, 0, 0, 0], "retrain": [1, 0, 0, 0, 0], "gd": [0] * 5})
    assert "did not take" in " ".join(gm.caution(j.evidence["none"], j.ctx))


def test_statistics_match_reference_values():
    from raysweep.stats.exact import binom_sf, fisher_min_n, noninferiority_rates, t_cdf, t_ppf, tost, wilson

    assert binom_sf(20, 20) == pytest.approx(2.0 ** -20)
    assert binom_sf(15, 20) == pytest.approx(sum(math.comb(20, k) for k in range(15, 21)) / 2 ** 20)
    assert t_cdf(2.0, 10) == pytest.approx(0.963305, abs=1e-6)   # Student t tables
    assert t_cdf(-1.0, 3) == pytest.approx(0.195501, abs=1e-6)
    assert t_ppf(0.975, 30) == pytest.approx(2.042272, abs=1e-5)
    assert tost(0.0, 1.0, 250, 0.25) == pytest.approx(t_cdf(-0.25 * math.sqrt(250), 249))
    assert tost(0.3, 1.0, 250, 0.25) > 0.5
    assert fisher_min_n(0.05 / 4) == 5 and fisher_min_n(0.05) == 3
    lo, hi = wilson(0, 10, 1.96)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    p = [noninferiority_rates(0, n, 0, n, 0.5) for n in (2, 5, 20)]
    assert p[0] > p[1] > p[2] and noninferiority_rates(5, 5, 0, 5, 0.5) == 1.0


def test_accuracy_vs_gus_marks_diverged_runs_at_the_edge(tmp_path):
    """A diverged run reports a penalty, not an effect: it must not stretch the axis (16 trials per
    method, as in the review), and each figure has one shared axis label."""
    from raysweep.report import figures

    for sentinel in (10.0, DIVERGED):  # sweeps from before the objective change reported 10
        trials, history, _ = constructed_sweep(diverged_effect=sentinel, methods=("gd", "ga", "neggrad_plus", "ssd"))
        figures.accuracy_vs_gus(trials, 0.672, tmp_path, "poison effect: |GUS| on the tuning half")
        fig = json.loads((tmp_path / "accuracy_vs_gus.json").read_text())
        assert fig["xlabel"] == "poison effect: |GUS| on the tuning half" and fig["ylabel"] == "validation accuracy"
        assert "diverged (off scale: at the right edge)" in fig["legend"]
        panels = {p["title"].split(" (")[0]: p for p in fig["panels"]}
        assert len(panels) == 4 and all(p["xlabel"] == "" for p in panels.values())
        for m, p in panels.items():
            assert p["xlim"][1] < 1.0, m                # real effects are ~0.3-0.6: no squashing
            assert p["edge_points"] == (1 if m in ("ga", "neggrad_plus") else 0), m
        if sentinel != DIVERGED:
            continue
        figures.optimisation_history(trials, tmp_path)
        hist = json.loads((tmp_path / "optimisation_history.json").read_text())
        assert all(p["ylim"][1] < 1.0 for p in hist["panels"]) and "diverged" in hist["legend"]
        figures.gus_vs_budget(history, trials, tmp_path)
        budget = json.loads((tmp_path / "gus_vs_budget.json").read_text())
        assert all(p["ylim"][1] < 1.0 for p in budget["panels"])


@pytest.mark.parametrize("attack", ["gradient_matching", "gradient_canceling", "backdoor"])
def test_the_report_asks_the_attack_for_its_tests_text_and_cautions(attack, tmp_path):
    """A report of each non-Gaussian attack from constructed tables alone: the attack's paragraph,
    columns and cautions come out, with nothing attack-specific in report/."""
    from raysweep.report.build import build_report

    n = 200
    r = np.zeros(n, bool)
    r[:140] = True
    rows = [dict(method="none", trial_id="none", status="reference", test_acc=0.55, val_acc=0.55, effect=0.15,
                 asr=0.8, asr_n=n, target_success=1.0, diverged=False),
            dict(method="retrain", trial_id="retrain", status="reference", test_acc=0.70, val_acc=0.70, effect=0.0,
                 asr=0.3, asr_n=n, target_success=0.0, diverged=False)]
    for i in range(3):
        rows.append(dict(method="gd", trial_id=f"gd{i}", order=i, status="finished", test_acc=0.69, val_acc=0.69,
                         effect=0.01 * i, objective=0.01 * i, asr=0.31, asr_n=n, target_success=0.0, hp_lr=1e-3,
                         cap_share=1.0, diverged=False, budget_spent=0.1, holdout_tpr_two=None, mia_tpr=0.0,
                         test_correct=encode_bits(r), asr_hits=encode_bits(r), seed=0))
    t = pd.DataFrame(rows)
    t["is_best"] = t.trial_id == "gd0"
    t["pareto"] = t.trial_id == "gd0"
    hist = pd.DataFrame([dict(method="gd", trial_id=f"gd{i}", report=1, step=1, budget_spent=0.1, val_acc=0.69,
                              tune_gus=None, effect=0.01 * i, objective=0.01 * i, final=True) for i in range(3)])
    scores = pd.DataFrame(columns=["sweep", "method", "trial_id", "poison", "part", "score", "control"])
    meta = {"name": "c", "scenario": "abc", "attack": attack, "n_test": n, "k": 300, "floor": 0.68,
            "config": {"budget": 0.1, "trials": 3, "seed": 0, "tolerance": 0.02}, "spaces": {},
            "versions": {"raysweep": "0", "torch": "0"}, "references": {"none": {}, "retrain": {}}}
    (tmp_path / "sweep.json").write_text(json.dumps(meta))
    for name, df in (("trials", t), ("history", hist), ("scores", scores)):
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    text = build_report(tmp_path, tmp_path / "report", log=lambda m: None).read_text()
    assert "**Fails**" in text and "**Removes**" in text and "| gd |" in text
    if attack == "gradient_matching":
        assert "at least **3 fresh targets**" in text and "fresh targets were run" in text  # m = 1: α = 0.05
        assert "inconclusive: tuned on its own target" in text
    else:
        assert "Caution" not in text  # θ_initial's effect against θ_retrain is significant: the attack took
        assert ("test images" if attack == "gradient_canceling" else "triggered test reviews") in text
