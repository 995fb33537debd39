"""Freezing and re-initialising "the last k layers" (Classifier.layer_groups) for EU-k and CF-k."""
import torch
from torch import nn

from ..errors import ConfigError


def split_groups(model, k: int) -> tuple[list[nn.Module], list[nn.Module]]:
    groups = model.layer_groups()
    if not 1 <= k <= len(groups):
        raise ConfigError("k", k, f"an integer in [1, {len(groups)}] for this model's {len(groups)} layer groups")
    return groups[:-k], groups[-k:]


def freeze(modules: list[nn.Module]) -> None:
    """No gradients, and BatchNorm statistics fixed (eval mode is re-applied each step)."""
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(False)


def set_frozen_eval(modules: list[nn.Module]) -> None:
    for m in modules:
        m.eval()


@torch.no_grad()
def reinitialise(modules: list[nn.Module], model=None) -> None:
    """Fresh weights from each layer's own initialiser (seeded by the caller's torch seed); a model
    with its own `reinitialise(module)` (Hugging Face models) does it its way."""
    for m in modules:
        if model is not None and hasattr(model, "reinitialise"):
            model.reinitialise(m)
            continue
        for sub in m.modules():
            if hasattr(sub, "reset_parameters"):  # BatchNorm's also resets its running statistics
                sub.reset_parameters()
