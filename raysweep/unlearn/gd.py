"""GD: fine-tune on the retain set with SGD (paper: lr 1e-3, momentum 0.9, weight decay 5e-4)."""
from . import METHODS
from .base import Unlearner, batch_loss


@METHODS.register("gd")
class GD(Unlearner):
    name = "gd"
    uses = ("retain",)

    def plan(self, ctx, step):
        return [("retain", ctx.hp.batch_size, 1.0)]

    def loss(self, ctx, batches, step):
        return batch_loss(ctx.model, ctx.retain, batches["retain"])[0]
