"""Presets whose poison shows on every seed: `prepare --seeds N` and its spread (issue 11)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from raysweep.artifacts import LocalStore
from raysweep.cli import main
from raysweep.config import load_scenario
from raysweep.errors import ConfigError
from raysweep.prepare.spread import describe, prepare_seeds, reference_rows, spread, takes


def _manifest(seed: int, z_ini: float, z_ret: float, k_half: int = 250) -> dict:
    def m(z):
        g = z / (2 * k_half) ** 0.5
        return {"test_acc": 0.7, "z": z, "gus": g, "holdout_z": z / 2 ** 0.5, "holdout_gus": g, "holdout_k": k_half,
                "control_z": 0.1, "holdout_control_z": -0.2}
    return {"hash": f"h{seed}", "seed": seed, "config": {"attack": "gaussian"}, "n_test": 1000,
            "metrics": {"initial": m(z_ini), "retrain": m(z_ret)}, "wall_s": {"prepare_s": 1.0}}


def test_the_spread_and_the_takes_check_follow_the_attacks_own_rule():
    rows = pd.DataFrame(reference_rows(_manifest(0, -8.0, 0.3)) + reference_rows(_manifest(1, -3.5, -1.0)))
    ok = takes(rows, "gaussian")  # the Gaussian rule: held-out |z| > 3
    assert ok.loc[0] and not ok.loc[1]  # seed 1: held-out z = -3.5 / sqrt(2) = -2.47
    sp = spread(rows).set_index(["model", "figure"])
    assert sp.loc[("θ_initial", "z"), "mean"] == pytest.approx(-5.75)
    assert sp.loc[("θ_initial", "z"), "min"] == pytest.approx(-8.0) and sp.loc[("θ_initial", "z"), "seeds"] == 2
    assert "on 1 of 2 seed(s); not on seed(s) 1" in describe(rows, "gaussian")


def test_prepare_refuses_a_bad_seed_count_before_training(tmp_path, capsys):
    assert main(["prepare", "--scenario", "tiny", "--seeds", "0", "--store", str(tmp_path)]) == 2
    assert "seeds" in capsys.readouterr().err and not (tmp_path / "scenarios").exists()


@pytest.mark.slow
def test_the_tiny_poison_takes_on_every_seed(tmp_path):
    """On 3 seeds θ_initial's z is beyond -3 and θ_retrain's within ±3 (one thread, as in the pilot)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = prepare_seeds(load_scenario("tiny-poison"), 3, LocalStore(tmp_path), "cpu", log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    ini, ret = rows[rows.model == "θ_initial"], rows[rows.model == "θ_retrain"]
    assert sorted(ini.seed) == [0, 1, 2] and len(list((tmp_path / "scenarios").iterdir())) == 3
    assert (ini.z < -3).all(), ini[["seed", "z"]]
    assert (ret.z.abs() < 3).all() and (ret.control_z.abs() < 3).all(), ret[["seed", "z", "control_z"]]


def test_the_cpu_vision_presets_validate_and_share_one_base_model_over_seeds_and_attacks(capsys):
    gm, gc = load_scenario("gm-cpu"), load_scenario("gc-cpu")
    assert (gm.attack, gm.victim, gm.base_seed, gm.dataset) == ("gradient_matching", "head", 0, "cifar10-mini")
    assert (gc.attack, gc.victim, gc.base_seed) == ("gradient_canceling", "head", 0)
    assert gm.attack_params["eps"] == pytest.approx(16 / 255) and gm.attack_params["fraction"] == 0.02  # the pilot
    assert gm.attack_params["target_rule"] == "correct"
    again = load_scenario("gm-cpu", ["seed=3"])
    assert gm.base_hash() == gc.base_hash() == again.base_hash() and again.hash() != gm.hash()
    assert load_scenario("gm-cpu", ["base_seed=1"]).base_hash() != gm.base_hash()
    assert load_scenario("gm-cpu", ["train.epochs=5"]).base_hash() != gm.base_hash()
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "gm-cpu" in help_text and "gc-cpu" in help_text


def test_base_seed_is_refused_without_a_head_victim_and_left_out_of_the_hash_when_unset():
    head = load_scenario("tiny", ["victim=head"])
    assert "base_seed" not in head.content() and head.base_seed is None
    assert load_scenario("tiny", ["victim=head", "base_seed=null"]).hash() == head.hash()
    assert load_scenario("tiny", ["victim=head", "base_seed=0"]).hash() != head.hash()
    assert load_scenario("tiny", ["victim=head", "seed=1"]).base_hash() != head.base_hash()  # unset: the seed's
    for bad in (["base_seed=0"], ["victim=head", "base_seed=-1"], ["victim=head", "base_seed=1.5"]):
        with pytest.raises(ConfigError) as e:
            load_scenario("tiny", bad)
        assert e.value.field == "base_seed"


def test_a_set_base_seed_draws_the_training_rows_so_every_scenario_seed_trains_on_the_same_ones():
    from raysweep.prepare.scenario import scenario_data

    fixed = [scenario_data(load_scenario("tiny", ["victim=head", "base_seed=4", f"seed={s}"])) for s in (0, 1)]
    free = [scenario_data(load_scenario("tiny", ["victim=head", f"seed={s}"])) for s in (0, 1)]
    assert torch.equal(fixed[0].train.x, fixed[1].train.x) and not torch.equal(free[0].train.x, free[1].train.x)
    assert torch.equal(free[0].train.x, scenario_data(load_scenario("tiny", ["seed=0"])).train.x)
