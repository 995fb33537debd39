"""SSD, Selective Synaptic Dampening (Foster et al. 2024).

Importances are diagonal Fisher estimates: the mean over batches of squared batch gradients, on D_f
and on all training data D. Parameters much more important to D_f (F_f > alpha * F_D) are dampened:
theta_i <- min(lambda * F_D,i / F_f,i, 1) * theta_i. One shot, no optimiser. Both importance passes
are forward + backward passes (1 per sample); when the budget cannot cover all of D, a seeded random
subset of D of the size that fits is used (and of D_f, if even that does not fit).

A sweep's SSD trials share their importance passes: every trial starts from θ_initial with the sweep's
seed, so its subsets are prefixes of the same seeded permutations, and the running sums of squared
gradients after every `stride` batches are kept in the worker process (`PrefixSums`, at most
SSD_CACHE_MB per split): a trial adds only the batches past the longest kept prefix below its own. The sums are
the same additions in the same order as a fresh pass, so the importances are bit for bit those of a
fresh pass; the budget is charged as for a fresh pass (the method's cost, not the engine's).
docs/performance.md, "Depth per hour".
"""
import hashlib
from dataclasses import dataclass, field

import torch

from ..defaults import SSD_CACHE_MB
from . import METHODS
from .base import Unlearner, batch_loss


@dataclass
class SSDHyper:
    alpha: float = field(default=10.0, metadata={"help": "selection threshold F_f > alpha F_D", "min": 0.0})
    lam: float = field(default=1.0, metadata={"help": "dampening constant lambda", "min": 0.0})
    batch_size: int = field(default=128, metadata={"help": "samples per importance batch", "min": 1})
    full_fraction: float = field(default=1.0, metadata={"help": "largest share of the budget for D's pass",
                                                        "min": 0.0, "max": 1.0})


def squared_batch_grads(model, params, split, idx: torch.Tensor, acc: list[torch.Tensor]) -> None:
    """acc += the squared gradient of the batch-mean loss on rows idx, per parameter."""
    model.zero_grad(set_to_none=True)
    loss, _ = batch_loss(model, split, idx)
    loss.backward()
    for a, p in zip(acc, params):
        if p.grad is not None:
            a += p.grad.detach() ** 2


def digest(tensors) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        if t is not None:
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class PrefixSums:
    """Running sums of squared batch gradients over one seeded permutation of one split, kept after every
    `stride` batches (`marks`: batches done -> sums), for the model and split they were computed on."""

    kept: dict = {}  # (model digest, split digest, batch size) -> PrefixSums; one worker process's

    def __init__(self, idx: torch.Tensor, stride: int):
        self.idx, self.stride, self.marks = idx, stride, {}

    @classmethod
    def lookup(cls, model, params, split, idx: torch.Tensor, batch_size: int) -> "PrefixSums | None":
        """The kept sums whose permutation agrees with idx (a fresh entry if none); None when one set of
        sums would not fit SSD_CACHE_MB (a large model computes afresh)."""
        size = sum(p.numel() * p.element_size() for p in params)
        n_batches = -(-len(split) // batch_size)
        room = int(SSD_CACHE_MB * 2**20 // max(1, size))
        if room < 1:
            return None
        key = (digest(params), digest((split.x, split.y, split.noise, split.slot)), batch_size)
        entry = cls.kept.get(key)
        n = min(len(idx), 0 if entry is None else len(entry.idx))
        if entry is None or not torch.equal(entry.idx[:n].cpu(), idx[:n].cpu()):
            cls.kept.pop(key, None)
            if len(cls.kept) >= 2:  # D_f's and D's of one scenario at a time
                cls.kept.clear()
            entry = cls.kept[key] = PrefixSums(idx, max(1, -(-n_batches // room)))
        elif len(idx) > len(entry.idx):
            entry.idx = idx
        return entry


def importances(model, split, idx: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Mean over batches of squared batch-mean gradients, per parameter (from the longest kept prefix)."""
    params = [p for p in model.parameters()]
    n_full, n_batches = len(idx) // batch_size, -(-len(idx) // batch_size)
    kept = PrefixSums.lookup(model, params, split, idx, batch_size)
    start = max((m for m in (kept.marks if kept else {}) if m <= n_full), default=0)
    acc = [t.clone() for t in kept.marks[start]] if start else [torch.zeros_like(p) for p in params]
    for b in range(start, n_batches):
        squared_batch_grads(model, params, split, idx[b * batch_size:(b + 1) * batch_size], acc)
        if kept is not None and b + 1 <= n_full and (b + 1) % kept.stride == 0 and b + 1 not in kept.marks:
            kept.marks[b + 1] = [t.clone() for t in acc]
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
