"""Attack registry: name -> Attack subclass."""
from ..registry import Registry
from .base import Attack, BuildEnv, PoisonedSet, Searchable

ATTACKS: Registry = Registry("attack", __name__)  # every module here that registers an attack


def make_attack(name: str, params: dict) -> Attack:
    return ATTACKS.get(name, "attack.name")(**params)


__all__ = ["ATTACKS", "Attack", "BuildEnv", "PoisonedSet", "Searchable", "make_attack"]
