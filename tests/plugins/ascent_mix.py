"""A test-only unlearning method, complete in this file and its YAML (ascent_mix.yaml beside it);
named to sort before every shipped method, so a seed that followed the sorted names would shift:
gradient ascent on the forget set mixed with descent on the retain set, weighted by `mix`."""
from __future__ import annotations

from dataclasses import dataclass, field

from raysweep.unlearn import METHODS
from raysweep.unlearn.base import Hyper, Unlearner, batch_loss


@dataclass
class ToyHyper(Hyper):
    mix: float = field(default=0.5, metadata={"help": "weight of the forget-set ascent", "min": 0.0, "max": 1.0})


@METHODS.register("ascent_mix")
class AscentMix(Unlearner):
    name = "ascent_mix"
    Hyper = ToyHyper
    uses = ("forget", "retain")

    def plan(self, ctx, step):
        half = max(1, ctx.hp.batch_size // 2)
        return [("forget", half, 1.0), ("retain", half, 1.0)]

    def loss(self, ctx, batches, step):
        f = batch_loss(ctx.model, ctx.forget, batches["forget"])[0]
        r = batch_loss(ctx.model, ctx.retain, batches["retain"])[0]
        return (1 - ctx.hp.mix) * r - ctx.hp.mix * f
