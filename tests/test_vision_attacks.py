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


def test_a_head_trains_on_its_cached_inputs_as_it_would_through_the_frozen_model(small, monkeypatch):
    import raysweep.prepare.train as trainer

    cfg = TrainConfig(epochs=2, batch_size=64)
    nets = [build_model("resnet9", 10, (3, 32, 32), 0, width=4) for _ in range(2)]
    runs = [train(nets[0], small.train, cfg, 0, progress=lambda x: None, only=nets[0].fc)]
    monkeypatch.setattr(trainer, "cached_head_inputs", lambda model, data: None)  # through the frozen part
    runs.append(train(nets[1], small.train, cfg, 0, progress=lambda x: None, only=nets[1].fc))
    for k, v in nets[0].state_dict().items():
        assert torch.allclose(v, nets[1].state_dict()[k], atol=1e-5), k
    assert runs[0].sample_grads == runs[1].sample_grads == 2 * len(small.train)
    assert runs[0].final_loss == pytest.approx(runs[1].final_loss, abs=1e-5)


class Doubled(Classifier):
    """A model whose last layer group's output is not the logits: its head inputs cannot stand in for it."""

    def __init__(self):
        super().__init__()
        self.body, self.fc = nn.Flatten(), nn.Linear(3 * 32 * 32, 10)

    def classify(self, e, x=None):
        return 2 * self.fc(self.body(e))

    def layer_groups(self):
        return [self.body, self.fc]


def test_head_inputs_are_cached_only_where_the_heads_output_is_the_logits(small):
    from raysweep.attacks.heads import cached_head_inputs

    m = build_model("resnet9", 10, (3, 32, 32), 0, width=4)
    feats = cached_head_inputs(m, small.train, batch=128)
    assert feats.shape == (len(small.train), m.fc.in_features)
    assert torch.allclose(m.fc(feats[:5]), m(small.train.x[:5]), atol=1e-5)
    assert cached_head_inputs(Doubled(), small.train) is None


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


# ---- the head-fine-tuning victim: one shared base model, gradient matching on its head (issue 32) ----------

HEAD = ["victim=head", "base_seed=0", "train_size=500", "val_size=100"]  # tiny, on a 500-row slice


@pytest.fixture(scope="module")
def head_store(tmp_path_factory):
    """Gradient matching against the head victim on two seeds of one store: (root, spread rows, log lines)."""
    from raysweep.prepare.spread import prepare_seeds

    root = tmp_path_factory.mktemp("head-store")
    cfg = load_tiny(["attack=gradient_matching", "attack_params={count: 10, steps: 3, restarts: 1, augment: false}"])
    logs = []
    rows = prepare_seeds(cfg, 2, str(root), "cpu", log=logs.append)
    return root, rows, logs


def load_tiny(extra):
    from raysweep.config import load_scenario

    return load_scenario("tiny", HEAD + extra)


def manifest_of(root, scenario_hash):
    from raysweep.artifacts import read_manifest

    return read_manifest(root / "scenarios" / scenario_hash)


def test_gradient_matching_on_the_head_victim_crafts_on_the_base_and_trains_no_surrogate(small):
    base = build_model("resnet9", 10, (3, 32, 32), 0, width=4)
    before = {k: v.clone() for k, v in base.state_dict().items()}

    def no_training(model, split):
        raise AssertionError("a surrogate was trained")

    said = []
    e = BuildEnv(new_model=lambda: build_model("resnet9", 10, (3, 32, 32), 1, width=4), train=no_training,
                 log=said.append, base=lambda: base)
    atk = make_attack("gradient_matching", {"eps": EPS, "count": 6, "restarts": 1, "steps": 3, "target": 3})
    stored = atk.build(small, seed=5, env=e)
    assert any("head gradient of the base model" in m for m in said)
    assert stored["delta"].abs().max() <= EPS + 1e-6 and len(stored["loss_trace"]) == 3
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())


