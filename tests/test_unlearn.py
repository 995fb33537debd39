"""The eight unlearners on the tiny scenario: budget caps, invariants, divergence, determinism."""
import math

import pytest
import torch

from raysweep.artifacts import LocalStore
from raysweep.cli import main
from raysweep.metrics import per_sample_losses
from raysweep.prepare.scenario import Scenario
from raysweep.runs import unlearn_scenario
from raysweep.unlearn import METHODS, get_method, run_unlearning
from raysweep.unlearn.layers import split_groups

PAPER = {"gd", "ngd", "ga", "euk", "cfk", "scrub", "neggrad_plus", "ssd"}  # the paper's eight
ALL = METHODS.names()  # every registered method, found by the registry (a new one is tested here too)


@pytest.fixture(scope="module")
def scen(prepared_tiny, tiny_cfg):
    root, _ = prepared_tiny
    return Scenario.load(LocalStore(root), tiny_cfg)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_registry_finds_the_papers_eight_methods_without_an_import_list():
    assert PAPER <= set(METHODS.names())


@pytest.mark.parametrize("method", ALL)
def test_each_method_stays_within_its_cap(scen, method):
    marks = []
    # tiny: 3 epochs x 2000 samples; 0.5 of that is ~23 batches of 128
    res = unlearn_scenario(scen, method, 0.5, seed=0, on_checkpoint=lambda m, info: marks.append(info) and False,
                           checkpoint_every=0.1)
    cap = 0.5 * scen.train_compute
    assert res.spent <= cap + 1e-6 and res.cap == pytest.approx(cap)
    if get_method(method).iterative:
        assert res.spent >= 0.9 * cap
        assert len(marks) >= 9  # a checkpoint every 10 % of the cap
    assert not res.diverged
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert res.budget_spent == pytest.approx(res.spent / scen.train_compute)


@pytest.mark.parametrize("method", ALL)
def test_budget_zero_returns_the_model_unchanged(scen, method):
    before = state(scen.new_model("initial"))
    res = unlearn_scenario(scen, method, 0.0)
    after = res.model.state_dict()
    assert res.spent == 0 and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("method", ["euk", "cfk"])
def test_layers_outside_the_last_k_stay_bit_identical(scen, method):
    k = 2
    init = scen.new_model("initial")
    frozen, last = split_groups(init, k)
    names = {id(p): n for n, p in init.named_parameters()} | {id(b): n for n, b in init.named_buffers()}
    frozen_names = {names[id(t)] for m in frozen for t in [*m.parameters(), *m.buffers()]}
    last_names = {names[id(t)] for m in last for t in m.parameters()}
    before = state(init)
    res = unlearn_scenario(scen, method, 0.2, {"k": k, "lr": 1e-2})
    after = res.model.state_dict()
    assert frozen_names and all(torch.equal(before[n], after[n]) for n in frozen_names)
    assert any(not torch.equal(before[n], after[n]) for n in last_names)


def test_gd_lowers_the_retain_loss_and_ga_raises_the_forget_loss(scen):
    ps = scen.poisoned
    init = scen.new_model("initial")
    r0 = per_sample_losses(init, ps.retain())[0].mean()
    f0 = per_sample_losses(init, ps.forget())[0].mean()
    gd = unlearn_scenario(scen, "gd", 0.3, {"lr": 0.005}).model
    ga = unlearn_scenario(scen, "ga", 0.1, {"lr": 1e-3}).model
    assert per_sample_losses(gd, ps.retain())[0].mean() < r0
    assert per_sample_losses(ga, ps.forget())[0].mean() > f0


def test_ssd_never_increases_any_parameter_magnitude(scen):
    init = state(scen.new_model("initial"))
    res = unlearn_scenario(scen, "ssd", 0.5, {"alpha": 1.0})
    changed = 0
    for name, p in res.model.named_parameters():
        assert (p.detach().abs() <= init[name].abs()).all()
        changed += int((p.detach() != init[name]).sum())
    assert changed > 0  # alpha = 1 selects some parameters


def test_ngd_with_zero_noise_equals_gd(scen):
    a = unlearn_scenario(scen, "gd", 0.2, {"lr": 1e-2}, seed=3).model.state_dict()
    b = unlearn_scenario(scen, "ngd", 0.2, {"lr": 1e-2, "sigma2": 0.0}, seed=3).model.state_dict()
    c = unlearn_scenario(scen, "ngd", 0.2, {"lr": 1e-2, "sigma2": 1e-4}, seed=3).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_a_divergent_ga_run_is_flagged_not_raised(scen):
    res = unlearn_scenario(scen, "ga", 0.3, {"lr": 1e8, "momentum": 0.0})
    assert res.diverged
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    m = scen.evaluate(res.model)
    assert math.isfinite(m["test_acc"]) and math.isfinite(m["gus"])


@pytest.mark.parametrize("method", ["gd", "ngd", "scrub", "euk"])
def test_the_same_seed_gives_the_same_parameters(scen, method):
    a = unlearn_scenario(scen, method, 0.2, seed=5).model.state_dict()
    b = unlearn_scenario(scen, method, 0.2, seed=5).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_callback_can_stop_early(scen):
    res = unlearn_scenario(scen, "gd", 0.5, on_checkpoint=lambda m, info: info["cap_used"] >= 0.3,
                           checkpoint_every=0.1)
    assert res.stopped_early and 0.3 * res.cap <= res.spent < 0.5 * res.cap


