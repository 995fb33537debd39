"""The `raysweep` command line: one module per verb, each with its `add_parser` and `run`.

    raysweep prepare [--scenario default|tiny|FILE.yaml] [--set train.epochs=5] [--store DIR] [--json]
    raysweep unlearn [--scenario ...] --method gd [--budget 0.1] [--hp lr=1e-2 ...] [--json]
    raysweep sweep   [--scenario ...] --methods gd,ngd,... [--trials 8] [--budget 0.1] [--address auto] ...
    raysweep export  SWEEP [--format parquet|csv] [--out DIR]
    raysweep report  SWEEP [--out DIR] [--seeds N]
    raysweep curve   SWEEP [--budgets 0.02,...,1.0] [--seeds N]     the budget axis up to retraining's compute
    raysweep discovery SWEEP [--fractions 0.1,...,1.0] [--relearn 0.5]   partial discovery, relearning
    raysweep explain SWEEP [--draws 3] [--m 32]                  H1 / H2: why unlearning fails
    raysweep attack-search [--mode worst|boundary] [--space eps2=0.01:1:log,k=32:1024] [--points 10]
                                                     the attacker's side: poisons against the tuned defenders
    raysweep demo    [--trials 3] [--budget 0.1]     prepare + sweep every method + report, on the bundled data

Bad input prints one line `raysweep: error: ...` naming the field and exits with code 2, before
anything trains or Ray starts.
"""
from __future__ import annotations

import sys

from ..errors import RaysweepError
from ..runtime import quick_exit
from . import attack_search, curve, demo, discovery, explain, export, prepare, report, sweep, unlearn
from .common import Parser, check_targets

VERBS = (prepare, unlearn, sweep, export, report, curve, discovery, explain, attack_search, demo)


def build_parser() -> Parser:
    ap = Parser(prog="raysweep", description="Stress-test machine-unlearning methods against data "
                                 "poisoning: poison, train the references, tune every unlearner, judge.")
    sub = ap.add_subparsers(dest="verb", required=True)
    for verb in VERBS:
        verb.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_targets(args)
        return args.func(args)
    except RaysweepError as e:
        print(f"raysweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raysweep: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The console script (and `python -m raysweep.cli`): `main`, then `runtime.quick_exit`."""
    quick_exit(main())
