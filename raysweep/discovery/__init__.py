"""Deletion requests as they arrive: partially discovered poisons, and effects that come back.

    raysweep discovery SWEEP --fractions 0.1,0.25,0.5,1.0 [--seeds 1] [--relearn 0.5]   (cli/discovery.py)

Each method's best configuration (as the sweep chose it) is re-run with a forget set of only a
share f of the poisons (`Scenario.discovered`: seeded, nested; the undiscovered rest stays in the
retain set), and, with --relearn r, probed afterwards: fine-tuned on the poison-free retain set for r
of the budget (runs.relearn_probe), θ_retrain probed the same way. θ_initial and θ_retrain are the
scenario's own artifacts for every f. Each finished run is one JSON file under
SWEEP/discovery/runs/, so a killed call resumes. The runs go one after the other in this process
(each uses every thread given); the judgement is the report's, per f and per part of the held-out
poisons (found, hidden, all) and after the probe (table.py). docs/discovery.md.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write_text, open_store
from ..errors import ConfigError, RaysweepError
from ..prepare.requests import check_discovery
from ..prepare.scenario import Scenario
from ..results.tables import best_rows
from ..runs import best_hparams, evaluated, relearn_probe, run_config

DIR, RUNS = "discovery", "runs"
KEEP = ("holdout_gus", "holdout_z", "holdout_tpr_two", "canary_gus", "test_acc", "val_acc", "forget_acc", "mia_tpr",
        "budget_spent", "diverged", "scores", "canary_scores", "test_correct")


def parse_fractions(text: str) -> list[float]:
    """'0.1,0.25,1' -> [0.1, 0.25, 1.0]: each in (0, 1], ascending, each once; else one ConfigError."""
    allowed = "comma-separated shares of the poisons found, in (0, 1], ascending, each once (e.g. 0.1,0.25,0.5,1.0)"
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ConfigError("fractions", text, allowed) from None
    if not values or any(not math.isfinite(v) for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError("fractions", text, allowed)
    for v in values:
        check_discovery(v, "fractions")
    return values


def check_relearn(value) -> float:
    """The probe's share of the sweep's budget: 0 (no probe) up to 1 (as much again as unlearning had)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise ConfigError("relearn", value, "a share of the sweep's budget in [0, 1] (0: no relearning probe)")
    return float(value)


def run_file(root: Path, method: str, fraction: float, seed: int) -> Path:
    return root / RUNS / f"{method}__f{fraction:.10g}__s{seed}.json"


def config_id(method: str, hp: dict, scenario: str, relearn) -> str:
    text = json.dumps({"method": method, "hp": hp, "scenario": scenario, "relearn": relearn}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _plain(v):
    return v.item() if hasattr(v, "item") else str(v)


def _write(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(record, default=_plain))


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_discovery(sweep: Path, meta: dict, trials, fractions: list[float], n_seeds: int, relearn: float,
                  methods: list[str] | None = None, log=print, relearn_lr: float | None = None) -> list[dict]:
    """Run every (method, fraction, seed) not yet on file, then return every run on file for the
    current best configurations (this call's and earlier ones'), θ_retrain's probe included."""
    best = best_rows(trials)
    have = [m for m in dict.fromkeys(trials.method) if m in best.index]
    for m in methods or []:
        if m not in have:
            raise ConfigError("methods", m, f"a method with a finished best trial in this sweep: {', '.join(have)}")
    chosen = list(methods or have)
    if not chosen:
        raise RaysweepError(f"the sweep {sweep} has no finished best trial to re-run")
    root = Path(sweep) / DIR
    s0 = int(meta["config"]["seed"])
    seeds = [s0 + i for i in range(1, n_seeds + 1)]
    probe = {"share": relearn, "lr": relearn_lr}
    ids = {m: config_id(m, best_hparams(best.loc[m]), meta["scenario"], probe) for m in have}
    scen = None
    todo = [(m, f, s) for m in chosen for f in fractions for s in seeds
            if (_read(run_file(root, m, f, s)) or {}).get("config_id") != ids[m]]
    log(f"[discovery] {len(chosen)} method(s) x {len(fractions)} fraction(s) x {len(seeds)} seed(s); "
        f"{len(todo)} to run -> {root / RUNS}")
    t0 = time.perf_counter()
    for i, (m, f, s) in enumerate(todo, 1):
        scen = scen or Scenario.load(open_store(meta["store"]), meta["scenario"], "cpu")
        out = run_config(scen, best.loc[m], m, meta, s, lambda msg: None, discovery=f, relearn=relearn,
                         relearn_lr=relearn_lr)
        rec = {"method": m, "fraction": f, "seed": s, "config_id": ids[m], "relearn": probe,
               "holdout_found": [bool(v) for v in scen.holdout_found(f)],
               **{k: v for k, v in out.items() if k in KEEP or (k.startswith("relearn_") and k[8:] in KEEP)}}
        _write(run_file(root, m, f, s), rec)
        log(f"[discovery] {m} f={f:g} seed {s}: held-out GUS {out.get('holdout_gus', float('nan')):+.3f}"
            + (f", after the probe {out.get('relearn_holdout_gus', float('nan')):+.3f}" if relearn else "")
            + f"  done {i}/{len(todo)} ({time.perf_counter() - t0:.0f}s)")
    if relearn:  # θ_retrain probed as the methods are: it never saw the poison, so nothing may come back
        for s in seeds:
            f = root / RUNS / f"retrain__probe__s{s}.json"
            if (_read(f) or {}).get("relearn") == probe:
                continue
            scen = scen or Scenario.load(open_store(meta["store"]), meta["scenario"], "cpu")
            budget = float(meta["config"]["budget"]) * relearn
            before = evaluated(scen, scen.new_model("retrain"))
            after = relearn_probe(scen, scen.new_model("retrain"), budget, s, relearn_lr)
            _write(f, {"method": "retrain", "seed": s, "relearn": probe, **{k: before.get(k) for k in KEEP},
                       **{f"relearn_{k}": after.get(k) for k in KEEP}})
    rows = []
    for f in sorted((root / RUNS).glob("*.json")) if (root / RUNS).is_dir() else []:
        r = _read(f)
        if r and (r.get("method") == "retrain" and r.get("relearn") == probe or ids.get(r.get("method")) ==
                  r.get("config_id")):
            rows.append(r)
    return rows


def gus_z(scores) -> tuple[float | None, float | None]:
    """(GUS, z) of a list of per-poison scores."""
    if not isinstance(scores, list) or not scores:
        return None, None
    g = float(np.mean(scores))
    return g, g * math.sqrt(len(scores))
