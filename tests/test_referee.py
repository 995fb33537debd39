"""The referee could have said "removes": each of the four outcomes built from constructed scores, the
spread of the scores judged beside their mean, canaries as the positive control, accuracy as a
non-inferiority test over θ_retrain's spread, the selected trial out of its own verdict, and the power
line (constructed figures only: no training decides any assertion here)."""
import math

import numpy as np
import pandas as pd
import pytest

from raysweep.errors import ConfigError
from raysweep.report.build import power_line
from raysweep.stats.evidence import accuracy_evidence, encode_bits
from raysweep.stats.exact import chi2_cdf, chi2_sf
from raysweep.stats.power import gaussian_power, outcomes, simulate
from raysweep.stats.scores import score_tests
from raysweep.verdict.judge import judge

G = -0.3  # θ_initial's held-out GUS, and θ_retrain's canary GUS (both trained on them)


def sweep_with_canaries(models: dict[str, tuple[np.ndarray, np.ndarray]], n: int, nc: int, rng, runs: int = 1,
                        acc: dict | None = None):
    """(trials, scores, meta, seeds) of a Gaussian sweep: per model its held-out scores and canary scores
    (one fresh run each on the sweep's scenario, `runs` times with independent draws if runs > 1)."""
    initial, retrain_c = rng.normal(G, 1, n), rng.normal(G, 1, nc)
    rows = [dict(method="none", trial_id="none", status="reference", holdout_gus=G, test_acc=0.70, is_best=False),
            dict(method="retrain", trial_id="retrain", status="reference", holdout_gus=0.0, test_acc=0.70,
                 is_best=False)]
    seeds = []
    for m, (s, c) in models.items():
        rows.append(dict(method=m, trial_id=f"{m}-1", status="finished", is_best=True, holdout_gus=float(s.mean()),
                         test_acc=(acc or {}).get(m, 0.70), hp_lr=1e-3, cap_share=1.0, diverged=False, seed=0))
        for r in range(runs):
            seeds.append(dict(scenario="abc", tuned=True, seed=r + 1, method=m, test_acc=(acc or {}).get(m, 0.70),
                              holdout_gus=float(s.mean()), scores=list(s), canary_scores=list(c)))
    meta = {"scenario": "abc", "holdout_rows": list(range(n)), "config": {"seed": 0},
            "reference_scores": {"none": {"scores": list(initial), "control": [0.0] * n,
                                          "canary": list(rng.normal(G, 1, nc))},
                                 "retrain": {"scores": list(rng.normal(0, 1, n)), "control": [0.0] * n,
                                             "canary": list(retrain_c)}}}
    return pd.DataFrame(rows), pd.DataFrame(columns=["method", "trial_id", "part", "poison", "score"]), meta, \
        pd.DataFrame(seeds), retrain_c


