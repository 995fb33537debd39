"""Verdict logic on constructed tables, and a full report from a small real sweep."""
import json
import math

import matplotlib.image
import pandas as pd
import pytest

from raysweep.verdict.judge import holm_reject, verdict_table


def _z_to_p(z):
    return math.erfc(abs(z) / math.sqrt(2))


def table(rows):
    """rows: (method, holdout_z, test_acc) for tuned methods (250 held-out poisons); references added."""
    base = [dict(method="none", status="reference", holdout_gus=-0.4, holdout_z=-0.4 * math.sqrt(250),
                 holdout_p=_z_to_p(-0.4 * math.sqrt(250)), holdout_tpr_two=0.02, test_acc=0.72, mia_tpr=0.002,
                 budget_spent=0.0, is_best=False),
            dict(method="retrain", status="reference", holdout_gus=0.1 / math.sqrt(250), holdout_z=0.1,
                 holdout_p=_z_to_p(0.1), holdout_tpr_two=0.01, test_acc=0.70, mia_tpr=0.004, budget_spent=None,
                 is_best=False)]
    for method, z, acc in rows:
        base.append(dict(method=method, status="finished", holdout_gus=z / math.sqrt(250), holdout_z=z,
                         holdout_p=_z_to_p(z), holdout_tpr_two=0.01, test_acc=acc, mia_tpr=0.01, budget_spent=0.1,
                         is_best=True, hp_lr=1e-3, cap_share=1.0, diverged=False))
        base.append(dict(method=method, status="finished", holdout_gus=0.0, holdout_z=0.0, holdout_p=1.0,
                         holdout_tpr_two=0.0, test_acc=0.1, mia_tpr=0.0, budget_spent=0.1, is_best=False,
                         hp_lr=1.0, cap_share=1.0, diverged=False))  # a non-best trial must not be judged
    return pd.DataFrame(base)


def test_z_zero_with_retrain_accuracy_removes():
    v = verdict_table(table([("gd", 0.0, 0.70)]), attack="gaussian").set_index("method")
    assert v.loc["gd", "verdict"] == "removes the poison"
    assert v.loc["gd", "outcome"] == "removes" and v.loc["gd", "accuracy_kept"]
    assert v.loc["gd", "margin"] == pytest.approx(0.2)  # δ 0.5 × |θ_initial's GUS| 0.4


def test_z_five_fails_on_the_poison():
    v = verdict_table(table([("gd", 5.0, 0.71)]), attack="gaussian").set_index("method")
    assert v.loc["gd", "verdict"] == "fails: poison remains"


def test_accuracy_collapse_fails_on_utility():
    v = verdict_table(table([("ga", 0.2, 0.30)]), attack="gaussian").set_index("method")
    assert v.loc["ga", "verdict"] == "fails: accuracy below retrain (poison effect removed)"
    both = verdict_table(table([("ga", -4.0, 0.30)]), attack="gaussian").set_index("method")
    assert both.loc["ga", "verdict"] == "fails: poison remains and accuracy below retrain"


def test_tolerance_is_relative_to_retrain_test_accuracy():
    v = verdict_table(table([("a", 0.0, 0.681), ("b", 0.0, 0.679)]), attack="gaussian",
                      tolerance=0.02).set_index("method")
    assert v.loc["a", "accuracy_kept"] and not v.loc["b", "accuracy_kept"]


def test_the_multiple_testing_correction_is_applied():
    # p = 0.02 alone would be significant at 0.05; with 8 methods Holm's first step needs p <= 0.05/8
    z = 2.326  # two-sided p ~ 0.02
    rows = [("m0", z, 0.70)] + [(f"m{i}", 0.0, 0.70) for i in range(1, 8)]
    v = verdict_table(table(rows), attack="gaussian", alpha=0.05).set_index("method")
    assert v.loc["m0", "p_fails"] < 0.05
    assert v.loc["m0", "outcome"] == "inconclusive"  # neither shown to remain nor shown gone
    assert v.loc["m0", "holm_fails"] == pytest.approx(0.05 / 8)
    assert v.loc["m0", "n_needed"] > 250 and "held-out poisons would decide" in v.loc["m0", "verdict"]
    single = verdict_table(table([("m0", z, 0.70)]), attack="gaussian", alpha=0.05).set_index("method")
    assert single.loc["m0", "outcome"] == "fails"  # with one method there is nothing to correct for


