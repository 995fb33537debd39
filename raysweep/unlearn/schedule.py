"""The training recipe's learning-rate schedule and augmentation, in one place: θ_initial's and
θ_retrain's trainer (prepare/train.py) and the from-scratch control (unlearn/scratch.py) both use them,
so that retraining within a budget follows the recipe the references were trained with."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up over `warmup` steps to `peak`, then cosine decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def augment_batch(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding `pad` and random horizontal flip: [B, C, H, W] -> same."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    xp = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)   # [B, H]
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)   # [B, W]
    bi = torch.arange(b, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