def test_each_of_the_four_outcomes_from_constructed_scores():
    rng = np.random.default_rng(0)
    n = nc = 1500
    retrain_c = None

    def canaries(kept):
        return retrain_c * kept + rng.normal(0, 0.3, nc)  # paired with θ_retrain's, as a real model's would be

    trials, scores, meta, _, retrain_c = sweep_with_canaries({}, n, nc, rng)
    models = {"keeps": (rng.normal(G, 1, n), canaries(1.0)),             # nothing unlearned
              "clean": (rng.normal(0, 1, n), canaries(1.0)),             # as good as θ_retrain
              "scrambles": (rng.normal(0, 1, n), canaries(0.0))}         # poisons and canaries both gone
    seeds = []
    for m, (s, c) in models.items():
        trials = pd.concat([trials, pd.DataFrame([dict(method=m, trial_id=f"{m}-1", status="finished", is_best=True,
                                                       holdout_gus=float(s.mean()), test_acc=0.70, hp_lr=1e-3,
                                                       cap_share=1.0, diverged=False, seed=0)])], ignore_index=True)
        seeds.append(dict(scenario="abc", tuned=True, seed=1, method=m, test_acc=0.70, holdout_gus=float(s.mean()),
                          scores=list(s), canary_scores=list(c)))
    j = judge(trials, attack="gaussian", scores=scores, meta=meta, seeds=pd.DataFrame(seeds))
    v = j.table.set_index("method")
    assert v.loc["keeps", "outcome"] == "fails" and v.loc["keeps", "verdict"].startswith("fails: poison remains")
    assert v.loc["clean", "outcome"] == "removes"
    assert v.loc["scrambles", "outcome"] == "signal destroyed"
    assert v.loc["scrambles", "verdict"].startswith("signal destroyed, not removed")
    assert v.loc["clean", "canary_kept"] == pytest.approx(1.0, abs=0.1)
    assert v.loc["scrambles", "canary_kept"] == pytest.approx(0.0, abs=0.1)
    # the same scores with too few poisons: neither test can decide
    small = {"a": (rng.normal(0.5 * G, 1, 40), canaries(1.0)[:40])}
    t2, s2, m2, seeds2, _ = sweep_with_canaries(small, 40, 40, rng)
    assert judge(t2, attack="gaussian", scores=s2, meta=m2, seeds=seeds2).table.set_index("method").loc[
        "a", "outcome"] == "inconclusive"


def test_scores_split_into_two_signs_cannot_pass_as_removed():
    n = 1500
    x = np.where(np.arange(n) % 2 == 0, 2.0, -2.0)  # mean exactly 0, variance 4
    t = score_tests(x, margin=0.15, delta=0.5)
    assert t.mean == pytest.approx(0.0) and t.p_tost < 0.05 / 8  # the mean alone would say "removes"
    assert t.p_spread < 1e-100 and t.p_fails < 1e-100 and t.p_removes > 0.5
    got, _ = outcomes({"m": t.p_fails}, {"m": t.p_removes}, 0.05)
    assert got == {"m": "fails"}
    normal = score_tests(np.random.default_rng(1).normal(0, 1, n), margin=0.15, delta=0.5)
    assert normal.p_spread > 0.01 and normal.p_narrow < 1e-6


def test_chi_square_tails_match_reference_values():
    assert chi2_sf(3.841459, 1) == pytest.approx(0.05, rel=1e-5)
    assert chi2_sf(124.342, 100) == pytest.approx(0.05, rel=1e-4)
    assert chi2_cdf(2.0, 2) == pytest.approx(1 - math.exp(-1), rel=1e-12)
    assert chi2_cdf(77.9295, 100) == pytest.approx(0.05, rel=1e-4)
    assert chi2_sf(5000, 1000) < 1e-300 or chi2_sf(5000, 1000) == 0.0


def test_canary_tests_pair_each_canary_with_theta_retrains():
    rng = np.random.default_rng(2)
    ref = rng.normal(G, 1, 800)
    kept = score_tests(rng.normal(0, 1, 800), 0.15, 0.5, None, ref + rng.normal(0, 0.2, 800), ref)
    lost = score_tests(rng.normal(0, 1, 800), 0.15, 0.5, None, rng.normal(0, 1, 800), ref)
    assert kept.p_kept < 1e-6 and kept.p_destroyed > 0.5 and kept.canary_kept == pytest.approx(1, abs=0.1)
    assert lost.p_destroyed < 1e-3 and lost.p_kept > 0.5
    assert score_tests(rng.normal(0, 1, 800), 0.15, 0.5).p_kept is None  # no canaries: not checked


def _bits(rng, p, n=2000):
    return rng.random(n) < p


