"""Model registry. A factory: (num_classes: int, input_shape: tuple, **params) -> Classifier."""
import torch

from ..registry import Registry
from .base import Classifier

MODELS: Registry = Registry("model")

from . import hf, resnet  # noqa: E402,F401  (registers resnet9, resnet18, gpt2-tiny, hf, gpt2-medium)


def build_model(name: str, num_classes: int, input_shape: tuple, seed: int, **params) -> Classifier:
    """Seeded construction: the same (name, params, seed) gives the same initial weights."""
    factory = MODELS.get(name, "model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(num_classes=num_classes, input_shape=input_shape, **params)
    if model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


__all__ = ["MODELS", "Classifier", "build_model"]
