"""Unlearning methods: a registry of Unlearner classes, one module each.

    from raysweep.unlearn import METHODS, run_unlearning
    result = run_unlearning(METHODS.get("gd")(), model, forget, retain, full, 0.1, train_compute)
"""
from ..registry import Registry
from .base import FORWARD_COST, Budget, Hyper, Unlearner, UnlearnResult, run_unlearning

METHODS: Registry = Registry("method", __name__)  # every module here that registers a method


def get_method(name: str) -> Unlearner:
    return METHODS.get(name, "method")()


__all__ = ["METHODS", "Budget", "FORWARD_COST", "Hyper", "Unlearner", "UnlearnResult",
           "get_method", "run_unlearning"]
