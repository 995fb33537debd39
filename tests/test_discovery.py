"""Partial discovery and relearning: the discovered view of a scenario, the judgement of found and hidden
poisons from constructed scores, the relearning probe's "effect returns", and bad input refused in one
line before anything runs."""
import numpy as np
import pandas as pd
import pytest
import torch

from raysweep.cli import main
from raysweep.discovery import check_relearn, parse_fractions
from raysweep.discovery.table import part_verdicts, summary
from raysweep.errors import ConfigError
from raysweep.prepare.requests import discovered_rows

G = -0.3


def test_smaller_shares_find_subsets_of_larger_ones():
    small, large = discovered_rows(3, 1000, 0.1), discovered_rows(3, 1000, 0.5)
    assert len(small) == 100 and len(large) == 500 and set(small.tolist()) <= set(large.tolist())
    assert len(discovered_rows(3, 1000, 1.0)) == 1000
    assert not torch.equal(discovered_rows(4, 1000, 0.1), small)  # seeded per scenario


def test_the_discovered_view_requests_only_the_found_poisons(prepared_tiny, tiny_cfg):
    from raysweep.prepare.scenario import Scenario

    store, _ = prepared_tiny
    cfg = tiny_cfg
    scen = Scenario.load(str(store), cfg)
    view = scen.discovered(0.25)
    ps, full = view.poisoned, scen.poisoned
    found = set(full.poison_idx[discovered_rows(cfg.seed, full.k, 0.25)].tolist())
    assert len(ps.forget()) == len(found) == -(-full.k // 4)
    assert set(ps.requested_idx.tolist()) == found
    hidden = set(full.poison_idx.tolist()) - found
    assert hidden <= set(ps.retain_idx().tolist())  # the undiscovered poisons stay in the retain set
    assert set(view.tune_rows.tolist()) <= set(discovered_rows(cfg.seed, full.k, 0.25).tolist())
    assert view.weights is scen.weights and scen.discovered(1.0) is scen  # nothing retrained
    assert len(full.forget()) == full.k  # the scenario itself is unchanged
    assert int(scen.holdout_found(0.25).sum()) == len(set(scen.holdout_rows.tolist()) & set(
        discovered_rows(cfg.seed, full.k, 0.25).tolist()))


def _rows(n, rng, found_mu, hidden_mu, relearn_mu=None, methods=("gd", "ssd")):
    mask = [i % 2 == 0 for i in range(n)]
    out = []
    for m in methods:
        for seed in (1, 2):
            s = [float(rng.normal(found_mu if k else hidden_mu, 1)) for k in mask]
            r = {"method": m, "fraction": 0.5, "seed": seed, "holdout_found": mask, "scores": s,
                 "canary_scores": list(rng.normal(G, 1, n)), "test_acc": 0.7, "budget_spent": 0.1}
            if relearn_mu is not None:
                r.update(relearn_scores=[float(rng.normal(relearn_mu, 1)) for _ in range(n)],
                         relearn_canary_scores=list(rng.normal(G, 1, n)), relearn_test_acc=0.7)
            out.append(r)
    return out


def _refs(n, rng):
    trials = pd.DataFrame([dict(method="none", trial_id="none", status="reference", test_acc=0.7, is_best=False),
                           dict(method="retrain", trial_id="retrain", status="reference", test_acc=0.7,
                                is_best=False)])
    meta = {"scenario": "abc", "attack": "gaussian", "holdout_rows": list(range(n)), "config": {"seed": 0},
            "reference_scores": {"none": {"scores": list(rng.normal(G, 1, n)), "control": [0.0] * n,
                                          "canary": list(rng.normal(G, 1, n))},
                                 "retrain": {"scores": list(rng.normal(0, 1, n)), "control": [0.0] * n,
                                             "canary": list(rng.normal(G, 1, n))}}}
    return trials, meta


def test_hidden_poisons_keep_their_effect_while_the_found_ones_lose_it():
    rng = np.random.default_rng(0)
    n = 3000
    trials, meta = _refs(n, rng)
    rows = _rows(n, rng, found_mu=0.0, hidden_mu=G)
    found = part_verdicts(rows, trials, meta, 0.5, "found", "unlearned", 0.05, 0.02, 0.5).set_index("method")
    hidden = part_verdicts(rows, trials, meta, 0.5, "hidden", "unlearned", 0.05, 0.02, 0.5).set_index("method")
    assert (found.loc[["gd", "ssd"], "outcome"] == "removes").all()
    assert (hidden.loc[["gd", "ssd"], "outcome"] == "fails").all()
    assert (found.loc[["gd", "ssd"], "n"] == n // 2).all() and (found.loc[["gd", "ssd"], "runs"] == 2).all()


def test_the_probe_brings_an_effect_back_and_the_summary_says_so():
    rng = np.random.default_rng(1)
    n = 3000
    trials, meta = _refs(n, rng)
    rows = _rows(n, rng, found_mu=0.0, hidden_mu=0.0, relearn_mu=G)
    parts = [part_verdicts(rows, trials, meta, 0.5, p, ph, 0.05, 0.02, 0.5) for p in ("found", "hidden", "all")
             for ph in ("unlearned", "relearned")]
    s = summary(pd.concat(parts, ignore_index=True)).set_index("method")
    assert (s["all"] == "removes").all() and (s["after probe"] == "fails").all() and s["effect returns"].all()
    kept = _rows(n, rng, 0.0, 0.0, relearn_mu=0.0)
    parts = [part_verdicts(kept, trials, meta, 0.5, p, ph, 0.05, 0.02, 0.5) for p in ("all",)
             for ph in ("unlearned", "relearned")]
    assert not summary(pd.concat(parts, ignore_index=True))["effect returns"].any()


def test_bad_discovery_input_is_refused_in_one_line():
    assert parse_fractions("0.1,0.5,1") == [0.1, 0.5, 1.0]
    for bad in ("0,1", "0.5,0.2", "1.5", "a", "", "0.5,0.5"):
        with pytest.raises(ConfigError, match="fractions"):
            parse_fractions(bad)
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ConfigError, match="relearn"):
            check_relearn(bad)
    assert check_relearn(0) == 0.0


def test_the_cli_refuses_bad_discovery_options_before_anything_runs(tmp_path, capsys):
    assert main(["sweep", "--scenario", "tiny", "--methods", "gd", "--discovery", "0", "--store",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "discovery" in err[0] and not (tmp_path / "scenarios").exists()
    assert main(["discovery", str(tmp_path / "nope"), "--fractions", "2"]) == 2
    assert "fractions" in capsys.readouterr().err
    assert main(["discovery", str(tmp_path / "nope"), "--relearn", "3"]) == 2
    assert "relearn" in capsys.readouterr().err


@pytest.mark.slow
def test_discovery_runs_end_to_end_resumes_and_reports(ray_local, prepared_tiny, tmp_path_factory, capsys):
    """The verb on a real tiny sweep: every run on file, the tables, a second call runs nothing, and the
    report gains its section (what the figures say at tiny size is not asserted)."""
    from raysweep.report.build import build_report

    from .conftest import run_tiny_sweep

    sweep = run_tiny_sweep(prepared_tiny, tmp_path_factory.mktemp("disc"), ["gd"], 1, 0.1, 0.5, "disc")
    argv = ["discovery", str(sweep), "--fractions", "0.5,1", "--relearn", "0.5"]
    assert main(argv) == 0
    root = sweep / "discovery"
    assert len(list((root / "runs").glob("gd__*.json"))) == 2 and (root / "runs" / "retrain__probe__s1.json").is_file()
    runs = pd.read_csv(root / "discovery.csv")
    gd = runs[runs.method == "gd"].set_index("fraction")
    assert pd.notna(gd.loc[0.5, "holdout_found_gus"]) and pd.notna(gd.loc[0.5, "holdout_hidden_gus"])
    assert gd["relearn_holdout_gus"].notna().all() and gd["relearn_test_acc"].notna().all()
    s = pd.read_csv(root / "discovery_summary.csv")
    assert list(s.fraction) == [0.5, 1.0] and s["after probe"].notna().all()
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 to run" in capsys.readouterr().err  # resumable: everything was on file
    text = build_report(sweep, sweep / "report", log=lambda m: None).read_text()
    assert "## Partial discovery and relearning" in text and "θ_retrain probed the same way" in text
