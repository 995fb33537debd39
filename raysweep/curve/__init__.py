"""The budget curve: is unlearning any better than retraining when given more compute?

    raysweep curve SWEEP --budgets 0.02,0.05,0.1,0.25,0.5,1.0 [--seeds N] [--methods gd,ga]
                   [--address auto] [--cpus-per-trial C] [--gpus-per-trial G] [--device cpu]

Each method's best configuration (as the sweep chose it) is re-run at each budget with N fresh
unlearning seeds (the sweep's seed + 1 .. + N), as Ray tasks on the kind of cluster the sweep used
(run.py); every finished run is one file under SWEEP/curve/runs/, so a killed call resumes. Then
the tidy tables, the three-way verdict at each budget, the summary (table.py) and the figure
(figure.py) go to SWEEP/curve/; `raysweep report` shows them when present. docs/curve.md.
"""
from __future__ import annotations

import argparse

from .. import defaults as D

DEFAULT_BUDGETS = ",".join(f"{b:g}" for b in D.CURVE_BUDGETS)


def add_parser(sub) -> None:
    """Register `raysweep curve` on the CLI's subparsers (raysweep/cli.py build_parser)."""
    from ..cli import DEFAULT_STORE

    p = sub.add_parser("curve", help="re-run each method's best configuration at budgets up to retraining's compute "
                                     "(1.0) on fresh seeds: tables, verdict per budget, figure")
    p.add_argument("sweep", help="a sweep directory, or a sweep name under --storage-path")
    p.add_argument("--budgets", default=DEFAULT_BUDGETS,
                   help=f"ascending fractions of θ_initial's training compute in (0, 1] (default {DEFAULT_BUDGETS})")
    p.add_argument("--seeds", type=int, default=1, help="fresh unlearning seeds per method and budget (default 1)")
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
    p.add_argument("--store", default=DEFAULT_STORE)
    p.add_argument("--storage-path", default=None)
    p.set_defaults(func=cmd_curve)


def cmd_curve(args: argparse.Namespace) -> int:
    """Validate everything (one-line errors, exit 2) before Ray starts or anything runs."""
    from ..cli import _sweep_path
    from ..errors import ConfigError, check_number
    from ..report.build import read_tables
    from .run import make_plan, parse_budgets

    budgets = parse_budgets(args.budgets)
    check_number("seeds", args.seeds, lo=1, integer=True, what="fresh unlearning seeds per method and budget")
    D.check_margin(args.margin)
    D.check_alpha(args.alpha)
    if args.tolerance is not None:
        D.check_tolerance(args.tolerance)
    if args.device not in (None, "auto", "cpu", "cuda"):
        raise ConfigError("device", args.device, "auto, cuda or cpu")
    sweep = _sweep_path(args)
    meta, trials, _, _ = read_tables(sweep)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    plan = make_plan(sweep, meta, trials, budgets, args.seeds, methods)
    return run_curve(plan, trials, args, args.margin)


def _resources(meta: dict, args) -> tuple[str | None, object]:
    """The sweep's Ray address and per-run resources, each overridable (sweep/setup.py SweepConfig)."""
    from ..errors import check_number
    from ..sweep.setup import SweepConfig

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


def run_curve(plan, trials, args, margin: float, log=None) -> int:
    """Run the missing cells, then write the tables, the figure and print the summary."""
    import ray

    from ..artifacts import atomic_write_table, open_store, read_manifest
    from ..attacks import ATTACKS
    from ..report.verdict import _config
    from ..scenario import store_key
    from ..sweep.setup import init_ray, trial_resources
    from .figure import curve_figure
    from .run import read_cells, run_cells, say
    from .table import budget_verdicts, reference_rows, summary_table, summary_view, tidy_table

    log = log or say
    address, cfg = _resources(plan.meta, args)
    init_ray(address, None)
    res = trial_resources(cfg, ray.cluster_resources())  # a GPU the cluster lacks fails here, before any run
    counts = run_cells(plan, res, address, log)
    meta, curve = plan.meta, plan.curve
    cls = ATTACKS.get(meta["attack"], "attack")
    try:
        manifest = read_manifest(open_store(meta["store"]).open_dir(store_key(meta["scenario"])))
    except Exception:  # noqa: BLE001 - the wall-time ratio is optional
        manifest = {}
    cells = read_cells(plan)
    configs = {m: _config(plan.best.loc[m].drop(labels=["cap_share"], errors="ignore")) for m in plan.ids}
    tidy = tidy_table(cells, reference_rows(trials, manifest), configs, cls.item_keys)
    tol = args.tolerance if args.tolerance is not None else meta["config"].get("tolerance", D.TOLERANCE)
    verdict = budget_verdicts(cells, trials, meta, args.alpha, tol, margin, plan.best)
    summary = summary_table(verdict, tidy)
    atomic_write_table(tidy, curve / "curve.parquet")
    atomic_write_table(tidy, curve / "curve.csv")
    atomic_write_table(verdict, curve / "curve_verdict.csv")
    atomic_write_table(summary, curve / "curve_summary.csv")
    fig = curve_figure(verdict, curve, cls.effect_header, tol)
    log(f"[curve] {counts['ran']} run, {counts['skipped']} skipped, {counts['failed']} failed; tables and "
        f"{fig.name} in {curve}")
    print(summary_view(summary).to_string(index=False, na_rep="–", float_format=lambda v: f"{v:.3g}"))
    print(str(curve))
    return 1 if counts["failed"] else 0
