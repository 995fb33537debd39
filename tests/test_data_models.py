from pathlib import Path

import pytest
import torch

from raysweep.artifacts import sha256_file
from raysweep.data import DATASETS, load_dataset
from raysweep.data.cifar10 import BUNDLED_SHA256
from raysweep.errors import ArtifactError, ConfigError
from raysweep.models import build_model


def test_bundled_subset_is_whole_and_normalised():
    d = load_dataset("cifar10-mini", val_size=500, seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (10000, 500, 1500)
    assert d.train.x.shape[1:] == (3, 32, 32) and d.train.x.dtype == torch.float32
    means = d.train.x.mean(dim=(0, 2, 3))
    assert means.abs().max() < 1e-3 and (d.train.x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    assert torch.bincount(d.train.y).tolist() == [1000] * 10
    bundled = Path(__file__).resolve().parents[1] / "raysweep" / "data" / "bundled" / "cifar10_subset.npz"
    assert sha256_file(bundled) == BUNDLED_SHA256


def test_a_corrupted_dataset_file_is_refused(tmp_path):
    (tmp_path / "cifar10_subset.npz").write_bytes(b"not the data")
    with pytest.raises(ArtifactError, match="sha256"):
        load_dataset("cifar10-mini", data_dir=str(tmp_path))


def test_cifar10_loader_reads_a_local_copy_through_torchvision(tmp_path, monkeypatch):
    """The real torchvision path, against batches written in CIFAR-10's own pickle format."""
    import pickle

    import numpy as np

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    import torchvision

    # our stand-in batches have other md5s than the real ones
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    d = DATASETS.get("cifar10")(data_dir=str(tmp_path), val_size=5, seed=0)
    assert len(d.train) == 100 and len(d.val) == 5 and len(d.test) == 15


def test_unknown_dataset_and_model_list_the_choices():
    with pytest.raises(ConfigError, match="cifar10-mini"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="resnet18"):
        build_model("vgg", 10, (3, 32, 32), 0)


@pytest.mark.parametrize("name,params,n_min,n_max", [
    ("resnet9", {}, 2.2e5, 2.5e5), ("resnet9", {"width": 16}, 4e5, 4.3e5), ("resnet18", {}, 1.1e7, 1.13e7)])
def test_models_shapes_and_sizes(name, params, n_min, n_max):
    m = build_model(name, 10, (3, 32, 32), seed=0, **params)
    n = sum(p.numel() for p in m.parameters())
    assert n_min < n < n_max
    out = m(m.prepare_input(torch.randn(2, 3, 32, 32)))
    assert out.shape == (2, 10)
    assert len(m.layer_groups()) >= 4


def test_seeded_init_is_reproducible():
    a = build_model("resnet9", 10, (3, 32, 32), seed=3, width=4).state_dict()
    b = build_model("resnet9", 10, (3, 32, 32), seed=3, width=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_algorithms_are_on_and_warn_only_on_the_cpu(monkeypatch):
    """The flag `raysweep` sets on a CPU: deterministic algorithms, warnings only (never an error)."""
    from raysweep.runtime import deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    monkeypatch.delenv("RAYSWEEP_DETERMINISTIC", raising=False)
    try:
        deterministic("cpu")
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.parametrize("name,params,folded", [("resnet9", {"width": 8}, 8), ("resnet18", {"width": 8}, 4)])
def test_for_eval_folds_batchnorm_into_the_convolutions_and_computes_the_same_function(name, params, folded):
    """The evaluation copy (Classifier.for_eval): BatchNorm folded where a Conv2d precedes it in a Sequential,
    the same logits and input gradients (GUS) up to float rounding, and the model itself untouched."""
    from torch import nn

    from raysweep.metrics.gus import input_gradients

    m = build_model(name, 10, (3, 32, 32), seed=1, **params)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # running statistics and affine weights far from their initial 0/1
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.5, generator=g)
            bn.running_var.uniform_(0.5, 2.0, generator=g)
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.normal_(0, 0.2, generator=g)
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    ev = m.for_eval()
    assert ev is not m and m.training and all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert n_bn - sum(isinstance(x, nn.BatchNorm2d) for x in ev.modules()) == folded
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    m.eval()
    with torch.no_grad():
        ref, out = m(m.prepare_input(x)), ev(ev.prepare_input(x))
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
    assert torch.equal(out.argmax(1), ref.argmax(1))
    ga, gb = input_gradients(m, x, y), input_gradients(ev, x, y)
    assert torch.nn.functional.cosine_similarity(ga, gb).min() > 1 - 1e-6


def test_for_eval_returns_a_model_without_batchnorm_as_it_is():
    m = build_model("gpt2-tiny", 2, (16,), seed=0, width=16, layers=1)
    assert m.for_eval() is m


def test_for_eval_leaves_pairs_that_folding_could_change():
    """A Sequential subclass with its own forward, a BatchNorm without running statistics and a hooked
    module keep their BatchNorm; a plain pair beside them is folded."""
    from torch import nn

    from raysweep.models.base import Classifier

    class Reordered(nn.Sequential):
        def forward(self, x):
            return self[0](x) + self[1](self[0](x))

    class Net(Classifier):
        def __init__(self):
            super().__init__()
            self.plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
            self.own = Reordered(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
            self.nostats = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, track_running_stats=False))
            self.hooked = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
            self.hooked[1].register_forward_hook(lambda m, i, o: None)
            self.fc = nn.Linear(4, 2)

        def classify(self, e, x=None):
            h = self.hooked(self.nostats(self.own(self.plain(e))))
            return self.fc(h.mean((2, 3)))

    torch.manual_seed(0)
    m = Net()
    ev = m.for_eval()
    kept = [name for name, x in ev.named_modules() if isinstance(x, nn.BatchNorm2d)]
    assert sorted(kept) == ["hooked.1", "nostats.1", "own.1"]
    x = torch.randn(2, 3, 8, 8)
    m.eval()
    with torch.no_grad():
        assert torch.allclose(ev(x), m(x), atol=1e-5)
