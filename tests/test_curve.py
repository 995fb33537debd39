"""The budget curve (raysweep curve): argument checks, the summary's smallest budget on a constructed
verdict table, and a real curve of a tiny sweep (gd, ga; budgets 0.02, 0.05; 2 seeds): its tables,
resumption, figure and report section."""
import json
import re

import pandas as pd
import pytest

from raysweep.cli import main
from raysweep.curve.table import summary_table


@pytest.mark.parametrize("argv, field", [
    (["--budgets", "0.05,0.02"], "budgets"),      # not ascending
    (["--budgets", "0.02,0.02"], "budgets"),      # twice
    (["--budgets", "0,0.1"], "budgets"),          # 0 is θ_initial, not a budget to run
    (["--budgets", "0.1,1.5"], "budgets"),        # more than retraining's compute
    (["--budgets", "0.1,lots"], "budgets"),
    (["--seeds", "0"], "seeds"),
    (["--trials", "0"], "trials"),
    (["--margin", "2"], "margin"),
])
def test_bad_arguments_exit_2_naming_the_field_before_anything_runs(tmp_path, capsys, argv, field):
    code = main(["curve", str(tmp_path / "no-such-sweep"), *argv])  # the arguments fail before the sweep is read
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"raysweep: error: {field}=")
    assert not (tmp_path / "no-such-sweep").exists()


def unchecked(budget: str) -> str:
    """The summary's text where no sanity row ran at budget 1.0."""
    return f"none shown up to {budget} (sanity rows not run at 1.0: not checked)"


def _verdict(rows):
    base = [dict(method="none", status="reference", budget=0.0, outcome=None, accuracy_kept=None, verdict="reference"),
            dict(method="retrain", status="reference", budget=1.0, outcome=None, accuracy_kept=None,
                 verdict="reference")]
    return pd.DataFrame(base + [dict(method=m, status="tuned", budget=b, outcome=o, accuracy_kept=k, verdict=v)
                                for m, b, o, k, v in rows])


def test_the_summary_gives_the_smallest_budget_that_removes_with_accuracy_kept(tmp_path):
    v = _verdict([
        ("a", 0.02, "fails", True, "fails: poison remains"),
        ("a", 0.05, "removes", False, "fails: accuracy below retrain (poison effect removed)"),  # accuracy lost
        ("a", 0.25, "removes", True, "removes the poison"),
        ("a", 0.1, "removes", True, "removes the poison"),     # out of order on purpose: the smallest is 0.1
        ("b", 0.02, "fails", True, "fails: poison remains"),
        ("b", 0.25, "inconclusive", True, "inconclusive: ~90 held-out poisons would decide (now 32)"),
        ("c", 0.02, "inconclusive", True, "inconclusive"),
        ("c", 0.05, "removes", True, "removes the poison"),
    ])
    tidy = pd.DataFrame([dict(method="retrain", budget=1.0, train_wall_s=100.0, unlearn_wall_s=None),
                         dict(method="a", budget=0.1, train_wall_s=None, unlearn_wall_s=8.0),
                         dict(method="a", budget=0.1, train_wall_s=None, unlearn_wall_s=12.0),
                         dict(method="c", budget=0.05, train_wall_s=None, unlearn_wall_s=4.0)])
    s = summary_table(v, tidy).set_index("method")
    assert s.loc["a", "smallest_budget"] == 0.1 and s.loc["a", "removes_at"] == "0.1"
    assert s.loc["a", "compute_vs_retrain"] == 0.1 and s.loc["a", "wall_vs_retrain"] == pytest.approx(0.10)
    assert s.loc["a", "verdict_at_largest"] == "removes the poison" and s.loc["a", "largest_budget"] == 0.25
    assert pd.isna(s.loc["b", "smallest_budget"]) and s.loc["b", "removes_at"] == unchecked("0.25")
    assert pd.isna(s.loc["b", "compute_vs_retrain"]) and s.loc["b", "verdict_at_largest"].startswith("inconclusive")
    assert s.loc["c", "removes_at"] == "0.05" and s.loc["c", "wall_vs_retrain"] == pytest.approx(0.04)
    assert set(s.index) == {"a", "b", "c"}  # references are not methods
    # the same from the CSV the report reads back (booleans as text, references' missing values as NaN)
    v.to_csv(tmp_path / "v.csv", index=False)
    again = summary_table(pd.read_csv(tmp_path / "v.csv")).set_index("method")
    assert list(again.removes_at) == ["0.1", unchecked("0.25"), "0.05"]


