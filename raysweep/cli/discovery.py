"""`raysweep discovery`: each method's best configuration re-run with only part of the poisons found,
and probed for effects that come back.

    raysweep discovery SWEEP [--fractions 0.1,0.25,0.5,1.0] [--seeds 1] [--relearn 0.5] [--methods gd,ga]
"""
from __future__ import annotations

import argparse
import sys

from .. import defaults as D
from ..attacks import ATTACKS
from ..discovery import check_relearn, parse_fractions, run_discovery
from ..discovery.table import write_tables
from ..errors import ConfigError, check_number
from ..results.tables import read_tables
from .common import add_sweep_arg, sweep_path

DEFAULT_FRACTIONS = "0.1,0.25,0.5,1.0"


def add_parser(sub) -> None:
    p = sub.add_parser("discovery", help="re-run each best configuration with only a share of the poisons found "
                                         "(the rest left in the retain set), and probe for relearning")
    add_sweep_arg(p)
    p.add_argument("--fractions", default=DEFAULT_FRACTIONS,
                   help=f"ascending shares of the poisons found, in (0, 1] (default {DEFAULT_FRACTIONS})")
    p.add_argument("--seeds", type=int, default=1, help="fresh unlearning seeds per method and share (default 1)")
    p.add_argument("--relearn", type=float, default=0.5,
                   help="relearning probe after each run: fine-tuning on the poison-free retain set for this share "
                        "of the sweep's budget, in [0, 1] (default 0.5; 0: no probe)")
    p.add_argument("--relearn-lr", type=float, default=None,
                   help="the probe's learning rate (SGD, momentum 0.9; default: 0.1 x the scenario's training rate)")
    p.add_argument("--methods", default=None, help="comma-separated subset of the sweep's methods (default: all)")
    p.add_argument("--margin", type=float, default=D.MARGIN, help=f"equivalence margin (default {D.MARGIN})")
    p.add_argument("--alpha", type=float, default=D.ALPHA, help=f"family-wise level (default {D.ALPHA})")
    p.add_argument("--tolerance", type=float, default=None, help="accuracy tolerance vs retrain (default: sweep's)")
    p.set_defaults(func=run, writes_sweep=True)


def run(args: argparse.Namespace) -> int:
    """Validate everything (one-line errors, exit 2) before anything runs."""
    fractions = parse_fractions(args.fractions)
    check_number("seeds", args.seeds, lo=1, hi=D.MAX_SEEDS, integer=True, what="fresh seeds per method and share")
    relearn = check_relearn(args.relearn)
    if args.relearn_lr is not None:
        check_number("relearn_lr", args.relearn_lr, lo=0, hi=10, lo_open=True, what="a learning rate")
    D.check_margin(args.margin)
    D.check_alpha(args.alpha)
    if args.tolerance is not None:
        D.check_tolerance(args.tolerance)
    sweep = sweep_path(args)
    meta, trials, _, _ = read_tables(sweep)
    if not ATTACKS.get(meta["attack"], "attack").discoverable:
        raise ConfigError("sweep", str(sweep), "a sweep whose attack judges each poison (Gaussian poisoning): "
                          "discovery splits the held-out poisons into found and hidden")
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] or None
        if methods is None:
            raise ConfigError("methods", args.methods, "comma-separated methods of the sweep (or leave it out: all)")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rows = run_discovery(sweep, meta, trials, fractions, args.seeds, relearn, methods, log, args.relearn_lr)
    tol = meta["config"].get("tolerance", D.TOLERANCE) if args.tolerance is None else args.tolerance
    out = write_tables(sweep, rows, trials, meta, args.alpha, tol, args.margin)
    print(out["discovery_summary"].to_string(index=False, na_rep="–"))
    print(str(sweep / "discovery"))
    return 0
