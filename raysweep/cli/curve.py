"""`raysweep curve`: each method tuned and judged at budgets up to retraining's compute, with sanity rows.

    raysweep curve SWEEP --budgets 0.02,0.05,0.1,0.25,0.5,1.0 [--trials 8] [--seeds N] [--methods gd,ga]
                   [--reuse] [--no-controls]
                   [--address auto] [--cpus-per-trial C] [--gpus-per-trial G] [--device cpu]
"""
from __future__ import annotations

import argparse

from .. import defaults as D
from ..curve import run_curve
from ..curve.controls import check_labels
from ..curve.run import make_plan, parse_budgets
from ..errors import ConfigError, check_number
from ..results.tables import read_tables
from ..sweep.setup import SweepConfig, check_address
from .common import add_sweep_arg, sweep_path

DEFAULT_BUDGETS = ",".join(f"{b:g}" for b in D.CURVE_BUDGETS)


def add_parser(sub) -> None:
    p = sub.add_parser("curve", help="tune each method at each budget up to retraining's compute (1.0), re-run each "
                                     "pick on fresh seeds beside sanity rows: tables, verdict per budget, figure")
    add_sweep_arg(p)
    p.add_argument("--budgets", default=DEFAULT_BUDGETS,
                   help=f"ascending fractions of θ_initial's training compute in (0, 1] (default {DEFAULT_BUDGETS})")
    p.add_argument("--seeds", type=int, default=1, help="fresh unlearning seeds per method and budget (default 1)")
    p.add_argument("--trials", type=int, default=D.TRIALS,
                   help=f"trials per method in each budget's search (default {D.TRIALS})")
    p.add_argument("--reuse", action="store_true",
                   help="no search per budget: re-run the sweep's own pick (tuned at its cap) at every budget")
    p.add_argument("--no-controls", action="store_true",
                   help="leave out the sanity rows (retraining from scratch within each budget; EU-k with every "
                        "layer at 1.0)")
    p.add_argument("--methods", default=None, help="comma-separated subset of the sweep's methods (default: all)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to run on (auto, HOST:PORT, ray://...; local: a private local one); "
                        "default: the sweep's")
    p.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per run (default: the sweep's)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per run (default: the sweep's)")
    p.add_argument("--device", default=None, help="auto or cpu (cpu: runs never take a GPU; default: the sweep's)")
    p.add_argument("--margin", type=float, default=D.MARGIN,
                   help=f"equivalence margin of 'removes', a share of θ_initial's effect (default {D.MARGIN})")
    p.add_argument("--alpha", type=float, default=D.ALPHA, help=f"family-wise level at each budget (default {D.ALPHA})")
    p.add_argument("--tolerance", type=float, default=None, help="accuracy tolerance vs retrain (default: sweep's)")
    p.set_defaults(func=run, writes_sweep=True)


def run(args: argparse.Namespace) -> int:
    """Validate everything (one-line errors, exit 2) before Ray starts or anything runs."""
    budgets = parse_budgets(args.budgets)
    check_number("seeds", args.seeds, lo=1, hi=D.MAX_SEEDS, integer=True,
                 what="fresh unlearning seeds per method and budget")
    check_number("trials", args.trials, lo=1, hi=D.MAX_TRIALS, integer=True,
                 what="trials per method in each budget's search")
    D.check_margin(args.margin)
    D.check_alpha(args.alpha)
    if args.tolerance is not None:
        D.check_tolerance(args.tolerance)
    if args.device not in (None, "auto", "cpu", "cuda"):
        raise ConfigError("device", args.device, "auto, cuda or cpu")
    sweep = sweep_path(args)
    meta, trials, _, _ = read_tables(sweep)
    methods = None
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise ConfigError("methods", args.methods, "comma-separated methods of the sweep (or leave it out: all)")
    plan = make_plan(sweep, meta, trials, budgets, args.seeds, methods)  # --methods the sweep lacks: one line, now
    if not args.no_controls:
        check_labels(plan.methods)
    address, cfg = resources_of(meta, args)
    check_address(address)  # an unreachable or malformed address: one line, before Ray starts
    return run_curve(sweep, meta, trials, budgets, args.seeds, methods, address, cfg, args.alpha, args.tolerance,
                     args.margin, "reuse" if args.reuse else "tune", args.trials, not args.no_controls)


def resources_of(meta: dict, args) -> tuple[str | None, object]:
    """The sweep's Ray address and per-run resources, each overridable (sweep/setup.py SweepConfig)."""
    saved = meta.get("config") or {}
    address = args.address if args.address is not None else saved.get("address")
    cpus = args.cpus_per_trial if args.cpus_per_trial is not None else saved.get("cpus_per_trial") or 1.0
    cfg = SweepConfig(methods=[], cpus_per_trial=cpus,
                      gpus_per_trial=args.gpus_per_trial if args.gpus_per_trial is not None
                      else saved.get("gpus_per_trial"), device=args.device or saved.get("device") or "auto")
    check_number("cpus_per_trial", cfg.cpus_per_trial, lo=0, lo_open=True)
    if cfg.gpus_per_trial is not None:
        check_number("gpus_per_trial", cfg.gpus_per_trial, lo=0)
    return (None if address in (None, "", "local") else address), cfg