@pytest.fixture(scope="module")
def curve_run(ray_local, prepared_tiny, tmp_path_factory):
    """A one-trial sweep of gd and ga on the tiny scenario, and its curve at 0.02 and 0.05 with 2 seeds."""
    from .conftest import run_tiny_sweep

    sweep = run_tiny_sweep(prepared_tiny, tmp_path_factory.mktemp("curve"), ["gd", "ga"], 1, 0.05, 0.5, "cur")
    argv = ["curve", str(sweep), "--budgets", "0.02,0.05", "--seeds", "2", "--trials", "1"]
    return sweep, argv, main(argv)


def test_the_curve_writes_one_row_per_method_budget_and_seed_plus_the_references(curve_run):
    sweep, _, code = curve_run
    assert code == 0
    curve = sweep / "curve"
    t = pd.read_parquet(curve / "curve.parquet")
    assert len(pd.read_csv(curve / "curve.csv")) == len(t)
    every = t[t.status == "run"]
    runs = every[~every.control.astype(bool)]
    assert sorted(zip(runs.method, runs.budget, runs.seed)) == sorted(
        (m, b, s) for m in ("gd", "ga") for b in (0.02, 0.05) for s in (1, 2))  # fresh seeds: sweep seed 0 + 1, 2
    controls = every[every.control.astype(bool)]  # retraining from scratch within each budget (no 1.0: no euk_all)
    assert sorted(zip(controls.method, controls.budget, controls.seed)) == sorted(
        ("scratch", b, s) for b in (0.02, 0.05) for s in (1, 2))
    refs = t[t.status == "reference"].set_index("method")
    assert refs.loc["none", "budget"] == 0.0 and refs.loc["retrain", "budget"] == 1.0 and len(refs) == 2
    assert runs.budget_spent.between(0.9 * runs.budget, runs.budget + 1e-9).all()  # each run spent its budget
    assert runs.holdout_gus.notna().all() and runs.test_acc.notna().all() and (runs.unlearn_wall_s > 0).all()
    # seeds differ: two runs of one configuration at one budget are not the same run
    gd = runs[(runs.method == "gd") & (runs.budget == 0.05)]
    assert gd.holdout_gus.nunique() == 2
    v = pd.read_csv(curve / "curve_verdict.csv")
    tuned = v[(v.status == "tuned") & ~v.control]
    assert sorted(zip(tuned.method, tuned.budget)) == sorted((m, b) for m in ("gd", "ga") for b in (0.02, 0.05))
    assert (tuned.runs == 2).all() and (tuned.n == 32).all()  # 2 seeds pooled over the 32 held-out poisons
    assert set(tuned.outcome) <= {"fails", "signal destroyed", "removes", "inconclusive"}
    assert set(v[v.control].method) == {"scratch"}  # judged, in a family of its own
    s = pd.read_csv(curve / "curve_summary.csv").set_index("method")
    # 32 held-out poisons cannot show a removal (docs/verdict.md): none up to the largest budget run; with no
    # budget 1.0 the sanity rows did not decide whether the referee could say "removes"
    assert set(s.index) == {"gd", "ga", "scratch"} and s.loc["scratch", "removes_at"] == "none up to 0.05"
    assert (s.loc[["gd", "ga"], "removes_at"] == unchecked("0.05")).all()