def test_holm_steps_down():
    p = {"a": 0.001, "b": 0.02, "c": 0.04, "d": 0.5}
    assert holm_reject(p, 0.05) == {"a": True, "b": False, "c": False, "d": False}  # 0.02 > 0.05/3
    assert holm_reject({"a": 0.001, "b": 0.02}, 0.05) == {"a": True, "b": True}  # 0.02 <= 0.05/1


def test_a_method_without_finished_trials_is_not_judged():
    t = table([("gd", 0.0, 0.70)])
    t = pd.concat([t, pd.DataFrame([dict(method="ssd", status="errored", is_best=False)])], ignore_index=True)
    v = verdict_table(t, attack="gaussian").set_index("method")
    assert v.loc["ssd", "verdict"].startswith("not judged")


@pytest.fixture(scope="module")
def small_sweep(ray_local, prepared_tiny, tmp_path_factory):
    """One small real sweep (tiny scenario, gd and cfk, 3 trials each) for the report tests."""
    from .conftest import run_tiny_sweep

    root, tmp = prepared_tiny[0], tmp_path_factory.mktemp("report")
    sweep = run_tiny_sweep(prepared_tiny, tmp, ["gd", "cfk"], 3, 0.1, 0.25, "rep")
    return sweep, root, tmp


def test_report_builds_from_a_small_sweep(small_sweep, tmp_path):
    from raysweep.report.build import build_report
    from raysweep.results.tables import export

    sweep, _, _ = small_sweep
    exported = tmp_path / "copied"
    export(sweep, "parquet", exported)  # the report must build from the exported folder alone
    md = build_report(exported, tmp_path / "report", seeds=0, log=lambda m: None)
    out = md.parent
    text = md.read_text()
    assert "Verdict" in text and "| gd |" in text and "| retrain |" in text
    assert "**fails**" in text and "**removes**" in text and "**inconclusive**" in text.lower()
    assert "detection floor |GUS| ≥" in text and "equivalence margin" in text and "one unlearning run" in text
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    for name in ("score_histograms", "gus_vs_budget", "accuracy_vs_gus", "mia_vs_gus", "optimisation_history",
                 "param_importances"):
        png = out / f"{name}.png"
        assert f"({name}.png)" in text
        pixels = matplotlib.image.imread(png)  # a real PNG, and not a blank canvas
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels[..., :3].std() > 0.02
        fig = json.loads((out / f"{name}.json").read_text())  # what the figure draws
        panels = fig["panels"]
        assert panels, name
        for panel in panels:
            drawn = panel["line_points"] + panel["points"] + panel["bars"]
            assert drawn > 0 or panel["texts"] > 0, (name, panel)
        if name != "param_importances":  # 3 trials may leave too few for fANOVA: a panel then says so
            assert sum(p["line_points"] + p["points"] + p["bars"] for p in panels) > 0, name
        if len(panels) > 1:  # one shared axis label per figure, none per panel
            assert fig["xlabel"] and all(p["xlabel"] == "" for p in panels), name
    panels = {p["title"].split("\n")[0]: p for p in json.loads((out / "score_histograms.json").read_text())["panels"]}
    assert "poisons vs θ_initial" in panels and "poisons vs gd (best)" in panels
    assert panels["poisons vs θ_initial"]["bars"] == 30 and panels["poisons vs θ_initial"]["lines"] >= 1
    budget = json.loads((out / "gus_vs_budget.json").read_text())["panels"]
    assert {p["title"].split("\n")[0].split()[0] for p in budget} >= {"gd", "cfk"}
    assert all(p["lines"] >= 3 for p in budget)  # trials' curves plus the θ_initial and θ_retrain lines
    v = pd.read_csv(out / "verdict.csv")
    assert set(v.method) == {"none", "retrain", "gd", "cfk"}
    tuned = v[v.status == "tuned"]
    assert set(tuned.outcome) <= {"fails", "signal destroyed", "removes", "inconclusive"} and (tuned.runs == 1).all()
    assert (tuned.n == 32).all()  # the tiny scenario's 64 poisons: 32 held out