def test_the_base_model_is_trained_once_for_two_seeds_and_recorded_in_each_manifest(head_store):
    root, rows, logs = head_store
    trained = [m for m in logs if "training the clean base model" in m]
    found = [m for m in logs if "is in the store: no base to train" in m]
    assert len(trained) == 1 and len(found) == 1
    hashes = list(dict.fromkeys(rows.hash))
    first, second = (manifest_of(root, h) for h in hashes)
    assert first["base"]["built_now"] and not second["base"]["built_now"]
    assert first["base"]["key"] == second["base"]["key"] and len(list((root / "bases").iterdir())) == 1
    assert "train_base_s" in first["wall_s"] and "train_base_s" not in second["wall_s"]
    for m in (first, second):  # the budget's reference still counts the base's training
        c = m["compute"]
        assert c["initial_sample_grads"] == c["base_sample_grads"] + 3 * m["n_train"]
        assert c["base_sample_grads"] == 3 * 500


def test_both_references_of_each_seed_fine_tune_only_the_shared_base_models_head(head_store):
    from raysweep.artifacts import load_tensors, read_manifest
    from raysweep.prepare.scenario import Scenario

    root, rows, _ = head_store
    folder = next((root / "bases").iterdir())
    base = load_tensors(folder, "base.safetensors", read_manifest(folder))
    for h in dict.fromkeys(rows.hash):
        w = Scenario.load(str(root), h).weights
        body = [k for k in base if not k.startswith("fc.")]
        assert all(torch.equal(w[which][k], base[k]) for which in ("initial", "retrain") for k in body)
        assert not torch.equal(w["initial"]["fc.weight"], base["fc.weight"])


def test_the_head_victims_target_effect_is_computed_and_judged_per_seed_and_pooled(head_store):
    from raysweep.prepare.spread import describe, takes

    _, rows, _ = head_store
    assert rows.target_success.isin([0.0, 1.0]).all() and rows.target_adv_prob.between(0, 1).all()
    assert rows.p.between(0, 1).all()
    assert takes(rows, "gradient_matching").dtype == bool and len(takes(rows, "gradient_matching")) == 2
    text = describe(rows, "gradient_matching")
    assert "pooled over the 2 seed(s) (fresh targets" in text and "one-sided p = " in text


def test_gradient_canceling_on_the_head_victim_uses_the_base_another_attack_built(head_store):
    from raysweep.prepare.scenario import prepare

    root, _, _ = head_store
    cfg = load_tiny(["attack=gradient_canceling", "attack_params={fraction: 0.02, steps: 3, corrupt_steps: 10}"])
    logs = []
    manifest, built = prepare(cfg, str(root), "cpu", log=logs.append)
    assert built and not manifest["base"]["built_now"]
    assert not any("training the clean base model" in m for m in logs)
    assert any("corrupting the base model's head" in m for m in logs)
    assert 0 <= manifest["metrics"]["initial"]["test_acc"] <= 1


def test_target_rule_correct_draws_only_targets_the_attackers_clean_model_gets_right(small):
    from raysweep.attacks.gradient_matching import right_answers
    from raysweep.config import ScenarioConfig

    cls = int(small.test.y[0])
    right = right_answers(Constant(cls), small.test)
    assert torch.equal(right, small.test.y == cls)  # a model that always says `cls` is right on those rows only
    atk = make_attack("gradient_matching", {"target_rule": "correct"})
    targets = {atk._setup(small, seed, right)[0] for seed in range(8)}
    assert targets and all(int(small.test.y[t]) == cls for t in targets)
    with pytest.raises(ConfigError) as e:
        atk._setup(small, 0, torch.zeros(len(small.test), dtype=torch.bool))
    assert e.value.field == "attack.target_rule"
    with pytest.raises(ConfigError) as e:
        make_attack("gradient_matching", {"target_rule": "best"})
    assert e.value.field == "attack.target_rule" and "correct" in str(e.value)
    # the rule as scenarios had it before it existed ("any") leaves their hash alone; "correct" is another scenario
    plain = ScenarioConfig(attack="gradient_matching", attack_params={}).check()
    def hashed(rule: str) -> str:
        return ScenarioConfig(attack="gradient_matching", attack_params={"target_rule": rule}).check().hash()

    assert hashed("any") == plain.hash() and hashed("correct") != plain.hash()
