"""The budget curve: is unlearning any better than retraining when given more compute?

    raysweep curve SWEEP --budgets 0.02,0.05,0.1,0.25,0.5,1.0 [--seeds N] [--methods gd,ga]   (cli/curve.py)

Each method's best configuration (as the sweep chose it) is re-run at each budget with N fresh
unlearning seeds (the sweep's seed + 1 .. + N), as Ray tasks on the kind of cluster the sweep used
(run.py); every finished run is one file under SWEEP/curve/runs/, so a killed call resumes. Then
the tidy tables, the three-way verdict at each budget, the summary (table.py) and the figure
(figure.py) go to SWEEP/curve/; `raysweep report` shows them when present. docs/curve.md.
"""
from __future__ import annotations

from .. import defaults as D
from ..artifacts import atomic_write_table, open_store, read_manifest
from ..attacks import ATTACKS
from ..prepare.scenario import store_key
from ..sweep.setup import SweepConfig, init_ray, trial_resources
from ..verdict.judge import config_label
from .figure import curve_figure
from .run import Plan, read_cells, run_cells, say
from .table import budget_verdicts, reference_rows, summary_table, summary_view, tidy_table


def run_curve(plan: Plan, trials, address: str | None, cfg: SweepConfig, alpha: float, tolerance: float | None,
              margin: float, log=None) -> int:
    """Run the missing cells on the Ray cluster at `address` (None: a private local one) with `cfg`'s
    per-run resources, then write the tables and the figure and print the summary. Returns 1 if a cell
    failed, else 0."""
    import ray

    log = log or say
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
    configs = {m: config_label(plan.best.loc[m].drop(labels=["cap_share"], errors="ignore")) for m in plan.ids}
    tidy = tidy_table(cells, reference_rows(trials, manifest), configs, cls.item_keys)
    tol = tolerance if tolerance is not None else meta["config"].get("tolerance", D.TOLERANCE)
    verdict = budget_verdicts(cells, trials, meta, alpha, tol, margin, plan.best)
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