def test_report_pools_fresh_unlearning_and_scenario_seeds(small_sweep, tmp_path):
    from raysweep.config import load_scenario
    from raysweep.report.build import build_report

    sweep, root, _ = small_sweep
    md = build_report(sweep, tmp_path / "r", seeds=1, scenario_seeds=1, log=lambda m: None)
    seeds = pd.read_csv(md.parent / "seeds.csv")
    fresh = load_scenario("tiny", ["seed=1"]).hash()
    assert fresh in {p.name for p in (root / "scenarios").iterdir()}  # prepared once, cached in the store
    assert set(seeds.method) == {"none", "retrain", "gd", "cfk"} and set(seeds.scenario_seed) == {0, 1}
    # the sweep's scenario: one fresh unlearning seed; the fresh scenario: the sweep's seed and the fresh one
    gd = seeds[seeds.method == "gd"]
    assert sorted(gd[gd.scenario_seed == 0].seed) == [1] and sorted(gd[gd.scenario_seed == 1].seed) == [0, 1]
    assert seeds.holdout_z.notna().all()
    v = pd.read_csv(md.parent / "verdict.csv").set_index("method")
    # the fresh runs judge, not the selected trial itself (one seed on the sweep's scenario, two on the fresh one)
    assert v.loc["gd", "runs"] == 3 and v.loc["gd", "scenarios"] == 2 and v.loc["gd", "n"] == 64
    text = md.read_text()
    assert "Spread over seeds" in text and "per-run SD" in text


def test_exact_tests_match_hand_computed_values():
    from raysweep.stats.exact import fisher_greater, proportion_less

    # 5/5 hits vs 0/5: p = 1 / C(10, 5) = 1/252
    assert fisher_greater(5, 5, 0, 5) == pytest.approx(1 / 252)
    assert fisher_greater(0, 5, 5, 5) == pytest.approx(1.0)
    assert fisher_greater(2, 4, 2, 4) > 0.5
    assert proportion_less(0.5, 1000, 0.7, 1000) < 1e-10
    assert proportion_less(0.7, 1000, 0.7, 1000) == pytest.approx(0.5)
    # far tail (z = -18.74): Mills' ratio phi(z)/|z| = 1.17e-78, not a rounded 0
    assert proportion_less(0.291, 740, 0.777, 740) == pytest.approx(1.17e-78, rel=0.02)


def test_gradient_matching_verdict_counts_target_hits_over_fresh_scenarios():
    t = table([("gd", 0.0, 0.70), ("ssd", 0.0, 0.70)])
    seeds = pd.DataFrame([{"seed": s, "method": m, "target_success": hit}   # one row per fresh scenario
                          for s in range(1, 7) for m, hit in (("none", 1.0), ("retrain", 0.0), ("gd", 1.0),
                                                               ("ssd", 1.0 if s == 1 else 0.0))])
    v = verdict_table(t, attack="gradient_matching", seeds=seeds).set_index("method")
    assert v.loc["gd", "verdict"] == "fails: poison remains"  # 6/6 hits vs 0/6: Fisher p = 1/924
    assert v.loc["gd", "p_fails"] == pytest.approx(1 / 924) and v.loc["gd", "n"] == 6
    assert v.loc["ssd", "outcome"] == "inconclusive"  # 1/6 vs 0/6 is no evidence either way
    assert v.loc["ssd", "verdict"].startswith("inconclusive:") and "fresh targets would decide" in v.loc["ssd",
                                                                                                       "verdict"]
    alone = verdict_table(t, attack="gradient_matching").set_index("method")
    assert alone.loc["gd", "verdict"].startswith("inconclusive: tuned on its own target")