def test_each_budget_is_tuned_by_its_own_search_and_the_sweep_stands_for_its_own_cap(curve_run):
    """Tuned mode: the row at 0.02 is the best of the search run at 0.02 (curve/searches/b0.02), given the
    share of the budget that search chose; at the sweep's own cap (0.05) the sweep's pick."""
    from raysweep.results.tables import best_rows, read_tables

    sweep, _, _ = curve_run
    _, at_02, _, _ = read_tables(sweep / "curve" / "searches" / "b0.02")
    assert read_tables(sweep / "curve" / "searches" / "b0.02")[0]["config"]["budget"] == 0.02
    assert not (sweep / "curve" / "searches" / "b0.05").exists()  # the sweep itself, at its cap 0.05
    _, own, _, _ = read_tables(sweep)
    for budget, table in ((0.02, at_02), (0.05, own)):
        best = best_rows(table)
        for m in ("gd", "ga"):
            cell = json.loads((sweep / "curve" / "runs" / f"{m}__b{budget:g}__s1.json").read_text())
            row = best.loc[m]
            assert cell["hp"] == {k[3:]: row[k] for k in row.index if k.startswith("hp_") and pd.notna(row[k])}
            assert cell["share"] == pytest.approx(row["cap_share"])
            assert cell["budget_spent"] <= budget * row["cap_share"] + 1e-9  # it ran within the share it was tuned at
    plan = json.loads((sweep / "curve" / "curve_plan.json").read_text())
    assert plan["mode"] == "tune" and plan["trials_per_budget"] == {"0.02": 1, "0.05": 1}


def test_a_second_call_reruns_nothing_and_a_lost_cell_is_run_again(curve_run, capsys):
    sweep, argv, _ = curve_run
    files = sorted((sweep / "curve" / "runs").glob("*.json"))
    assert len(files) == 12  # 2 methods and the scratch control x 2 budgets x 2 seeds
    before = {f.name: f.stat().st_mtime_ns for f in files}
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "12 already done (skipped), 0 to run" in err and not re.search(r"done \d+/12", err)  # no cell ran
    assert "running its search" not in err and "resuming its search" not in err  # nor any search
    assert {f.name: f.stat().st_mtime_ns for f in files} == before
    lost = files[3]
    lost.unlink()  # what a killed call leaves: that cell's file was never written
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "11 already done (skipped), 1 to run" in err and len(re.findall(r"done \d+/12", err)) == 1
    assert lost.is_file() and all(f.stat().st_mtime_ns == before[f.name] for f in files if f != lost)
    assert len(pd.read_parquet(sweep / "curve" / "curve.parquet")) == 12 + 2


def test_reuse_runs_the_sweeps_own_pick_at_every_budget_and_no_search(curve_run, tmp_path):
    import shutil

    from raysweep.results.tables import best_rows, read_tables

    sweep, _, _ = curve_run
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("curve"))
    assert main(["curve", str(copy), "--budgets", "0.02", "--seeds", "1", "--reuse", "--no-controls"]) == 0
    assert not (copy / "curve" / "searches").exists()
    best = best_rows(read_tables(copy)[1])
    for m in ("gd", "ga"):
        cell = json.loads((copy / "curve" / "runs" / f"{m}__b0.02__s1.json").read_text())
        row = best.loc[m]
        assert cell["hp"] == {k[3:]: row[k] for k in row.index if k.startswith("hp_") and pd.notna(row[k])}
        assert cell["share"] == 1.0 and not cell["control"]  # the whole budget, as before
    assert sorted(p.name for p in (copy / "curve" / "runs").glob("*.json")) == ["ga__b0.02__s1.json",
                                                                                "gd__b0.02__s1.json"]


