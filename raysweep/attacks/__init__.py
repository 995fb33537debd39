"""Attack registry: name -> Attack subclass."""
from ..registry import Registry
from .base import Attack, BuildEnv, PoisonedSet

ATTACKS: Registry = Registry("attack")

from . import backdoor, gaussian, gradient_canceling, gradient_matching  # noqa: E402,F401


def make_attack(name: str, params: dict) -> Attack:
    return ATTACKS.get(name, "attack.name")(**params)


__all__ = ["ATTACKS", "Attack", "BuildEnv", "PoisonedSet", "make_attack"]
