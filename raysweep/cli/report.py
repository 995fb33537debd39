"""`raysweep report`: verdict table, figures, Markdown + HTML, from a sweep's tables.

    raysweep report SWEEP [--out DIR] [--seeds N] [--scenario-seeds M] [--margin DELTA] [--alpha A]
"""
from __future__ import annotations

from pathlib import Path

from .. import defaults
from ..attack_search import PLAN_FILE
from ..errors import check_number
from ..report.build import attack_search_report, build_report
from .common import add_sweep_arg, sweep_path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="verdict table, figures, Markdown + HTML, from a sweep's tables")
    add_sweep_arg(p, "a sweep directory, an export folder, a sweep name under --storage-path, or an attack "
                     "search's folder (raysweep attack-search)")
    p.add_argument("--out", default=None, help="output folder (default: SWEEP/report)")
    p.add_argument("--seeds", type=int, default=None,
                   help="re-run each best configuration on N fresh unlearning seeds; the verdict pools them "
                        f"(default {defaults.REPORT_SEEDS}; 0: the selected trial judges itself)")
    p.add_argument("--scenario-seeds", type=int, default=None,
                   help="also on M fresh scenario seeds (new poisons, θ_initial, θ_retrain: prepared once, cached; "
                        f"default {defaults.REPORT_SCENARIO_SEEDS}: the power docs/verdict.md gives)")
    p.add_argument("--margin", type=float, default=None,
                   help=f"equivalence margin of 'removes', a share of θ_initial's effect (default {defaults.MARGIN}; "
                        "docs/verdict.md)")
    p.add_argument("--alpha", type=float, default=defaults.ALPHA,
                   help=f"family-wise level of the poison test (default {defaults.ALPHA})")
    p.add_argument("--tolerance", type=float, default=None, help="accuracy tolerance vs retrain (default: sweep's)")
    p.set_defaults(func=run, writes_sweep=True)


def run(args) -> int:
    if (Path(args.sweep) / PLAN_FILE).is_file():  # an attack search's folder: its own report
        print(attack_search_report(args.sweep, args.out))
        return 0
    defaults.check_alpha(args.alpha)
    asked = args.seeds is not None or args.scenario_seeds is not None
    seeds = defaults.REPORT_SEEDS if args.seeds is None else args.seeds
    scenario_seeds = defaults.REPORT_SCENARIO_SEEDS if args.scenario_seeds is None else args.scenario_seeds
    check_number("seeds", seeds, lo=0, hi=defaults.MAX_SEEDS, integer=True)
    check_number("scenario_seeds", scenario_seeds, lo=0, hi=defaults.MAX_SEEDS, integer=True)
    margin = defaults.check_margin(defaults.MARGIN if args.margin is None else args.margin)
    if args.tolerance is not None:
        defaults.check_tolerance(args.tolerance)
    path = build_report(sweep_path(args), args.out, args.alpha, args.tolerance, seeds, margin=margin,
                        scenario_seeds=scenario_seeds, reruns_optional=not asked)
    print(path)
    return 0