def test_run_unlearning_rejects_a_bad_budget(scen):
    from raysweep.errors import ConfigError

    ps = scen.poisoned
    with pytest.raises(ConfigError, match="budget"):
        run_unlearning(get_method("gd"), scen.new_model("initial"), ps.forget(), ps.retain(), ps.train, 1.5, 100)


@pytest.mark.parametrize("argv,field", [
    (["--method", "sgd"], "method"),
    (["--method", "gd", "--hp", "learning_rate=1"], "gd.learning_rate"),
    (["--method", "gd", "--hp", "bn=maybe"], "gd.bn"),
    (["--method", "gd", "--budget", "0"], "budget"),
    (["--method", "gd", "--budget", "1.5"], "budget"),
])
def test_cli_unlearn_bad_input_exit_2(argv, field, prepared_tiny, capsys):
    root, _ = prepared_tiny
    code = main(["unlearn", "--scenario", "tiny", "--store", str(root), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err
    if field in ("method", "gd.learning_rate"):
        assert "neggrad_plus" in err or "momentum" in err  # lists the valid values


def test_cli_unlearn_json(prepared_tiny, capsys):
    import json

    root, _ = prepared_tiny
    assert main(["unlearn", "--scenario", "tiny", "--store", str(root), "--method", "cfk", "--budget", "0.05",
                 "--json", "--device", "cpu"]) == 0
    row = json.loads(capsys.readouterr().out)
    for key in ("test_acc", "gus", "z", "tpr_two", "mia_tpr", "budget_spent", "wall_s", "diverged"):
        assert key in row
    assert 0.045 <= row["budget_spent"] <= 0.05


def test_the_scratch_control_and_eu_k_cosine_follow_the_recipes_schedule_over_the_budget():
    """Warm-up to the peak over `warmup` of the budget, then cosine decay to ~0 at the cap; constant
    methods keep the rate; `--methods all` leaves the control out (it is no unlearner)."""
    from types import SimpleNamespace

    from raysweep.cli.sweep import methods_of
    from raysweep.unlearn.base import Budget, cosine_scale

    def at(share, warmup=0.1):
        b = Budget(1000.0)
        b.spent = share * 1000.0
        return cosine_scale(SimpleNamespace(budget=b), warmup)

    assert at(0.0) < 0.01 and at(0.1) == pytest.approx(1.0, abs=1e-4) and at(0.55) == pytest.approx(0.5, abs=1e-3)
    assert at(0.999) < 1e-4 and at(0.05) == pytest.approx(0.5, abs=1e-3)
    euk = METHODS.get("euk")()
    hp = euk.hyper({"schedule": "cosine", "warmup": 0.0})
    b = Budget(10.0)
    b.spent = 5.0
    assert euk.lr_scale(SimpleNamespace(budget=b, hp=hp)) == pytest.approx(0.5, abs=1e-3)
    assert euk.lr_scale(SimpleNamespace(budget=b, hp=euk.hyper({}))) == 1.0  # the paper's constant rate
    assert "scratch" not in methods_of("all") and methods_of("scratch") == ["scratch"]
    assert set(methods_of("all")) == set(PAPER)


def test_ssd_trials_share_their_importance_passes_bit_for_bit_and_only_for_the_same_model_and_split(monkeypatch):
    from raysweep.data.base import Split
    from raysweep.models import build_model
    from raysweep.unlearn import ssd

    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(300, 3, 32, 32, generator=g), torch.randint(10, (300,), generator=g))
    model = build_model("resnet9", 10, (3, 32, 32), 0, width=4).eval()
    perm = torch.randperm(300, generator=g)
    calls = []
    real = ssd.squared_batch_grads
    monkeypatch.setattr(ssd, "squared_batch_grads", lambda *a: calls.append(1) or real(*a))

    def fresh(n):
        with monkeypatch.context() as m:
            m.setattr(ssd, "SSD_CACHE_MB", 0)  # nothing fits: a pass of its own
            return ssd.importances(model, split, perm[:n], 32)

    monkeypatch.setattr(ssd.PrefixSums, "kept", {})
    for n, computed in ((150, 5), (290, 6), (100, 1), (150, 1)):  # batches of 32: 150 = 4 full + a tail
        calls.clear()
        got = ssd.importances(model, split, perm[:n], 32)
        assert len(calls) == computed, n  # only the batches past the longest kept prefix below n
        want = fresh(n)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), n
    with torch.no_grad():
        next(model.parameters())[0] += 1.0  # another model: nothing kept applies
    calls.clear()
    got = ssd.importances(model, split, perm[:150], 32)
    assert len(calls) == 5 and all(torch.equal(a, b) for a, b in zip(got, fresh(150)))
    calls.clear()
    ssd.importances(model, split, torch.randperm(300, generator=g)[:150], 32)  # another permutation: afresh
    assert len(calls) == 5
