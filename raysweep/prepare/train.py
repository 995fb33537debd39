"""The one trainer, used for θ_initial (on S_corr) and θ_retrain (on S_corr minus the poisons).

SGD with (Nesterov) momentum (or AdamW, for transformers), linear warm-up then cosine decay,
optional random crop + flip.
Compute is counted in sample-gradients: one forward + backward of one sample through the model
(the unit of every unlearning budget). Deterministic on the CPU: the same seed gives the same
weights (model init, data order and augmentation all come from seeded generators).
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.heads import cached_head_inputs, head
from ..config import TrainConfig
from ..data.base import Split
from ..eta import PROGRESS_EVERY_S, eta_line
from ..unlearn.schedule import augment_batch, lr_at


@dataclass
class TrainResult:
    sample_grads: int      # forward+backward sample passes spent
    wall_s: float
    final_loss: float      # mean training loss over the last epoch


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)


def train(model, data: Split, cfg: TrainConfig, seed: int, label: str = "train",
          progress: Callable[[str], None] | None = None, only: nn.Module | None = None) -> TrainResult:
    """Train `model` in place on `data` (already on the model's device). Returns the compute spent.

    only: train just this submodule (e.g. the classifier head); the rest stays frozen and in eval
    mode (batch-norm statistics fixed). Each sample still counts as one sample-gradient. When `only` is
    the head and the recipe neither augments nor autocasts, every sample's head input is then fixed: it is
    computed once (`cached_head_inputs`) and the head trains on it, the same steps on the same values up to
    float rounding, without a pass through the frozen part per step.
    """
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    n = len(data)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    params = list((only if only is not None else model).parameters())
    opt = make_optimizer(params, cfg)
    autocast = cfg.bf16 and dev.type == "cuda"
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    fixed = only is not None and only is head(model) and not cfg.augment and not autocast
    feats = cached_head_inputs(model, data) if fixed else None  # None: the head's output is not the logits
    with _only_trainable(model, only):
        spent, step, last = 0, 0, float("nan")
        said = t0
        for epoch in range(cfg.epochs):
            perm = torch.randperm(n, generator=g).to(data.y.device)
            loss_sum = torch.zeros((), device=dev)
            for start in range(0, n, cfg.batch_size):
                idx = perm[start:start + cfg.batch_size]
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, warmup, cfg.lr)
                if feats is not None:
                    y, logits = data.y[idx], only(feats[idx])
                else:
                    x, y, delta = data.batch(idx)
                    if cfg.augment:
                        if delta is not None:
                            raise ValueError("augmentation of inputs carrying embedding noise is not supported")
                        x = augment_batch(x, g)
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                        logits = model(model.prepare_input(x), delta)
                loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(idx)
                spent += len(idx)
                step += 1
                if start + len(idx) < n and time.perf_counter() - said >= PROGRESS_EVERY_S:  # a long epoch
                    said = time.perf_counter()
                    say(eta_line(label, epoch + (start + len(idx)) / n, cfg.epochs, said - t0))
            last = loss_sum.item() / n
            if not math.isfinite(last):
                raise FloatingPointError(f"{label}: training loss became {last} in epoch {epoch + 1}")
            said = time.perf_counter()
            say(eta_line(label, epoch + 1, cfg.epochs, said - t0, f"loss {last:.4f}"))
        return TrainResult(spent, time.perf_counter() - t0, last)


@contextmanager
def _only_trainable(model, only: nn.Module | None):
    """Train mode for `model`, or: every parameter outside `only` frozen and in eval mode (batch-norm
    statistics fixed), `only` in train mode; requires_grad is restored afterwards."""
    if only is None:
        model.train()
        yield
        return
    keep = {id(p) for p in only.parameters()}
    frozen = [p for p in model.parameters() if id(p) not in keep and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    model.eval()
    only.train()
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)