def test_accuracy_is_a_non_inferiority_test_over_retrains_spread():
    rng = np.random.default_rng(3)
    base = _bits(rng, 0.7)

    def flip(b, share):  # a model that agrees with `b` except on a random share of the images
        f = rng.random(len(b)) < share
        return np.where(f, rng.random(len(b)) < 0.7, b)

    ret = pd.DataFrame([dict(scenario="s0", test_acc=base.mean(), test_correct=encode_bits(base))])
    same = flip(base, 0.1)
    a = accuracy_evidence(pd.DataFrame([dict(scenario="s0", test_acc=same.mean(), test_correct=encode_bits(same))]),
                          ret, 0.02, None)
    assert a["p_kept"] < 0.01 and a["p_lost"] > 0.5 and "seed-to-seed spread not measured" in a["note"]
    worse = np.where(rng.random(2000) < 0.07, False, same)  # ~5 points below
    a = accuracy_evidence(pd.DataFrame([dict(scenario="s0", test_acc=worse.mean(), test_correct=encode_bits(worse))]),
                          ret, 0.02, None)
    assert a["p_lost"] < 0.01 and a["p_kept"] > 0.5
    # θ_retrain's spread over scenarios counts: differences of ±3 points over three scenarios leave
    # a mean difference of 0 undecided although every scenario's paired SE is small
    rows_m, rows_r = [], []
    for s, shift in zip(("s0", "s1", "s2"), (0.03, -0.03, 0.0)):
        r = _bits(rng, 0.7)
        m = np.where(rng.random(2000) < abs(shift) * 1.5, shift > 0, r)
        rows_r.append(dict(scenario=s, test_acc=r.mean(), test_correct=encode_bits(r)))
        rows_m.append(dict(scenario=s, test_acc=m.mean(), test_correct=encode_bits(m)))
    a = accuracy_evidence(pd.DataFrame(rows_m), pd.DataFrame(rows_r), 0.02, None)
    assert a["se"] > 0.01 and a["p_kept"] > 0.05 and a["note"] == ""
    # neither per-image results nor a test size: a point comparison, said so
    b = accuracy_evidence(pd.DataFrame([dict(scenario="s0", test_acc=0.69)]),
                          pd.DataFrame([dict(scenario="s0", test_acc=0.70)]), 0.02, None)
    assert b["p_kept"] is None and "point comparison" in b["note"]


def test_a_model_distributed_like_retrain_keeps_accuracy_and_one_far_below_loses_it():
    rng = np.random.default_rng(4)
    n = nc = 1500
    models = {"like": (rng.normal(0, 1, n), rng.normal(G, 1, nc)), "low": (rng.normal(0, 1, n), rng.normal(G, 1, nc))}
    trials, scores, meta, seeds, _ = sweep_with_canaries(models, n, nc, rng)
    base = _bits(rng, 0.7)
    meta["references"] = {}
    trials.loc[trials.method == "retrain", "test_correct"] = encode_bits(base)
    keep = base.copy()  # 50 images won and 50 lost: the same accuracy, 100 discordant pairs
    keep[np.flatnonzero(base)[:50]], keep[np.flatnonzero(~base)[:50]] = False, True
    low = np.where(rng.random(len(base)) < 0.2, False, base)
    seeds["test_correct"] = seeds.method.map({"like": encode_bits(keep), "low": encode_bits(low)})
    seeds["test_acc"] = seeds.method.map({"like": keep.mean(), "low": low.mean()})
    trials.loc[trials.method == "retrain", "test_acc"] = base.mean()
    v = judge(trials, attack="gaussian", scores=scores, meta=meta, seeds=seeds).table.set_index("method")
    assert v.loc["like", "accuracy"] == "kept" and v.loc["low", "accuracy"] == "below"
    assert v.loc["low", "verdict"].startswith("fails: accuracy below retrain")


