"""Deletion requests as they arrive: which poisons a defender who found only a share of them requests.

`Scenario.discovered` (scenario.py) builds the view; docs/discovery.md.
"""
from __future__ import annotations

import math

import torch

from ..errors import check_number
from .seeds import derive_seed


def check_discovery(fraction, field: str = "discovery") -> float:
    """The discovered share of the poisons: in (0, 1]."""
    return check_number(field, fraction, lo=0, hi=1, lo_open=True, what="the share of the poisons the defender "
                        "found and requests to unlearn")


def discovered_rows(seed: int, k: int, fraction: float) -> torch.Tensor:
    """Positions (into the k poisons) found at `fraction`: the first ceil(fraction * k) of one seeded
    permutation per scenario, so smaller fractions find subsets of larger ones."""
    order = torch.randperm(k, generator=torch.Generator().manual_seed(derive_seed(seed, "discovery")))
    return order[: max(1, math.ceil(fraction * k - 1e-9))].sort().values
