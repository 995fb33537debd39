"""Two ratios against bare PyTorch baselines, measured in one run (medians of interleaved repeats).

1. GUS over k samples / one forward+backward (with weight gradients) over the same k samples,
   same batches. Goal <= 1.2.
2. raysweep's training loop (train.train) / a bare PyTorch loop, same model, data, batch size,
   optimiser and memory format. Goal <= 1.1.

    python bench/bench_foundation.py [--k 500] [--n 2000] [--repeats 3] [--width 12] [--smoke-test]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from raysweep.config import TrainConfig
from raysweep.data import load_dataset
from raysweep.metrics.gus import gus_scores
from raysweep.models import build_model
from raysweep.prepare.train import make_optimizer, train


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--n", type=int, default=2000, help="training rows for the loop comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke-test", action="store_true")
    a = ap.parse_args()
    if a.smoke_test:
        a.k, a.n, a.repeats = 64, 256, 1
    torch.set_num_threads(a.threads)
    data = load_dataset("cifar10-mini", val_size=0)
    x, y = data.train.x[: a.k], data.train.y[: a.k]
    noise = torch.randn_like(x) * 0.5657
    model = build_model("resnet9", 10, (3, 32, 32), 0, width=a.width)
    bs = 500

    def fwd_bwd():
        model.train()
        for s in range(0, a.k, bs):
            xb = model.prepare_input(x[s:s + bs])
            F.cross_entropy(model(xb), y[s:s + bs]).backward()
        model.zero_grad(set_to_none=True)

    def gus():
        gus_scores(model, x, y, noise, 0.5657, batch_size=bs)

    cfg = TrainConfig(epochs=1, batch_size=128)
    sub = data.train.subset(torch.arange(a.n))

    def ours():
        m = build_model("resnet9", 10, (3, 32, 32), 0, width=a.width)
        train(m, sub, cfg, seed=0, progress=lambda s: None)

    def bare():
        m = build_model("resnet9", 10, (3, 32, 32), 0, width=a.width)
        opt = make_optimizer(m.parameters(), cfg)
        m.train()
        perm = torch.randperm(a.n, generator=torch.Generator().manual_seed(0))
        for s in range(0, a.n, cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            xb = sub.x[idx].contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(m(xb), sub.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    fwd_bwd(), gus(), bare(), ours()  # warm-up (oneDNN primitive creation)
    t = {"fwd_bwd": [], "gus": [], "bare": [], "ours": []}
    for _ in range(a.repeats):
        for name, fn in (("fwd_bwd", fwd_bwd), ("gus", gus), ("bare", bare), ("ours", ours)):
            t[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in t.items()}
    print(f"threads={torch.get_num_threads()} k={a.k} n={a.n} width={a.width} repeats={a.repeats}")
    print(f"GUS over k          {med['gus']:.3f}s   fwd+bwd over k {med['fwd_bwd']:.3f}s   "
          f"ratio {med['gus'] / med['fwd_bwd']:.3f}  (goal <= 1.2)")
    print(f"train() one epoch   {med['ours']:.3f}s   bare loop      {med['bare']:.3f}s   "
          f"ratio {med['ours'] / med['bare']:.3f}  (goal <= 1.1)")


if __name__ == "__main__":
    main()