def test_power_is_met_at_the_pooled_default_and_not_at_one_scenario():
    # the default scenario's figures: 500 held-out poisons and 500 canaries per scenario, θ_initial's GUS −0.28
    pooled = gaussian_power(1500, -0.28, 8, 0.05, 0.5, 1500, -0.28, reps=300)
    alone = gaussian_power(500, -0.28, 8, 0.05, 0.5, 500, -0.28, reps=300)
    assert pooled[0] >= 0.9 and pooled[1] >= 0.95
    assert alone[0] < 0.8  # one scenario: a perfect unlearner is often not shown to remove the poison
    lost = simulate(1500, -0.28, 8, 0.05, 0.5, 0.0, 1500, -0.28, canary_kept=0.0, reps=100)
    assert lost["signal destroyed"] > 0.9 and lost["removes"] == 0


def test_the_power_line_begins_with_power_and_gives_removes_first():
    ctx = {"m": 8, "alpha": 0.05, "power": {"removes": 0.97, "fails": 0.99, "n": 1500, "unit": "held-out poisons",
                                            "canaries": 1500, "margin": 0.14}}
    line = power_line(ctx)
    assert line.startswith("power: 0.97 that a method as good as θ_retrain is judged \"removes\", 0.99 that")
    assert "Below" not in line
    weak = power_line({**ctx, "power": {**ctx["power"], "removes": 0.5}})
    assert "Below the 0.9 / 0.95" in weak
    demo = power_line(ctx, demo=True)
    assert "This is the demo" in demo and demo.startswith("power:")
    assert power_line({"m": 8, "alpha": 0.05, "power": None}).startswith("power: not computed")


def test_canaries_stay_in_the_retain_set_and_are_never_requested():
    import torch

    from raysweep.attacks import make_attack
    from raysweep.data.base import Dataset, Split

    x = torch.zeros(400, 3, 4, 4)
    data = Dataset("toy", Split(x, torch.arange(400) % 10), Split(x[:10], torch.zeros(10, dtype=torch.long)),
                   Split(x[:10], torch.zeros(10, dtype=torch.long)), [str(i) for i in range(10)], kind="image")
    atk = make_attack("gaussian", {"k": 60})
    assert atk.params["canaries"] == "half"
    stored = atk.build(data, seed=1)
    ps = atk.apply(data, stored)
    cidx, pidx = ps.canary_idx, ps.poison_idx
    assert len(cidx) == 30 and not set(cidx.tolist()) & set(pidx.tolist())
    assert set(cidx.tolist()) <= set(ps.retain_idx().tolist())
    assert torch.equal(ps.train.x[cidx], ps.canary_noise)  # the canaries carry their noise in the training set
    # the poisons do not depend on the canaries: the same seed without them draws the same poisons
    none = make_attack("gaussian", {"k": 60, "canaries": 0})
    plain = none.apply(data, none.build(data, seed=1))
    assert torch.equal(plain.poison_idx, pidx) and torch.equal(plain.noise, ps.noise) and plain.canary_idx is None
    with pytest.raises(ConfigError, match="attack.canaries"):
        make_attack("gaussian", {"k": 60, "canaries": 400}).check_data(data)
    with pytest.raises(ConfigError, match="attack.canaries"):
        make_attack("gaussian", {"k": 60, "canaries": -1})


