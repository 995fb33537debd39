"""Model registry. A factory: (num_classes: int, input_shape: tuple, **params) -> Classifier; registered
with its data `kind` (image, text) and, optionally, `check_params` (its values checked up front)."""
import inspect

import torch

from ..errors import ConfigError
from ..registry import Registry
from .base import Classifier

MODELS: Registry = Registry("model", __name__)  # every module here that registers a factory


def check_model_params(name: str, params: dict) -> None:
    """Refuse a model parameter the factory does not take, naming it and those it does, and a value its
    registered `check_params` refuses (before any data or training; a model without one has its values
    checked when it is first built)."""
    factory = MODELS.get(name, "model")
    sig = inspect.signature(factory)
    if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        takes = sorted(n for n in sig.parameters if n not in ("num_classes", "input_shape"))
        for key in params:
            if key not in takes:
                raise ConfigError(f"model_params.{key}", params[key],
                                  f"{name} takes {', '.join(takes) or 'no parameters'}")
    check = getattr(factory, "check_params", None)
    if check is not None:
        check(params)


def build_model(name: str, num_classes: int, input_shape: tuple, seed: int, **params) -> Classifier:
    """Seeded construction: the same (name, params, seed) gives the same initial weights."""
    factory = MODELS.get(name, "model")
    check_model_params(name, params)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(num_classes=num_classes, input_shape=input_shape, **params)
        except (TypeError, ValueError) as e:
            raise ConfigError("model_params", params, f"values {name} can build with ({e})".replace("\n", " ")) from e
    if model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


__all__ = ["MODELS", "Classifier", "build_model"]
