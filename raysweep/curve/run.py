"""Run the budget curve's cells: each method's best configuration x budget x fresh seed, as Ray tasks.

One cell = one unlearning run of a method's best configuration (chosen by the sweep) at one budget
with one unlearning seed, evaluated like a re-run of `raysweep report --seeds` (runs.py
`run_config`, with the curve's budget). Each finished cell is one JSON file written atomically by the
driver under SWEEP/curve/runs/; a cell whose file exists, for the same configuration, is skipped, so
a killed `raysweep curve` resumes where it stopped. docs/curve.md gives the design.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from ..artifacts import atomic_write_text, open_store
from ..attacks import ATTACKS
from ..errors import ConfigError, RaysweepError
from ..prepare.scenario import Scenario
from ..registry import load_plugins, loaded_plugins
from ..results.tables import best_rows
from ..runs import best_hparams, cached_scenario, is_cached, run_config
from ..runtime import node_id
from ..sweep.trainable import TrialSpec

CURVE_DIR = "curve"
RUNS_DIR = "runs"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_budgets(text: str) -> list[float]:
    """'0.02,0.05,0.1' -> [0.02, 0.05, 0.1]: each a fraction of the training compute in (0, 1],
    ascending, each once; anything else is one ConfigError naming --budgets."""
    allowed = ("comma-separated fractions of θ_initial's training compute in (0, 1], ascending, each once "
               "(e.g. 0.02,0.05,0.1,0.25,0.5,1.0)")
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ConfigError("budgets", text, allowed) from None
    ok = bool(values) and all(math.isfinite(v) and 0 < v <= 1 for v in values)
    if not ok or any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError("budgets", text, allowed)
    return values


def config_id(method: str, hparams: dict, scenario: str, extra: dict | None = None) -> str:
    """Fingerprint of what a cell runs: a changed configuration (a resumed sweep, a re-tuned budget)
    re-runs it. `extra`: what else decides the run (tuned mode: the cap share it was tuned with)."""
    what = {"method": method, "hp": hparams, "scenario": scenario, **({"extra": extra} if extra else {})}
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cell_file(curve: Path, label: str, budget: float, seed: int) -> Path:
    return curve / RUNS_DIR / f"{label}__b{budget:.10g}__s{seed}.json"


@dataclass(frozen=True)
class Config:
    """What runs in a row of the curve: `method` with `hp`, given `share` of the budget (tuned: the share
    the budget's search chose; reuse and controls: all of it); `control`: a sanity row (controls.py)."""

    method: str
    hp: dict
    share: float = 1.0
    control: bool = False
    id: str = ""


@dataclass
class Plan:
    """What one `raysweep curve` call asks for: one configuration per row label (a method, or a
    control's label) and budget; `best` is the sweep's best row per method (its labels)."""

    sweep: Path
    meta: dict
    best: pd.DataFrame                  # the sweep's best row per method (results/tables.py best_rows)
    methods: list[str]
    budgets: list[float]
    seeds: list[int]
    configs: dict = field(default_factory=dict)  # (label, budget) -> Config
    mode: str = "reuse"                 # reuse: the sweep's pick at every budget; tune: a search per budget

    @property
    def curve(self) -> Path:
        return self.sweep / CURVE_DIR

    @property
    def metric(self) -> str:
        """The attack's own metric, shown in the progress lines."""
        return ATTACKS.get(self.meta["attack"], "attack").metric

    def cells(self) -> list[tuple[str, float, int]]:
        return [(lab, b, s) for (lab, b) in self.configs for s in self.seeds]

    def done(self, label: str, budget: float, seed: int) -> bool:
        f = cell_file(self.curve, label, budget, seed)
        if not f.is_file():
            return False
        try:
            return json.loads(f.read_text()).get("config_id") == self.configs[(label, budget)].id
        except (OSError, json.JSONDecodeError):
            return False


def method_config(method: str, row: pd.Series, scenario: str, tuned: bool) -> Config:
    """A method's configuration from a best row: reuse mode gives it the whole budget (the sweep's
    cap_share left out, as before); tuned mode keeps the share its budget's search chose."""
    hp = best_hparams(row)
    share = row.get("cap_share")
    share = 1.0 if not tuned or share is None or pd.isna(share) else float(share)
    extra = {"share": share} if tuned else None
    return Config(method, hp, share, False, config_id(method, hp, scenario, extra))


def make_plan(sweep: Path, meta: dict, trials: pd.DataFrame, budgets: list[float], n_seeds: int,
              methods: list[str] | None = None, tuned: dict | None = None, controls: dict | None = None) -> Plan:
    """Every method with a best configuration (or those asked for) at every budget: the sweep's own
    pick (reuse), or with `tuned` (budget -> that budget's best rows) each budget's pick; `controls`
    (label -> (Config, budgets)) add the sanity rows. Fresh seeds = sweep seed + 1..N."""
    best = best_rows(trials)
    have = [m for m in dict.fromkeys(trials.method) if m in best.index]
    if methods:
        for m in methods:
            if m not in have:
                raise ConfigError("methods", m, f"a method with a finished best trial in this sweep: "
                                  f"{', '.join(have) or 'none'}")
    chosen = list(methods or have)
    if not chosen:
        raise RaysweepError(f"the sweep {sweep} has no finished best trial to re-run")
    s0 = int(meta["config"]["seed"])
    configs = {}
    for b in budgets:
        rows = best if tuned is None else tuned[b]
        for m in chosen:
            if m in rows.index:  # a tuned budget whose search found no finished trial of m: no row
                configs[(m, b)] = method_config(m, rows.loc[m], meta["scenario"], tuned is not None)
    for label, (cfg, at) in (controls or {}).items():
        for b in at:
            configs[(label, b)] = cfg
    return Plan(Path(sweep), meta, best, chosen, budgets, [s0 + i for i in range(1, n_seeds + 1)], configs,
                "reuse" if tuned is None else "tune")


# ---- the Ray task ------------------------------------------------------------------------------
def _cell(spec, box: list, cfg: Config, meta: dict, seed: int, budget: float, threads: int) -> dict:
    """In a Ray worker: load the scenario once per worker process (runs.py's cache; the
    bundle is fetched from the object store only then), run the cell, return its row."""
    load_plugins(spec.plugins)  # a plug-in method or attack registers itself in this worker too
    torch.set_num_threads(max(1, threads))
    if box and not is_cached(spec.scenario_hash):  # the worker's scenario cache (runs.py)
        import ray

        spec = replace(spec, bundle=ray.get(box[0]))
    scen = cached_scenario(spec)
    t0 = time.perf_counter()
    row = pd.Series({f"hp_{k}": v for k, v in cfg.hp.items()}, dtype=object)
    out = run_config(scen, row, cfg.method, meta, seed, lambda m: None, budget=budget * cfg.share)
    return {**out, "spent_sample_grads": out["budget_spent"] * scen.train_compute,
            "cell_wall_s": time.perf_counter() - t0, "node_id": node_id(), "pid": os.getpid()}


def run_cells(plan: Plan, res: dict, address: str | None, log=say) -> dict:
    """Run every cell of `plan` not yet done, in parallel on the connected Ray cluster with `res`
    ({"cpu", "gpu"}) per cell; each finished cell is written at once. Returns counts."""
    import ray

    cells = plan.cells()
    todo = [c for c in cells if not plan.done(*c)]
    n, skipped = len(cells), len(cells) - len(todo)
    rows = len({lab for lab, _ in plan.configs})
    log(f"[curve] {rows} row(s) ({len(plan.methods)} method(s) + controls) x up to {len(plan.budgets)} budget(s) x "
        f"{len(plan.seeds)} seed(s) = {n} cells; {skipped} already done (skipped), {len(todo)} to run, "
        f"{res['cpu']:g} CPU / {res['gpu']:g} "
        f"GPU each -> {plan.curve / RUNS_DIR}")
    if not todo:
        return {"cells": n, "skipped": skipped, "ran": 0, "failed": 0}
    meta = plan.meta
    device = "cuda" if res["gpu"] > 0 else "cpu"
    box: list = []
    if address:  # a cluster: workers read the artifact from the (shared) store, like the sweep's trials
        spec = TrialSpec(method="", budget=0.0, floor=0.0, device=device, store=open_store(meta["store"]),
                         scenario_hash=meta["scenario"], plugins=loaded_plugins())
    else:  # local: the artifact goes into the object store once
        spec = TrialSpec(method="", budget=0.0, floor=0.0, device=device, scenario_hash=meta["scenario"],
                         plugins=loaded_plugins())
        box = [ray.put(Scenario.load(open_store(meta["store"]), meta["scenario"], "cpu").bundle())]
    small = {"config": {"seed": meta["config"]["seed"], "budget": meta["config"]["budget"]}}
    # max_calls=0: a worker keeps its scenario for the next cell, GPU tasks too (Ray's default there is 1)
    task = ray.remote(max_calls=0)(_cell).options(num_cpus=res["cpu"], num_gpus=res["gpu"], max_retries=1,
                                                  retry_exceptions=True)
    threads = max(1, int(math.floor(res["cpu"])))
    refs = {}
    for lab, b, s in todo:
        refs[task.remote(spec, box, plan.configs[(lab, b)], small, s, b, threads)] = (lab, b, s)
    pending = list(refs)
    try:
        finished, failed = _collect(plan, refs, pending, skipped, n, log)
    except KeyboardInterrupt:
        log(f"[curve] interrupted: the finished cells are kept in {plan.curve / RUNS_DIR}; run the same command "
            "again to run only the others")
        raise
    return {"cells": n, "skipped": skipped, "ran": finished, "failed": failed}


def _collect(plan: Plan, refs: dict, pending: list, skipped: int, n: int, log) -> tuple[int, int]:
    """Take each cell's result as it finishes and write its file at once. Returns (finished, failed)."""
    import ray

    finished = failed = 0
    meta = plan.meta
    t0 = time.perf_counter()
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            m, b, s = refs[ref]
            try:
                out = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a failed cell is reported, the others go on
                failed += 1
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                log(f"[curve] {m} budget {b:g} seed {s}: failed after a retry: {msg}")
                continue
            finished += 1
            cfg = plan.configs[(m, b)]
            record = {"method": m, "budget": b, "seed": s, "config_id": cfg.id, "scenario": meta["scenario"],
                      "runs_method": cfg.method, "hp": cfg.hp, "share": cfg.share, "control": cfg.control,
                      **out, "finished": time.time()}
            atomic_write_text(cell_file(plan.curve, m, b, s), json.dumps(record, default=_plain))
            log(f"[curve] {m} budget {b:g} seed {s}: {_brief(out, plan.metric)}, {out['cell_wall_s']:.1f}s  done "
                f"{skipped + finished}/{n} ({time.perf_counter() - t0:.0f}s)")
    return finished, failed


def _plain(v):
    return v.item() if hasattr(v, "item") else str(v)


def _brief(out: dict, metric: str) -> str:
    parts = []
    for key, label, fmt in ((metric, metric, "{:+.3g}"), ("test_acc", "test acc", "{:.3f}"),
                            ("budget_spent", "spent", "{:.3g}")):
        v = out.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            parts.append(f"{label} {fmt.format(v)}")
    return ", ".join(parts) + (" (diverged)" if out.get("diverged") else "")


def read_cells(plan: Plan) -> list[dict]:
    """Every finished cell under SWEEP/curve/runs/ whose configuration is its row's current one at its
    budget: the seeds of this call and of earlier ones (a later call with more seeds adds rows); cells
    of a configuration no longer chosen (a resumed sweep, a re-tuned budget, another mode) are left out."""
    rows = []
    for f in sorted((plan.curve / RUNS_DIR).glob("*.json")):
        try:
            r = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        cfg = plan.configs.get((r.get("method"), r.get("budget")))
        if cfg is not None and cfg.id == r.get("config_id"):
            rows.append(r)
    return rows
