"""Targeted (gradient matching) poisoning on a small slice of the bundled data."""
import pandas as pd
import pytest
import torch
from torch import nn

from raysweep.attacks import BuildEnv, make_attack
from raysweep.attacks.pixels import to_pixels
from raysweep.config import TrainConfig
from raysweep.data import load_dataset
from raysweep.data.base import Dataset
from raysweep.errors import ConfigError
from raysweep.models import build_model
from raysweep.models.base import Classifier
from raysweep.prepare.train import train

EPS = 8 / 255


@pytest.fixture(scope="module")
def small():
    d = load_dataset("cifar10-mini", val_size=0)
    return Dataset("small", d.train.subset(torch.arange(300)), d.val, d.test.subset(torch.arange(40)),
                   d.classes, "image", d.mean, d.std)


def env():
    return BuildEnv(new_model=lambda: build_model("resnet9", 10, (3, 32, 32), 0, width=4),
                    train=lambda m, s: train(m, s, TrainConfig(epochs=1, batch_size=100), 0, progress=lambda x: None),
                    log=lambda m: None)


@pytest.fixture(scope="module")
def brewed(small):
    # without augmentation: each step's loss is then of the same objective (with it, of a fresh random flip and
    # shift, and 12 steps of that trace rise or fall with the thread count); the flow test below augments
    atk = make_attack("gradient_matching", {"eps": EPS, "count": 12, "restarts": 2, "steps": 12, "target": 3,
                                            "augment": False})
    return atk, atk.build(small, seed=5, env=env())


def test_perturbations_respect_the_bound_the_pixel_range_and_the_labels(small, brewed):
    atk, stored = brewed
    ps = atk.apply(small, stored)
    adv = int(stored["adv_class"][0])
    assert int(small.test.y[3]) != adv
    changed = (ps.train.x != small.train.x).flatten(1).any(1)
    assert int(changed.sum()) == 12 and torch.equal(changed.nonzero().squeeze(1), ps.poison_idx)
    assert (small.train.y[ps.poison_idx] == adv).all() and torch.equal(ps.train.y, small.train.y)
    before = to_pixels(small.train.x[ps.poison_idx], small.mean, small.std)
    after = to_pixels(ps.train.x[ps.poison_idx], small.mean, small.std)
    assert (after - before).abs().max() <= EPS + 1e-5
    assert after.min() >= -1e-5 and after.max() <= 1 + 1e-5


def test_the_matching_loss_decreases(brewed):
    trace = brewed[1]["loss_trace"]
    assert trace[-3:].mean() < trace[:3].mean()


def test_the_attack_is_deterministic_for_a_seed(small, brewed):
    atk, stored = brewed
    again = atk.build(small, seed=5, env=env())
    assert torch.equal(again["delta"], stored["delta"]) and torch.equal(again["poison_idx"], stored["poison_idx"])