@pytest.mark.slow
def test_heavy_parameter_noise_is_judged_signal_destroyed_not_removed(tmp_path):
    """A real 'method' that only scrambles: θ_initial with heavy Gaussian noise on every parameter. Its
    poisons' GUS falls toward 0, and so does its canaries': the verdict must not credit it with
    removing the poison. tiny-poison with 300 canaries, seed 0, one thread."""
    import torch

    from raysweep.artifacts import LocalStore
    from raysweep.config import load_scenario
    from raysweep.prepare.scenario import Scenario, prepare
    from raysweep.runs import evaluated

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_scenario("tiny-poison", ["attack_params.canaries=300"])
        store = LocalStore(tmp_path)
        manifest, _ = prepare(cfg, store, "cpu", log=lambda m: None)
        scen = Scenario.load(store, cfg)
        model = scen.new_model("initial")
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 10 * p.std().clamp_min(1e-3))
        run = evaluated(scen, model)
    finally:
        torch.set_num_threads(threads)
    ref = manifest["metrics"]
    assert ref["retrain"]["canary_z"] < -3  # the premise: θ_retrain carries the canaries' effect
    rows = [dict(method=r, trial_id=r, status="reference", is_best=False, test_acc=ref[w]["test_acc"],
                 test_correct=ref[w]["test_correct"]) for r, w in (("none", "initial"), ("retrain", "retrain"))]
    rows.append(dict(method="noise", trial_id="noise-1", status="finished", is_best=True, test_acc=run["test_acc"],
                     hp_lr=1.0, cap_share=1.0, diverged=False, seed=0))
    meta = {"scenario": scen.hash, "holdout_rows": scen.holdout_rows.tolist(), "config": {"seed": 0},
            "reference_scores": manifest["reference_scores"], "references": {}}
    seeds = pd.DataFrame([{**{k: v for k, v in run.items()}, "scenario": scen.hash, "tuned": True, "seed": 1,
                           "method": "noise"}])
    v = judge(pd.DataFrame(rows), attack="gaussian", meta=meta, seeds=seeds).table.set_index("method")
    assert v.loc["noise", "outcome"] == "signal destroyed", v.loc["noise", ["effect", "p_fails", "p_destroyed"]]
    assert v.loc["noise", "verdict"].startswith("signal destroyed, not removed")


def test_scenarios_made_before_canaries_keep_their_hash_and_load_without_them():
    import json
    from pathlib import Path

    from raysweep.attacks import ATTACKS
    from raysweep.config import load_scenario

    fixture = json.loads((Path(__file__).parent / "fixtures" / "sweep_v0_1_layout" / "sweep.json").read_text())
    old = load_scenario("tiny", ["attack_params.canaries=0"])
    assert old.hash() == fixture["scenario"]  # canaries 0 is the legacy value: left out of the hash
    assert load_scenario("tiny").hash() != old.hash()  # the default now builds canaries: another artifact
    g = ATTACKS.get("gaussian")
    assert g.stored_params({"k": 64}, {"poison_idx", "noise"}) == {"k": 64, "canaries": 0}
    assert g.stored_params({"k": 64}, {"poison_idx", "noise", "canary_idx", "canary_noise"}) == {"k": 64}


def test_paired_tests_count_retrains_spread_over_scenarios():
    from raysweep.stats.evidence import paired_binary

    rng = np.random.default_rng(5)

    def bits(p, n=3000):
        return rng.random(n) < p

    def runs(losses):
        mine, ret, ini = [], [], []
        for i, loss in enumerate(losses):
            r = bits(0.7)
            lose = lambda share, r=r: np.where(rng.random(len(r)) < share / 0.7, False, r)  # noqa: E731
            m = lose(loss) if loss >= 0 else np.where(rng.random(len(r)) < -loss / 0.3, True, r)
            mine.append(dict(scenario=f"s{i}", test_correct=encode_bits(m), test_acc=m.mean()))
            ret.append(dict(scenario=f"s{i}", test_correct=encode_bits(r), test_acc=r.mean()))
            ini.append(dict(scenario=f"s{i}", test_correct=encode_bits(lose(0.10)), test_acc=0.6))
        return pd.DataFrame(mine), {"retrain": pd.DataFrame(ret), "none": pd.DataFrame(ini)}

    steady, refs = runs([0.01, 0.01, 0.01])
    ev = paired_binary(steady, refs, "test_correct", "test_acc", -1, 0.5, None)
    assert ev.p_removes < 0.01  # each scenario's loss 1 point, margin 5: removed
    swinging, refs = runs([0.0, 0.08, -0.04])  # a mean loss of 1.3 points too, but θ_retrain's draws disagree
    ev = paired_binary(swinging, refs, "test_correct", "test_acc", -1, 0.5, None)
    assert ev.p_removes > 0.05 and "spread" in ev.note
