"""Scratch: retrain from scratch within the budget, the curve's sanity control (not an unlearner).

Every layer group is re-initialised and trained on the retain set with the recipe θ_retrain was
trained with (the caller passes the scenario's `train.*` figures: the budget curve does,
curve/controls.py): linear warm-up then cosine decay to 0 over the whole budget, SGD with Nesterov
momentum or AdamW, augmentation if the recipe has it. At budget 1.0 it is θ_retrain again with
another seed, so a referee that cannot call it "removes" cannot decide at that size
(docs/curve.md, "Sanity rows"). `control = True`: `--methods all` leaves it out.
"""
from dataclasses import dataclass, field

import torch

from . import METHODS
from .base import Hyper, cosine_scale
from .gd import GD
from .layers import reinitialise
from .schedule import augment_batch


@dataclass
class ScratchHyper(Hyper):
    lr: float = field(default=0.05, metadata={"help": "peak learning rate", "min": 0.0, "max": 10.0})
    warmup: float = field(default=0.1, metadata={"help": "share of the budget in linear warm-up", "min": 0.0,
                                                 "max": 1.0})
    optimizer: str = field(default="sgd", metadata={"help": "sgd or adamw", "choices": ("sgd", "adamw")})
    nesterov: bool = field(default=True, metadata={"help": "Nesterov momentum (sgd)"})
    augment: bool = field(default=False, metadata={"help": "random crop + flip (images)"})


@METHODS.register("scratch")
class Scratch(GD):
    name = "scratch"
    Hyper = ScratchHyper
    control = True

    def setup(self, ctx):
        reinitialise(ctx.model.layer_groups(), ctx.model)

    def optimizer(self, params, hp):
        if hp.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov and hp.momentum > 0,
                               weight_decay=hp.weight_decay)

    def lr_scale(self, ctx):
        return cosine_scale(ctx, ctx.hp.warmup)

    def loss(self, ctx, batches, step):
        if not ctx.hp.augment:
            return super().loss(ctx, batches, step)
        x, y, delta = ctx.retain.batch(batches["retain"])
        if x.dim() != 4 or delta is not None:
            return super().loss(ctx, batches, step)
        x = augment_batch(x, ctx.gen)
        logits = ctx.model(ctx.model.prepare_input(x), delta)
        return torch.nn.functional.cross_entropy(logits.float(), y)


def recipe(train) -> dict:
    """The scratch control's hyperparameters from a scenario's TrainConfig (config.py), so that it
    retrains as θ_retrain was trained; the warm-up as a share of the epochs."""
    return {"lr": float(train.lr), "momentum": float(train.momentum), "weight_decay": float(train.weight_decay),
            "batch_size": int(train.batch_size), "optimizer": train.optimizer, "augment": bool(train.augment),
            "nesterov": bool(train.nesterov),
            "warmup": min(1.0, float(train.warmup_epochs) / max(1, int(train.epochs)))}
