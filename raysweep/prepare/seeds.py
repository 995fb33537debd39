"""Independent, reproducible seeds per purpose, derived from a scenario's seed."""
from __future__ import annotations

import hashlib


def derive_seed(seed: int, tag: str) -> int:
    """Independent, reproducible seeds per purpose (poison draw, data order, init, ...)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{tag}".encode()).digest()[:4], "little") & 0x7FFFFFFF
