"""NGD: GD plus fresh Gaussian noise N(0, sigma2 I) added to every parameter after each step
(paper: sigma2 in {1e-7, 1e-6}). With sigma2 = 0 it is GD exactly."""
from dataclasses import dataclass, field

import torch

from . import METHODS
from .base import Hyper
from .gd import GD


@dataclass
class NGDHyper(Hyper):
    sigma2: float = field(default=1e-7, metadata={"help": "variance of the per-step parameter noise", "min": 0.0})


@METHODS.register("ngd")
class NGD(GD):
    name = "ngd"
    Hyper = NGDHyper

    @torch.no_grad()
    def after_step(self, ctx):
        if ctx.hp.sigma2 > 0:
            std = ctx.hp.sigma2 ** 0.5
            for p in self.trainable(ctx):
                p.add_(torch.randn(p.shape, generator=ctx.gen).to(p.device) * std)
