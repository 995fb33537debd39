"""SSD, Selective Synaptic Dampening (Foster et al. 2024).

Importances are diagonal Fisher estimates: the mean over batches of squared batch gradients, on D_f
and on all training data D. Parameters much more important to D_f (F_f > alpha * F_D) are dampened:
theta_i <- min(lambda * F_D,i / F_f,i, 1) * theta_i. One shot, no optimiser. Both importance passes
are forward + backward passes (1 per sample); when the budget cannot cover all of D, a seeded random
subset of D of the size that fits is used (and of D_f, if even that does not fit).
"""
from dataclasses import dataclass, field

import torch

from . import METHODS
from .base import Unlearner, batch_loss


@dataclass
class SSDHyper:
    alpha: float = field(default=10.0, metadata={"help": "selection threshold F_f > alpha F_D", "min": 0.0})
    lam: float = field(default=1.0, metadata={"help": "dampening constant lambda", "min": 0.0})
    batch_size: int = field(default=128, metadata={"help": "samples per importance batch", "min": 1})
    full_fraction: float = field(default=1.0, metadata={"help": "largest share of the budget for D's pass",
                                                        "min": 0.0, "max": 1.0})


def importances(model, split, idx: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Mean over batches of squared batch-mean gradients, per parameter."""
    params = [p for p in model.parameters()]
    acc = [torch.zeros_like(p) for p in params]
    n_batches = 0
    for start in range(0, len(idx), batch_size):
        model.zero_grad(set_to_none=True)
        loss, _ = batch_loss(model, split, idx[start:start + batch_size])
        loss.backward()
        for a, p in zip(acc, params):
            if p.grad is not None:
                a += p.grad.detach() ** 2
        n_batches += 1
    model.zero_grad(set_to_none=True)
    return [a / max(1, n_batches) for a in acc]


@METHODS.register("ssd")
class SSD(Unlearner):
    name = "ssd"
    Hyper = SSDHyper
    uses = ("forget", "full")
    iterative = False

    def execute(self, ctx, on_step):
        hp, model, budget = ctx.hp, ctx.model, ctx.budget
        model.eval()  # importances without moving BatchNorm statistics
        n_f = min(len(ctx.forget), int(budget.left))
        if n_f < 1:
            return 0, False, False
        f_idx = torch.randperm(len(ctx.forget), generator=ctx.gen)[:n_f].to(ctx.forget.y.device)
        budget.charge(n_f)
        n_d = min(len(ctx.full), int(budget.left * hp.full_fraction))
        if n_d < 1:
            return 0, False, False
        d_idx = torch.randperm(len(ctx.full), generator=ctx.gen)[:n_d].to(ctx.full.y.device)
        budget.charge(n_d)
        f_imp = importances(model, ctx.forget, f_idx, hp.batch_size)
        d_imp = importances(model, ctx.full, d_idx, hp.batch_size)
        with torch.no_grad():
            for p, ff, fd in zip(model.parameters(), f_imp, d_imp):
                sel = ff > hp.alpha * fd
                factor = torch.clamp(hp.lam * fd / ff.clamp_min(1e-30), max=1.0)
                p.mul_(torch.where(sel, factor, torch.ones_like(p)))
        on_step(0.0)
        return 1, False, False
