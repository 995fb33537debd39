"""EU-k: re-initialise the last k layer groups, freeze the rest, train the re-initialised part on
the retain set (paper: lr in {1e-3, 1e-4, 1e-5}, k = 3)."""
from dataclasses import dataclass, field

from . import METHODS
from .base import cosine_scale
from .cfk import CFk, KHyper
from .layers import reinitialise, split_groups


@dataclass
class EUkHyper(KHyper):
    schedule: str = field(default="constant", metadata={
        "help": "learning rate over the budget: constant (the paper's), or cosine (warm-up then decay to 0: "
                "θ_initial's recipe, what EU-k with every layer needs to be retraining)",
        "choices": ("constant", "cosine")})
    warmup: float = field(default=0.1, metadata={"help": "cosine: share of the budget in linear warm-up",
                                                 "min": 0.0, "max": 1.0})


@METHODS.register("euk")
class EUk(CFk):
    name = "euk"
    Hyper = EUkHyper

    def lr_scale(self, ctx):
        return cosine_scale(ctx, ctx.hp.warmup) if ctx.hp.schedule == "cosine" else 1.0

    def setup(self, ctx):
        super().setup(ctx)
        _, last = split_groups(ctx.model, ctx.hp.k)
        reinitialise(last, ctx.model)