def test_a_cut_search_resumed_under_other_options_names_the_field_and_what_a_curve_user_can_do(curve_run, tmp_path,
                                                                                                 capsys):
    import shutil

    sweep, _, _ = curve_run
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("runs"))
    cut = copy / "curve" / "searches" / "b0.02"
    for name in ("trials.parquet", "scores.parquet"):  # a search cut before its export: sweep.json alone
        (cut / name).unlink()
    capsys.readouterr()
    assert main(["curve", str(copy), "--budgets", "0.02", "--seeds", "1", "--trials", "2", "--no-controls"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raysweep: error: trials=2") and f"remove {cut}" in err and "--name" not in err
    assert "\n" not in err and not (copy / "curve" / "runs").exists()


@pytest.mark.parametrize("extra, field", [(["--methods", "gd,ssd"], "methods"),          # ssd was not swept
                                          (["--gpus-per-trial", "1"], "gpus_per_trial")])  # a CPU-only cluster
def test_what_the_sweep_or_the_cluster_cannot_do_exits_2_before_any_run(curve_run, capsys, extra, field):
    sweep, argv, _ = curve_run
    before = {f.name: f.stat().st_mtime_ns for f in (sweep / "curve" / "runs").glob("*.json")}
    capsys.readouterr()
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert f"raysweep: error: {field}=" in err and not re.search(r"done \d+/", err)
    assert {f.name: f.stat().st_mtime_ns for f in (sweep / "curve" / "runs").glob("*.json")} == before


def test_the_figure_shows_each_method_at_each_budget_on_a_log_axis(curve_run):
    sweep, _, _ = curve_run
    fig = json.loads((sweep / "curve" / "curve.json").read_text())
    effect, acc = fig["series"]
    for panel in (effect, acc):
        assert panel["xscale"] == "log"
        for m in ("gd", "ga"):
            assert panel["series"][m]["x"] == [0.02, 0.05] and None not in panel["series"][m]["y"]
        assert "θ_initial (budget 0: left edge)" in panel["series"]
    assert effect["title"].startswith("held-out poison effect: GUS") and acc["title"].startswith("test accuracy")
    assert {"gd", "ga", "θ_retrain (retraining's compute, 1.0)", "95 % CI"} <= set(fig["legend"])
    for p in fig["panels"]:  # the θ_retrain star, the θ_initial edge marker (and the bands) are drawn
        assert p["points"] >= 2 and p["edge_points"] == 1 and p["xlim"][1] > 1.0
    v = pd.read_csv(sweep / "curve" / "curve_verdict.csv").set_index(["method", "budget"])
    assert effect["series"]["gd"]["y"][1] == pytest.approx(v.loc[("gd", 0.05), "effect"])


def test_the_report_shows_the_curve_when_present(curve_run, tmp_path):
    from raysweep.report.build import build_report

    sweep, _, _ = curve_run
    md = build_report(sweep, tmp_path / "report", log=lambda m: None)
    text = md.read_text()
    assert "## Budget curve" in text and "(curve.png)" in text and "none shown up to 0.05" in text
    assert text.index("## Budget curve") < text.index("## Figures")
    grid = text[text.index("The outcome at each budget"):text.index("(curve.png)")]
    assert "| method | budget 0.02 | budget 0.05 |" in grid and "| gd |" in grid and "| ga |" in grid
    assert json.loads((md.parent / "curve.json").read_text())["series"][0]["series"]["ga"]["x"] == [0.02, 0.05]


def test_sanity_rows_that_cannot_be_called_removes_make_the_summary_say_it_cannot_decide(curve_run, tmp_path):
    """On tiny (32 held-out poisons) no run can be shown within the margin (docs/verdict.md): the sanity
    rows at budget 1.0 (retraining from scratch, EU-k with every layer) are judged, are not "removes",
    and the summary and report say that the verdict cannot decide at this size instead of "none up to 1"."""
    import shutil

    from raysweep.report.build import build_report

    sweep, _, _ = curve_run
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("curve"))
    assert main(["curve", str(copy), "--budgets", "1.0", "--seeds", "2", "--reuse", "--methods", "gd"]) == 0
    v = pd.read_csv(copy / "curve" / "curve_verdict.csv")
    controls = v[v.control].set_index("method")
    assert set(controls.index) == {"scratch", "euk_all"} and (controls.runs == 2).all() and (controls.n == 32).all()
    assert "removes" not in set(controls.outcome)
    s = pd.read_csv(copy / "curve" / "curve_summary.csv").set_index("method")
    assert s.loc["gd", "removes_at"].startswith("cannot decide at this size")  # not "none up to 1"
    assert s.loc["scratch", "removes_at"] == "none up to 1" and bool(s.loc["scratch", "control"])
    cells = {json.loads(f.read_text())["runs_method"] for f in (copy / "curve" / "runs").glob("euk_all__*.json")}
    assert cells == {"euk"}
    text = build_report(copy, tmp_path / "report", log=lambda m: None).read_text()
    assert "the verdict cannot decide whether a method removes the poison" in text


def test_the_sanity_rows_decide_from_their_scores_removes_when_like_retrain_cannot_decide_otherwise():
    """Constructed figures at the default's size (1,500 pooled held-out poisons and canaries): sanity rows
    distributed like θ_retrain are judged "removes" and the failing method reads "none up to 1"; sanity
    rows that still carry the effect make the same method read "cannot decide at this size"."""
    import numpy as np

    from raysweep.curve.table import budget_verdicts, sanity
    from raysweep.stats.evidence import encode_bits

    from .test_referee import G, sweep_with_canaries

    rng = np.random.default_rng(3)
    n = 1500
    trials, _, meta, _, retrain_c = sweep_with_canaries({}, n, n, rng)
    meta = {**meta, "attack": "gaussian", "n_test": 1000}

    def cells(control_mean: float, euk: tuple = (None, 0.70, 1.0)) -> list[dict]:
        out = []
        euk_mean, euk_acc, euk_kept = euk
        rows = (("gd", G, False, 0.70, 1.0), ("scratch", control_mean, True, 0.70, 1.0),
                ("euk_all", control_mean if euk_mean is None else euk_mean, True, euk_acc, euk_kept))
        for label, mean, control, acc, kept in rows:
            for seed in (1, 2):
                bits = rng.random(1000) < acc
                out.append(dict(method=label, budget=1.0, seed=seed, control=control, test_acc=float(bits.mean()),
                                test_correct=encode_bits(bits),
                                holdout_gus=mean, diverged=False, hp={"lr": 0.05},
                                scores=list(rng.normal(mean, 1, n)),
                                canary_scores=list(kept * retrain_c + rng.normal(0, 0.3, n))))
        return out

    v = budget_verdicts(cells(0.0), trials, meta)
    assert set(v[v.control].method) == {"scratch", "euk_all"} and (v[v.control].outcome == "removes").all()
    assert v.set_index("method").loc["gd", "outcome"] == "fails"
    assert sanity(v)["decides"] is True
    assert summary_table(v).set_index("method").loc["gd", "removes_at"] == "none up to 1"
    still = budget_verdicts(cells(G), trials, meta)
    assert sanity(still)["decides"] is False and "cannot decide" in sanity(still)["line"]
    assert summary_table(still).set_index("method").loc["gd", "removes_at"].startswith("cannot decide at this size")
    # an under-trained control (what EU-k at a constant rate was on the default scenario: accuracy 0.56, half
    # the canaries' effect) is not a stand-in for retraining: the check fails, and says why
    weak = budget_verdicts(cells(0.0, (0.0, 0.55, 0.5)), trials, meta)
    w = weak.set_index("method")
    assert w.loc["euk_all", "accuracy"] == "below" and w.loc["euk_all", "outcome"] != "removes"
    assert sanity(weak)["decides"] is False and "euk_all" in sanity(weak)["line"]
    assert "accuracy below θ_retrain's" in sanity(weak)["line"]


def test_a_swept_method_named_like_a_sanity_row_is_refused_while_the_controls_run():
    from raysweep.curve.controls import LABELS, check_labels
    from raysweep.errors import ConfigError

    check_labels(["gd", "euk", "ssd"])  # EU-k swept is a method; its sanity row is labelled euk_all
    for label in LABELS:
        with pytest.raises(ConfigError) as e:
            check_labels(["gd", label])
        assert e.value.field == "methods" and e.value.value == label and "--no-controls" in str(e.value)
