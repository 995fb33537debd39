"""The curve's searches: one sweep per budget, so that each budget's row is tuned at that budget.

A learning rate chosen so that 10 % of the training compute keeps accuracy is not the one a method
would use with all of it, so `raysweep curve` (tuned mode, the default) runs, for each budget b, the
same search as `raysweep sweep` (sweep/search.py `run_sweep`: every method, per-method Optuna, ASHA
on the budget axis, chosen on the tuning half) with its cap at b, into SWEEP/curve/searches/b<b>/.
A search per budget rather than one multi-fidelity search selected per budget: a trial's
hyperparameters are drawn once, so a multi-fidelity search would judge budget 0.02 only on trials
drawn for 1.0 and stopped early (ASHA keeps the ones that look best early, not the best at 0.02),
and its cap_share would mean another thing at each rung; docs/curve.md gives the costs.

Resumable: a budget whose search finished (its exported trials table exists) is read, not run; one
that was cut resumes (`run_sweep(resume=True)`), so the same command continues where it stopped.
The sweep's own search is reused at its own cap when it ran at least as many trials per method.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..results.layout import read_sweep_meta
from ..results.tables import best_rows, export, read_tables
from ..sweep.search import run_sweep
from ..sweep.setup import SweepConfig, check_resume, resources

SEARCHES = "searches"


def search_name(budget: float) -> str:
    return f"b{budget:g}"


def search_root(sweep: Path, budget: float) -> Path:
    return Path(sweep) / "curve" / SEARCHES / search_name(budget)


def search_config(meta: dict, methods: list[str], budget: float, trials: int, sweep: Path,
                  address: str | None, cpus: float, gpus: float | None, device: str) -> SweepConfig:
    """The sweep's own options (seed, tolerance, schedule with its checkpoint spacing and grace, spaces,
    discovery) at cap `budget`."""
    saved = meta.get("config") or {}
    return SweepConfig(methods=list(methods), trials=int(trials), budget=float(budget), name=search_name(budget),
                       storage_path=str(Path(sweep) / "curve" / SEARCHES), address=address, cpus_per_trial=cpus,
                       gpus_per_trial=gpus, seed=int(saved.get("seed", 0)),
                       tolerance=float(saved.get("tolerance", SweepConfig.tolerance)),
                       schedule=saved.get("schedule", SweepConfig.schedule),
                       checkpoint_every=float(saved.get("checkpoint_every", SweepConfig.checkpoint_every)),
                       asha_grace=float(saved.get("asha_grace", SweepConfig.asha_grace)),
                       spaces_dir=saved.get("spaces_dir"), device=device, evidence="best",
                       discovery=float(saved.get("discovery", 1.0))).check()


def check_finished(root: Path, budget: float, n: int, methods: list[str]) -> int:
    """A finished search stands for this call only if it ran >= n trials of every method asked; else one
    line naming the field (the search is kept: remove its folder to search again). Returns its trials."""
    cfg = read_sweep_meta(root).get("config") or {}
    have = int(cfg.get("trials", 0))
    if have < n:
        raise ConfigError("trials", n, f"at most {have}, the trials per method of the finished search at budget "
                          f"{budget:g} ({root}); or remove that folder to search again")
    missing = [m for m in methods if m not in (cfg.get("methods") or [])]
    if missing:
        raise ConfigError("methods", ",".join(missing), f"methods of the finished search at budget {budget:g}: "
                          f"{', '.join(cfg.get('methods') or [])} ({root}); or remove that folder to search again")
    return have


def reusable(meta: dict, trials: pd.DataFrame, budget: float, n: int, methods: list[str]) -> bool:
    """The sweep itself stands for the search at its own cap when it ran >= n trials of every method."""
    saved = meta.get("config") or {}
    if float(saved.get("budget", -1)) != float(budget) or int(saved.get("trials", 0)) < n:
        return False
    return set(methods) <= set(best_rows(trials).index)


def tuned_bests(sweep: Path, meta: dict, trials: pd.DataFrame, scen, budgets: list[float], n: int,
                methods: list[str], run_cfg: dict, log) -> tuple[dict, dict]:
    """budget -> that budget's best rows per method, running or resuming the searches still missing.
    Returns (bests, counts) with counts of searches read, reused, run."""
    bests, counts = {}, {"read": 0, "reused": 0, "ran": 0, "cut": 0, "trials": {}}
    for b in budgets:
        if reusable(meta, trials, b, n, methods):
            bests[b] = best_rows(trials)
            counts["reused"] += 1
            counts["trials"][f"{b:g}"] = int(meta["config"]["trials"])
            log(f"[curve] budget {b:g}: the sweep's own search ({meta['config']['trials']} trials per method at its "
                "cap) stands for it")
            continue
        root = search_root(sweep, b)
        if (root / "trials.parquet").is_file() and (root / "scores.parquet").is_file():  # export wrote all three
            counts["trials"][f"{b:g}"] = check_finished(root, b, n, methods)
            counts["read"] += 1
        else:
            cfg = search_config(meta, methods, b, n, sweep, **run_cfg)
            resources(cfg)
            resume = (root / "sweep.json").is_file()
            if resume:  # a search cut under other options: named here, with what a curve's user can do
                check_resume(cfg, scen.hash, f"the options of the call that started it, or remove {root} to "
                             "search again")
            log(f"[curve] budget {b:g}: {'resuming' if resume else 'running'} its search, {n} trials per method "
                f"-> {root}")
            _, complete = run_sweep(scen, cfg, meta["store"], resume=resume, device=run_cfg["device"])
            if not complete:
                counts["cut"] += 1
                log(f"[curve] budget {b:g}: its search was cut; run the same command again to continue it")
                return bests, counts
            export(root)
            counts["ran"] += 1
            counts["trials"][f"{b:g}"] = n
        _, t, _, _ = read_tables(root)
        bests[b] = best_rows(t)
    return bests, counts
