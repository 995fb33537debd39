"""`raysweep export`: a sweep's trials, history and per-poison scores as Parquet or CSV tables.

    raysweep export SWEEP [--format parquet|csv] [--out DIR]
"""
from __future__ import annotations

from ..results.tables import export
from .common import add_sweep_arg, sweep_path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a sweep's trials and history as Parquet or CSV tables")
    add_sweep_arg(p, "a sweep directory (or a name under --storage-path)")
    p.add_argument("--format", default="parquet", help="parquet (default) or csv")
    p.add_argument("--out", default=None, help="output folder (default: the sweep directory)")
    p.set_defaults(func=run)


def run(args) -> int:
    for p in export(sweep_path(args), args.format, args.out):
        print(p)
    return 0
