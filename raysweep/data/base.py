"""Dataset containers: whole splits held as tensors (on the CPU or resident on a GPU)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..errors import ConfigError


@dataclass
class Split:
    """One split. x: [N, C, H, W] float32 normalised images (or [N, L] token ids); y: [N] int64."""

    x: torch.Tensor
    y: torch.Tensor
    # Optional fixed per-sample noise added to the model's input representation (model.embed)
    # during training, for inputs that cannot carry it themselves (token ids). slot[i] = row of
    # `noise` for sample i, or -1.
    noise: torch.Tensor | None = None
    slot: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: torch.Tensor) -> "Split":
        """Rows `idx` (LongTensor); keeps the per-sample noise aligned."""
        noise, slot = self.noise, None
        if self.slot is not None:
            slot = self.slot[idx]
        return replace(self, x=self.x[idx], y=self.y[idx], noise=noise, slot=slot)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(x, y, delta) for rows idx; delta: [b, ...] input-space noise or None."""
        x, y, delta = self.x[idx], self.y[idx], None
        if self.noise is not None:
            s = self.slot[idx]
            m = s >= 0
            if bool(m.any()):
                delta = self.noise.new_zeros((len(idx), *self.noise.shape[1:]))
                delta[m] = self.noise[s[m]]
        return x, y, delta

    def to(self, device) -> "Split":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, x=mv(self.x), y=mv(self.y), noise=mv(self.noise), slot=mv(self.slot))


@dataclass
class Dataset:
    """train / val / test splits. mean, std: [C] per-channel normalisation (images only)."""

    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    kind: str = "image"  # "image" | "text"
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)  # text: {"tokenizer": the spec its ids came from}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def no_params(params: dict) -> None:
    """A loader's `check_params` when it takes no dataset_params (the default for a registered loader)."""

    for key, val in params.items():
        raise ConfigError(f"dataset_params.{key}", val, "none: this dataset takes no dataset_params")


def split_val(x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int) -> tuple[Split, Split]:
    """Seeded split of a held-out set into (val, test); val_size rows go to validation."""
    if not 0 <= val_size < len(y):

        raise ConfigError("val_size", val_size, f"fewer than the {len(y)} rows of the held-out split (the rest is "
                          "the test set)")
    if val_size == 0:
        return Split(x[:0], y[:0]), Split(x, y)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    v, t = perm[:val_size], perm[val_size:]
    return Split(x[v], y[v]), Split(x[t], y[t])


def normalise_uint8_hwc(x, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] normalised per channel; returns (x, mean, std)."""
    t = torch.as_tensor(x).permute(0, 3, 1, 2).float().div_(255.0)
    if mean is None:
        mean = t.mean(dim=(0, 2, 3))
        std = t.std(dim=(0, 2, 3))
    t = (t - mean[None, :, None, None]) / std[None, :, None, None]
    return t.contiguous(), mean, std
