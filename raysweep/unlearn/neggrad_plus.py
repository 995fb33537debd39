"""NegGrad+ (Kurmanji et al. 2023): descend beta * L(D_r) - (1 - beta) * L(D_f), one retain and one
forget batch per step (paper grid: beta in 0.9 ... 0.999)."""
from dataclasses import dataclass, field

from . import METHODS
from .base import Hyper, Unlearner, batch_loss


@dataclass
class NegGradHyper(Hyper):
    beta: float = field(default=0.99, metadata={"help": "weight of the retain loss", "min": 0.0, "max": 1.0})
    bn: str = field(default="frozen", metadata={"help": "BatchNorm during unlearning", "choices": ("train", "frozen")})


@METHODS.register("neggrad_plus")
class NegGradPlus(Unlearner):
    name = "neggrad_plus"
    Hyper = NegGradHyper
    uses = ("retain", "forget")

    def plan(self, ctx, step):
        return [("retain", ctx.hp.batch_size, 1.0), ("forget", ctx.hp.batch_size, 1.0)]

    def loss(self, ctx, batches, step):
        r = batch_loss(ctx.model, ctx.retain, batches["retain"])[0]
        f = batch_loss(ctx.model, ctx.forget, batches["forget"])[0]
        return ctx.hp.beta * r - (1 - ctx.hp.beta) * f