def test_gradient_canceling_verdict_tests_accuracy_against_retrain():
    t = table([("gd", 0.0, 0.70), ("ga", 0.0, 0.55)])
    t.loc[t.method == "none", "test_acc"] = 0.60  # the attack took: 10 points below θ_retrain
    v = verdict_table(t, attack="gradient_canceling", n_test=1000).set_index("method")
    # no per-image vectors: the unpaired fallback; equal accuracy on 1,000 unpaired images cannot be shown
    # within 2 points (SE of the difference ~2 points), so accuracy stays undecided
    assert v.loc["gd", "outcome"] == "removes" and v.loc["gd", "accuracy"] == "undecided"
    assert v.loc["gd", "verdict"] == ("inconclusive: poison effect removed, accuracy not shown within 0.02 of "
                                      "θ_retrain's")
    assert verdict_table(t, attack="gradient_canceling", n_test=1000, tolerance=0.06).set_index("method").loc[
        "gd", "verdict"] == "removes the poison"
    assert v.loc["ga", "verdict"] == "fails: poison remains and accuracy below retrain"


def test_backdoor_verdict_tests_attack_success_against_retrain():
    t = table([("gd", 0.0, 0.70), ("ssd", 0.0, 0.70)])
    asr = {"none": 0.80, "retrain": 0.30, "gd": 0.78, "ssd": 0.31}
    t["asr"], t["asr_n"] = t.method.map(asr), 740.0
    v = verdict_table(t, attack="backdoor").set_index("method")
    assert v.loc["gd", "verdict"] == "fails: poison remains" and v.loc["gd", "p_fails"] < 1e-50
    assert v.loc["ssd", "verdict"] == "removes the poison" and v.loc["ssd", "p_fails"] > 0.3
    assert v.loc["none", "asr"] == 0.80 and v.loc["none", "n"] == 740  # the triggered reviews the test counts


@pytest.mark.parametrize("attack,none,retrain,weak", [
    ("gradient_canceling", {"test_acc": 0.680}, {"test_acc": 0.704}, True),    # p = 0.12: no detectable drop
    ("gradient_canceling", {"test_acc": 0.600}, {"test_acc": 0.704}, False),   # p ~ 1e-6
    ("backdoor", {"asr": 0.33, "asr_n": 740}, {"asr": 0.30, "asr_n": 740}, True),
    ("backdoor", {"asr": 0.80, "asr_n": 740}, {"asr": 0.30, "asr_n": 740}, False),
])
def test_the_report_cautions_when_theta_initial_shows_no_poison_effect(attack, none, retrain, weak):
    from raysweep.attacks import ATTACKS
    from raysweep.verdict.judge import judge

    t = table([("gd", 0.0, 0.70)])
    for ref, vals in (("none", none), ("retrain", retrain)):
        for k, val in vals.items():
            t.loc[t.method == ref, k] = val
    j = judge(t, attack=attack, n_test=1000)
    got = ATTACKS.get(attack).caution(j.evidence["none"], j.ctx)
    assert bool(got) == weak and (not got or "did not take" in got[0])


def test_the_html_report_renders_the_markdown_its_text_uses():
    import pandas as pd

    from raysweep.report.render import to_html

    page = to_html([("p", "**fails**: the effect remains; run `raysweep report SWEEP --seeds N` for *more*; 2 * 3 < 7"),
                    ("table", pd.DataFrame({"verdict": ["**removes**"], "cmd": ["`a*b`"]}))], "t")
    assert "<strong>fails</strong>" in page and "<code>raysweep report SWEEP --seeds N</code>" in page
    assert "<em>more</em>" in page and "2 * 3 &lt; 7" in page
    assert "<td><strong>removes</strong></td>" in page and "<td><code>a*b</code></td>" in page
    assert "**" not in page and "`" not in page
