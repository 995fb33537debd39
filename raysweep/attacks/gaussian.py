"""Gaussian poisoning (Pawelczyk et al. 2025, Algorithm 1).

A uniform random subset of exactly k training samples gets fixed noise xi ~ N(0, eps^2 I); labels
are kept and nothing is clipped. `space="input"` (default) draws the noise in the model's input
representation (normalised images); `space="pixel"` draws it in [0, 1] pixel units and divides it by
the per-channel std, GUS then scoring in pixel space (gradients times 1/std), so the null stays
exactly N(0, 1) either way. For text (token ids) the noise lives on the input token embeddings
([k, L, D]), only at real tokens (pad positions get none), and the model adds it after `embed`.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..data.base import Dataset
from ..errors import ConfigError
from . import ATTACKS
from .base import Attack, PoisonedSet

DEFAULT_EPS = math.sqrt(0.32)  # eps^2 = 0.32, the paper's CIFAR-10 figure


@ATTACKS.register("gaussian")
class GaussianPoison(Attack):
    name = "gaussian"
    metric = "gus_z"

    @classmethod
    def check(cls, params: dict) -> dict:
        allowed = {"k", "fraction", "eps", "space"}
        cls.only(params, allowed)
        p = {"eps": DEFAULT_EPS, "space": "input", **params}
        if "k" in p and "fraction" in p and p["k"] is not None and p["fraction"] is not None:
            raise ConfigError("attack.k", p["k"], "give k or fraction, not both")
        if p.get("k") is None and p.get("fraction") is None:
            p["fraction"] = 0.05
        if p.get("k") is not None and (not isinstance(p["k"], int) or isinstance(p["k"], bool) or p["k"] < 1):
            raise ConfigError("attack.k", p["k"], "a positive integer")
        if p.get("fraction") is not None and not (0 < float(p["fraction"]) < 1):
            raise ConfigError("attack.fraction", p["fraction"], "a number in (0, 1)")
        if not isinstance(p["eps"], (int, float)) or isinstance(p["eps"], bool) or not p["eps"] > 0:
            raise ConfigError("attack.eps", p["eps"], "a number > 0 (the noise std; eps^2 = 0.32 by default)")
        if p["space"] not in ("input", "pixel"):
            raise ConfigError("attack.space", p["space"], "input or pixel")
        p["eps"] = float(p["eps"])
        return {k: v for k, v in p.items() if v is not None}

    def count(self, n: int) -> int:
        k = self.params.get("k")
        if k is None:
            k = max(1, round(self.params["fraction"] * n))
        if k > n:
            raise ConfigError("attack.k", k, f"at most the training set size n={n}")
        return int(k)

    def check_data(self, data: Dataset) -> None:
        self.count(len(data.train))

    def build(self, data: Dataset, seed: int, env=None) -> dict[str, torch.Tensor]:
        n = len(data.train)
        k = self.count(n)
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(n, generator=g)[:k].sort().values
        if data.kind == "text":  # noise on the input token embeddings of the real (non-pad) tokens
            if env is None:
                raise ConfigError("attack.name", self.name, "a scenario build for text (the embedding width)")
            with torch.no_grad():
                shape = tuple(env.new_model().embed(data.train.x[:1].to(env.device)).shape[1:])  # (L, D)
            noise = torch.randn((k, *shape), generator=g) * self.params["eps"]
            noise *= (data.train.x[idx] >= 0).unsqueeze(-1).to(noise.dtype)
        else:
            noise = torch.randn((k, *data.input_shape), generator=g) * self.params["eps"]
        return {"poison_idx": idx, "noise": noise}

    def apply(self, data: Dataset, stored: dict[str, torch.Tensor]) -> PoisonedSet:
        idx, noise = stored["poison_idx"].long(), stored["noise"]
        train, clean = data.train, data.train.x[idx]
        grad_scale = None
        shift = noise
        if self.params["space"] == "pixel":
            if data.std is None:
                raise ConfigError("attack.space", "pixel", "pixel space needs an image dataset with a std")
            inv = (1.0 / data.std).view(-1, *([1] * (noise.dim() - 2)))
            shift, grad_scale = noise * inv, inv
        if data.kind == "image":
            x = train.x.clone()
            x[idx] = clean + shift
            train = replace(train, x=x)
        else:  # inputs that cannot carry the noise (token ids): the model adds it after embed
            slot = torch.full((len(train),), -1, dtype=torch.long)
            slot[idx] = torch.arange(idx.numel())
            train = replace(train, noise=shift, slot=slot)
        return PoisonedSet(train, idx, clean, noise, self.params["eps"], grad_scale, {"space": self.params["space"]})
