import pytest
import torch

from raysweep.attacks import make_attack
from raysweep.data import load_dataset
from raysweep.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return load_dataset("cifar10-mini", val_size=100, seed=0)


def test_gaussian_touches_exactly_k_samples_and_no_label(data):
    atk = make_attack("gaussian", {"k": 123, "eps": 0.5})
    ps = atk.apply(data, atk.build(data, seed=7))
    changed = (ps.train.x != data.train.x).flatten(1).any(1)
    assert len(ps.canary_idx) == 123 // 2  # the canaries (default: half of k) carry noise too
    assert int(changed.sum()) == 123 + 61
    assert torch.equal(changed.nonzero().squeeze(1), torch.cat([ps.poison_idx, ps.canary_idx]).sort().values)
    assert torch.equal(ps.train.y, data.train.y)
    torch.testing.assert_close(ps.train.x[ps.poison_idx] - ps.clean_x, ps.noise)
    assert abs(ps.noise.std().item() - 0.5) < 0.01
    assert len(ps.retain()) == len(data.train) - 123 and len(ps.forget()) == 123


def test_fraction_and_seed_determinism(data):
    atk = make_attack("gaussian", {"fraction": 0.02})
    a, b, c = atk.build(data, 1), atk.build(data, 1), atk.build(data, 2)
    assert a["poison_idx"].numel() == 200
    assert torch.equal(a["noise"], b["noise"]) and not torch.equal(a["poison_idx"], c["poison_idx"])


def test_pixel_space_noise_is_scaled_by_the_channel_std(data):
    atk = make_attack("gaussian", {"k": 10, "eps": 0.1, "space": "pixel"})
    ps = atk.apply(data, atk.build(data, 0))
    shift = ps.train.x[ps.poison_idx] - ps.clean_x
    torch.testing.assert_close(shift, ps.noise / data.std.view(1, 3, 1, 1))


@pytest.mark.parametrize("params,field", [
    ({"eps": 0}, "attack.eps"), ({"eps": -1}, "attack.eps"), ({"k": 0}, "attack.k"),
    ({"fraction": 1.5}, "attack.fraction"), ({"space": "latent"}, "attack.space"), ({"sigma": 1}, "attack.sigma"),
])
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(ConfigError) as e:
        make_attack("gaussian", params)
    assert e.value.field == field


def test_k_larger_than_n_is_rejected(data):
    with pytest.raises(ConfigError, match="attack.k"):
        make_attack("gaussian", {"k": 10**6}).build(data, 0)


def test_unknown_attack_lists_the_choices():
    with pytest.raises(ConfigError, match="gaussian"):
        make_attack("nope", {})