class Constant(Classifier):
    def __init__(self, cls: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.cls = cls

    def classify(self, e, x=None):
        out = torch.zeros(len(e), 10) + self.w
        out[:, self.cls] = 5.0
        return out


def test_target_success_is_right_on_constructed_models(small, brewed):
    atk, stored = brewed
    ps = atk.apply(small, stored)
    adv = ps.info["adv_class"]
    assert atk.evaluate(Constant(adv), small, ps)["target_success"] == 1.0
    other = atk.evaluate(Constant((adv + 1) % 10), small, ps)
    assert other["target_success"] == 0.0 and other["target_adv_prob"] < 0.01


@pytest.mark.parametrize("params,field", [({"eps": 0}, "attack.eps"), ({"eps": 2}, "attack.eps"),
                                          ({"steps": 0}, "attack.steps"), ({"fraction": 1.5}, "attack.fraction"),
                                          ({"budget": 3}, "attack.budget")])
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(ConfigError) as e:
        make_attack("gradient_matching", params)
    assert e.value.field == field


def test_target_and_adversarial_class_are_checked_against_the_data(small):
    y3 = int(small.test.y[3])
    with pytest.raises(ConfigError, match="attack.adv_class"):
        make_attack("gradient_matching", {"target": 3, "adv_class": y3}).check_data(small)
    with pytest.raises(ConfigError, match="attack.count"):
        make_attack("gradient_matching", {"count": 10**4}).check_data(small)


@pytest.fixture(scope="module")
def canceled(small):
    atk = make_attack("gradient_canceling", {"fraction": 0.05, "steps": 15, "lr": 0.01, "corrupt_steps": 40})
    return atk, atk.build(small, seed=2, env=env())


def test_canceling_poisons_are_appended_in_the_pixel_range_with_their_labels(small, canceled):
    atk, stored = canceled
    ps = atk.apply(small, stored)
    n = len(small.train)
    assert len(ps.train) == n + 15 and torch.equal(ps.poison_idx, torch.arange(n, n + 15))
    assert torch.equal(ps.train.x[:n], small.train.x) and torch.equal(ps.train.y[:n], small.train.y)
    assert torch.equal(ps.train.y[n:], small.train.y[stored["source_idx"]])
    pix = stored["poison_pixels"]
    assert pix.min() >= 0 and pix.max() <= 1
    assert len(ps.retain()) == n and torch.equal(ps.retain().x, small.train.x)


def test_the_canceling_objective_decreases_and_is_deterministic(small, canceled):
    atk, stored = canceled
    trace = stored["objective_trace"]
    assert trace[-1] < trace[0]
    again = atk.build(small, seed=2, env=env())
    assert torch.equal(again["poison_pixels"], stored["poison_pixels"])


def test_head_only_training_moves_only_the_head_and_keeps_batch_norm_statistics(small):
    m = build_model("resnet9", 10, (3, 32, 32), 0, width=4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    res = train(m, small.train, TrainConfig(epochs=1, batch_size=100), 0, progress=lambda x: None,
                only=m.layer_groups()[-1])
    head = {f"fc.{k}" for k in m.fc.state_dict()}
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == head and res.sample_grads == len(small.train)
    assert all(p.requires_grad for p in m.parameters())  # the frozen part is trainable again afterwards


def test_the_victim_field_is_validated_and_only_a_head_victim_changes_the_hash():
    from raysweep.config import load_scenario

    tiny = load_scenario("tiny")
    assert "victim" not in tiny.content()  # scenarios made before the field keep their hash
    assert load_scenario("tiny", ["victim=scratch"]).hash() == tiny.hash()
    assert load_scenario("tiny", ["victim=head"]).hash() != tiny.hash()
    with pytest.raises(ConfigError, match="victim"):
        load_scenario("tiny", ["victim=frozen"])


@pytest.mark.parametrize("attack,params,victim", [("gradient_matching", {"count": 20, "steps": 5, "restarts": 1},
                                                   "scratch"),
                                                  ("gradient_canceling", {"fraction": 0.02, "steps": 5,
                                                                          "corrupt_steps": 20}, "head")])
def test_vision_attacks_flow_through_prepare_sweep_export_and_report(ray_local, attack, params, victim, tmp_path):
    import pandas as pd

    from raysweep.artifacts import LocalStore
    from raysweep.config import load_scenario
    from raysweep.prepare.scenario import Scenario, prepare
    from raysweep.report.build import build_report
    from raysweep.results.tables import export
    from raysweep.sweep.search import SweepConfig, run_sweep

    cfg = load_scenario("tiny", [f"attack={attack}", f"attack_params={params}", f"victim={victim}"])
    manifest, _ = prepare(cfg, str(tmp_path), "cpu", log=lambda m: None)
    if attack == "gradient_matching":
        assert manifest["metrics"]["initial"]["target_success"] in (0.0, 1.0)
    scen = Scenario.load(LocalStore(tmp_path), cfg)
    if victim == "head":  # both references fine-tuned only the head of one clean base model
        body = [k for k in scen.weights["initial"] if not k.startswith("fc.")]
        assert all(torch.equal(scen.weights["initial"][k], scen.weights["retrain"][k]) for k in body)
        assert not torch.equal(scen.weights["initial"]["fc.weight"], scen.weights["retrain"]["fc.weight"])
        c = manifest["compute"]
        assert c["initial_sample_grads"] == c["base_sample_grads"] + 3 * len(scen.poisoned.train)
    sweep, complete = run_sweep(scen, SweepConfig(methods=["gd"], trials=2, budget=0.1, checkpoint_every=0.5,
                                                  name="v", storage_path=str(tmp_path / "sweeps")), str(tmp_path))
    assert complete
    export(sweep)
    trials = pd.read_parquet(sweep / "trials.parquet")
    runs = trials[trials.method == "gd"]
    assert runs.effect.notna().all() and (runs.effect >= 0).all()
    if attack == "gradient_matching":
        assert runs[runs.status == "finished"].target_success.notna().all()
    md = build_report(sweep, log=lambda m: None)
    verdict = pd.read_csv(md.parent / "verdict.csv").set_index("method")
    if attack == "gradient_matching":  # no fresh target: the poison test cannot judge, whatever the accuracy
        assert verdict.loc["gd", "outcome"] == "inconclusive" and verdict.loc["gd", "n"] == 0
        assert "tuned on its own target" in verdict.loc["gd", "verdict"] or \
            verdict.loc["gd", "verdict"] == "fails: accuracy below retrain (poison effect inconclusive)"
    else:
        assert verdict.loc["gd", "verdict"].startswith(("removes", "fails", "signal destroyed", "inconclusive"))
        assert 0 <= verdict.loc["gd", "p"] <= 1
    assert (md.parent / "gus_vs_budget.png").stat().st_size > 5000


def test_a_target_attack_without_fresh_targets_is_inconclusive_and_says_why():
    """The figures the verdict is made from, constructed: no fresh target, accuracy kept or not."""
    from raysweep.attacks import ATTACKS
    from raysweep.verdict.judge import verdict_text

    cls = ATTACKS.get("gradient_matching")
    ev = cls.verdict_evidence(pd.DataFrame(), {"retrain": pd.DataFrame(), "none": pd.DataFrame()}, 0.5, {})
    assert ev.n == 0 and ev.effect is None
    assert verdict_text(cls, ev, "inconclusive", None, "kept", both=False).startswith(
        "inconclusive: tuned on its own target")
    assert verdict_text(cls, ev, "inconclusive", None, "below", both=False) == \
        "fails: accuracy below retrain (poison effect inconclusive)"
