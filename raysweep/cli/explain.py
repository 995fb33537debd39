"""`raysweep explain`: why unlearning fails, H1 (model shift) and H2 (orthogonal subspace) measured.

    raysweep explain SWEEP [--draws 3] [--m 32] [--batch-size 128] [--alphas 0,0.1,...,1] [--out DIR]

Options are checked before any compute; the measuring is raysweep/explain/.
"""
from __future__ import annotations

import math

from ..defaults import MAX_BATCH
from ..errors import ConfigError, check_number
from ..explain.run import explain_sweep, summary
from .common import add_sweep_arg, setup_device, sweep_path

ALPHAS_HELP = "comma-separated numbers in [0, 1], at least two, e.g. 0,0.25,0.5,0.75,1"


def parse_alphas(text: str) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0] (sorted, duplicates dropped); a ConfigError naming `alphas` otherwise."""
    try:
        vals = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError("alphas", text, ALPHAS_HELP) from None
    if len(set(vals)) < 2 or any(not math.isfinite(v) or not 0 <= v <= 1 for v in vals):
        raise ConfigError("alphas", text, ALPHAS_HELP)
    return sorted(set(vals))


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="why unlearning fails: H1 (model shift) and H2 (orthogonal subspace) measured")
    add_sweep_arg(p, "a sweep directory, an export folder, or a sweep name under --storage-path")
    p.add_argument("--draws", type=int, default=3,
                   help="θ_random draws: retrained without k random clean samples (cached, default 3)")
    p.add_argument("--m", type=int, default=32, help="per-batch gradients spanning each subspace (default 32)")
    p.add_argument("--batch-size", type=int, default=128, help="samples per gradient batch (default 128)")
    p.add_argument("--alphas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1",
                   help="α grid of θ(α) = (1 − α) θ_initial + α θ_retrain (default 0,0.1,...,1)")
    p.add_argument("--out", default=None, help="output folder (default SWEEP/explain, where `raysweep report` looks)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.set_defaults(func=run, writes_sweep=True)


def run(args) -> int:

    check_number("draws", args.draws, lo=1, hi=100, integer=True, what="θ_random retrainings, each cached")
    check_number("m", args.m, lo=1, hi=4096, integer=True, what="per-batch gradients spanning each subspace")
    check_number("batch_size", args.batch_size, lo=1, hi=MAX_BATCH, integer=True)
    alphas = parse_alphas(args.alphas)
    sweep = sweep_path(args)
    device = setup_device(args)
    result = explain_sweep(sweep, args.out, args.draws, args.m, args.batch_size, alphas, device, args.store)
    print(summary(result))
    print(result["out"])
    return 0
