"""EU-k: re-initialise the last k layer groups, freeze the rest, train the re-initialised part on
the retain set (paper: lr in {1e-3, 1e-4, 1e-5}, k = 3)."""
from . import METHODS
from .cfk import CFk
from .layers import reinitialise, split_groups


@METHODS.register("euk")
class EUk(CFk):
    name = "euk"

    def setup(self, ctx):
        super().setup(ctx)
        _, last = split_groups(ctx.model, ctx.hp.k)
        reinitialise(last, ctx.model)
