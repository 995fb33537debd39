"""GA: gradient ascent on the forget set (paper: lr in [5e-6, 1e-5]). BatchNorm is frozen by
default: all-noisy forget batches would otherwise move the running statistics by themselves."""
from dataclasses import dataclass, field

from . import METHODS
from .base import Hyper, Unlearner, batch_loss


@dataclass
class GAHyper(Hyper):
    lr: float = field(default=1e-5, metadata={"help": "SGD learning rate", "min": 0.0})
    bn: str = field(default="frozen", metadata={"help": "BatchNorm during unlearning", "choices": ("train", "frozen")})


@METHODS.register("ga")
class GA(Unlearner):
    name = "ga"
    Hyper = GAHyper
    uses = ("forget",)

    def plan(self, ctx, step):
        return [("forget", ctx.hp.batch_size, 1.0)]

    def loss(self, ctx, batches, step):
        return -batch_loss(ctx.model, ctx.forget, batches["forget"])[0]
