"""CF-k: freeze all but the last k layer groups and fine-tune those on the retain set
(paper: lr in {1e-3, 1e-4, 1e-5}, k = 3). Frozen groups stay bit-identical, BatchNorm included."""
from dataclasses import dataclass, field

from . import METHODS
from .base import Hyper
from .gd import GD
from .layers import freeze, set_frozen_eval, split_groups


@dataclass
class KHyper(Hyper):
    k: int = field(default=3, metadata={"help": "number of last layer groups trained", "min": 1, "layers": True})


@METHODS.register("cfk")
class CFk(GD):
    name = "cfk"
    Hyper = KHyper

    def setup(self, ctx):
        frozen, _ = split_groups(ctx.model, ctx.hp.k)
        ctx.state["frozen"] = frozen
        freeze(frozen)

    def set_mode(self, ctx):
        super().set_mode(ctx)
        set_frozen_eval(ctx.state["frozen"])
