"""Accuracy and per-sample losses of a model on a split, in eval mode, batched, no gradients."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.base import Split


def eval_batch(dev: torch.device) -> int:
    """Evaluation batch size: 128 on a CPU (twice as fast per image as 1,000 with one thread on the default
    ResNet-9: bench/bench_checkpoint.py, docs/performance.md), 1,024 on a GPU."""
    return 1024 if dev.type == "cuda" else 128


@torch.no_grad()
def per_sample_losses(model, split: Split, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (losses [N] float32 on the CPU, correct [N] bool on the CPU)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    batch_size = batch_size or eval_batch(dev)
    losses, correct = [], []
    n = len(split)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size), device=split.y.device)
        x, y, delta = split.batch(idx)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        logits = model(model.prepare_input(x), None if delta is None else delta.to(dev)).float()
        losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
        correct.append((logits.argmax(1) == y).cpu())
    model.train(was)
    if not losses:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    return torch.cat(losses), torch.cat(correct)


def evaluate(model, split: Split, batch_size: int | None = None) -> dict:
    """{'acc': fraction correct, 'loss': mean cross-entropy} (nan for an empty split)."""
    losses, correct = per_sample_losses(model, split, batch_size)
    if len(losses) == 0:
        return {"acc": float("nan"), "loss": float("nan")}
    return {"acc": correct.float().mean().item(), "loss": losses.mean().item()}
