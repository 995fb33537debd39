"""The budget curve: is unlearning any better than retraining when given more compute?

    raysweep curve SWEEP --budgets 0.02,0.05,0.1,0.25,0.5,1.0 [--trials 8] [--seeds N] [--reuse]   (cli/curve.py)

At each budget, each method's configuration is the best of a search run at that budget (tune.py; with
--reuse: the sweep's own pick at its cap), re-run with N fresh unlearning seeds (the sweep's seed + 1 ..
+ N), beside the sanity rows that must remove the poison (controls.py), as Ray tasks on the kind of
cluster the sweep used (run.py); every finished run is one file under SWEEP/curve/runs/, so a killed
call resumes. Then the tidy tables, the verdict at each budget, the summary (table.py) and the figure
(figure.py) go to SWEEP/curve/; `raysweep report` shows them when present. docs/curve.md.
"""
from __future__ import annotations

import json

import pandas as pd

from .. import defaults as D
from ..artifacts import atomic_write_table, atomic_write_text, open_store, read_manifest
from ..attacks import ATTACKS
from ..prepare.scenario import Scenario, store_key
from ..sweep.setup import SweepConfig, init_ray, trial_resources
from ..verdict.judge import config_label
from .controls import check_labels, control_configs
from .figure import curve_figure
from .run import make_plan, read_cells, run_cells, say
from .table import budget_verdicts, reference_rows, sanity, summary_table, summary_view, tidy_table
from .tune import tuned_bests


def run_curve(sweep, meta: dict, trials, budgets: list[float], n_seeds: int, methods: list[str] | None,
              address: str | None, cfg: SweepConfig, alpha: float, tolerance: float | None, margin: float,
              mode: str = "tune", n_trials: int = D.TRIALS, controls: bool = True, log=None) -> int:
    """Tuned mode: run (or read) each budget's search first (tune.py); then run the missing cells on the
    Ray cluster at `address` (None: a private local one) with `cfg`'s per-run resources, with the sanity
    rows (controls.py) unless `controls` is off; then write the tables and the figure and print the
    summary. Returns 1 if a cell failed, 130 if a search was cut, else 0."""
    import ray

    log = log or say
    init_ray(address, None)
    res = trial_resources(cfg, ray.cluster_resources())  # a GPU the cluster lacks fails here, before any run
    plan = make_plan(sweep, meta, trials, budgets, n_seeds, methods)  # checks --methods against the sweep
    if controls:
        check_labels(plan.methods)
    scen = Scenario.load(open_store(meta["store"]), meta["scenario"], "cpu")
    tuned, counts = None, {"trials": None}
    if mode == "tune":
        run_cfg = {"address": address, "cpus": cfg.cpus_per_trial, "gpus": cfg.gpus_per_trial, "device": cfg.device}
        tuned, counts = tuned_bests(plan.sweep, meta, trials, scen, budgets, n_trials, plan.methods, run_cfg, log)
        if counts["cut"]:
            return 130
    extra = control_configs(scen.cfg.train, len(scen.new_model("initial").layer_groups()), budgets,
                            meta["scenario"]) if controls else None
    plan = make_plan(sweep, meta, trials, budgets, n_seeds, methods, tuned, extra)
    per_budget = counts["trials"]
    counts = run_cells(plan, res, address, log)
    curve = plan.curve
    cls = ATTACKS.get(meta["attack"], "attack")
    try:
        manifest = read_manifest(open_store(meta["store"]).open_dir(store_key(meta["scenario"])))
    except Exception:  # noqa: BLE001 - the wall-time ratio is optional
        manifest = {}
    cells = read_cells(plan)
    configs = {key: config_label(pd.Series({**{f"hp_{k}": v for k, v in c.hp.items()},
                                             **({"cap_share": c.share} if plan.mode == "tune" else {})}))
               for key, c in plan.configs.items()}
    tidy = tidy_table(cells, reference_rows(trials, manifest), configs, cls.item_keys)
    tol = tolerance if tolerance is not None else meta["config"].get("tolerance", D.TOLERANCE)
    verdict = budget_verdicts(cells, trials, meta, alpha, tol, margin)
    summary = summary_table(verdict, tidy)
    atomic_write_table(tidy, curve / "curve.parquet")
    atomic_write_table(tidy, curve / "curve.csv")
    atomic_write_table(verdict, curve / "curve_verdict.csv")
    atomic_write_table(summary, curve / "curve_summary.csv")
    atomic_write_text(curve / "curve_plan.json", json.dumps({"mode": plan.mode, "trials_per_budget": per_budget,
                                                        "budgets": budgets, "seeds": plan.seeds,
                                                        "controls": bool(controls)}))
    fig = curve_figure(verdict, curve, cls.effect_header, tol)
    log(f"[curve] {counts['ran']} run, {counts['skipped']} skipped, {counts['failed']} failed; tables and "
        f"{fig.name} in {curve}")
    print(summary_view(summary).to_string(index=False, na_rep="–", float_format=lambda v: f"{v:.3g}"))
    print(sanity(verdict)["line"])
    print(str(curve))
    return 1 if counts["failed"] else 0
