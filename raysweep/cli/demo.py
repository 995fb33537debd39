"""`raysweep demo`: the main job on the bundled data: prepare, sweep every method, report, print the verdict.

    raysweep demo [--trials 3] [--budget 0.1]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from .. import defaults
from ..errors import check_number
from ..report.build import build_report
from ..sweep.setup import SweepConfig
from . import sweep
from .common import Parser, add_common

VERDICT_COLUMNS = ["method", "effect", "p_fails", "p_removes", "test_acc", "budget_spent", "outcome", "verdict"]


def add_parser(sub) -> None:
    D = SweepConfig(methods=[])
    p = sub.add_parser("demo", help="the main job on the bundled data: prepare, sweep every method, report")
    add_common(p)
    p.add_argument("--trials", type=int, default=defaults.DEMO_TRIALS,
                   help=f"trials per method (default {defaults.DEMO_TRIALS}: the paper's grid points first, then TPE)")
    p.add_argument("--budget", type=float, default=D.budget, help=f"budget cap (default {D.budget})")
    p.add_argument("--scenario", default="default", help=argparse.SUPPRESS)
    p.set_defaults(func=run, writes_store=True)


def run(args) -> int:
    t0 = time.perf_counter()
    defaults.check_budget(args.budget)  # the sweep checks them again; here they are the demo's own options
    check_number("trials", args.trials, lo=1, hi=defaults.MAX_TRIALS, integer=True)
    sub = Parser(prog="raysweep").add_subparsers()
    sweep.add_parser(sub)
    sweep_args = sub.choices["sweep"].parse_args(
        [f"--scenario={args.scenario}", "--methods=all", f"--trials={args.trials}", f"--budget={args.budget}",
         f"--store={args.store}", f"--device={args.device}", *([f"--threads={args.threads}"] if args.threads else [])])
    code = sweep.run(sweep_args)
    if code != 0:
        return code
    report = build_report(sweep_args.sweep_root, demo=True)  # within 10 minutes: no re-runs (its power line says)
    v = pd.read_csv(Path(report).parent / "verdict.csv")
    print()
    print(v[VERDICT_COLUMNS].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print("\n" + next(line for line in Path(report).read_text().splitlines() if line.startswith("power:")))
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s; report: {report}")
    return 0
