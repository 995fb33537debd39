"""Export a sweep as three tidy tables, read from the sweep directory alone (no Ray needed).

trials:  one row per trial, plus the two reference rows `none` (θ_initial) and `retrain`
         (θ_retrain): sweep, scenario, method, trial_id, order, status (finished | stopped |
         errored | reference: the status the trial ended with, from the driver's ledger), error
         (only for errored trials), attempts (1 + retries), started, ended (Unix seconds, from the
         driver), hp_<name> (every hyperparameter, flattened), budget,
         cap_share, budget_spent; the tuning metrics: val_acc, tune_gus, tune_z, tune_p,
         abs_tune_gus, effect (the attack's poison effect the search minimised: |GUS_tune| for
         Gaussian poisons), objective; the verdict metrics: holdout_gus, holdout_z, holdout_p,
         holdout_tpr_two, holdout_auc, test_acc, mia_tpr, mia_auc, gus, z, forget_acc; diverged,
         wall_s, seed, reports, node_id, is_best (lowest objective of the method's finished
         trials), pareto (non-dominated in (effect min, val_acc max) among the method's finished
         trials), versions (raysweep, torch, ray, optuna); unlearn_wall_s (the unlearning loop,
         checkpoint evaluations included), eval_s (checkpoint evaluations), final_eval_s.
history: one row per report: sweep, method, trial_id, report, step, budget_spent, val_acc, tune_gus,
         tune_z, effect, objective, final, time_total_s.
scores:  one row per (model, poison): sweep, method, trial_id, poison (row among the k poisons),
         part (tune | holdout), score (I_z of the poison's own noise), control (I_z of fresh noise),
         for θ_initial and θ_retrain (all k poisons) and each finished trial (its holdout half).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .artifacts import atomic_write_table, atomic_write_text
from .errors import RaysweepError
from .sweep.ledger import read_ledger

TRIAL_METRICS = ["budget_spent", "val_acc", "tune_gus", "tune_z", "tune_p", "abs_tune_gus", "effect", "objective",
                 "holdout_gus", "holdout_z", "holdout_p", "holdout_tpr_two", "holdout_tpr_low", "holdout_auc",
                 "test_acc", "mia_tpr", "mia_auc", "gus", "z", "p", "tpr_two", "auc", "forget_acc", "forget_loss",
                 "target_success", "target_adv_prob", "asr", "asr_n", "val_asr", "diverged", "steps",
                 "unlearn_wall_s", "eval_s", "final_eval_s", "test_correct", "asr_hits"]
HISTORY_COLUMNS = ["sweep", "method", "trial_id", "report", "step", "budget_spent", "val_acc", "tune_gus",
                   "tune_z", "effect", "objective", "final", "time_total_s"]


def read_sweep_meta(sweep: str | Path) -> dict:
    p = Path(sweep) / "sweep.json"
    if not p.is_file():
        raise RaysweepError(f"{sweep} is not a sweep directory (no sweep.json)")
    return json.loads(p.read_text())


def _read_results(trial_dir: Path) -> list[dict]:
    f = trial_dir / "result.json"
    if not f.is_file():
        return []
    rows = []
    for line in f.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by an interruption
    return rows


def trial_dirs(sweep: Path, meta: dict):
    """(method, trial folder) of every trial: one experiment for all methods (`trials/`, each trial's
    params.json names its method), or one experiment per method (sweeps written before)."""
    if (sweep / meta.get("layout", "trials")).is_dir():
        for tdir in sorted(p for p in (sweep / meta.get("layout", "trials")).iterdir() if p.is_dir()):
            f = tdir / "params.json"
            if f.is_file():
                yield json.loads(f.read_text()).get("method"), tdir
        return
    for method in meta["config"]["methods"]:
        mdir = sweep / method
        for tdir in sorted(p for p in mdir.iterdir() if p.is_dir()) if mdir.is_dir() else []:
            if (tdir / "params.json").is_file():
                yield method, tdir


def last_attempt(rows: list[dict]) -> tuple[list[dict], int]:
    """The reports of a trial's last attempt (a retried trial starts again from scratch; each attempt
    tags its reports with its start time), and the number of attempts that reported. A replayed
    final report (a trial finished before its driver was killed) is not counted twice."""
    attempts = list(dict.fromkeys(r.get("attempt") for r in rows))
    keep = [r for r in rows if r.get("attempt") == attempts[-1]] if attempts else []
    if sum(1 for r in keep if r.get("final")) > 1:
        keep = [r for r in keep if not r.get("replayed")]
    return keep, len(attempts)


def _versions() -> dict:
    out = {}
    for name in ("ray", "optuna"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            out[name] = None
    return out


def pareto_mask(df: pd.DataFrame, minimise: str = "effect", maximise: str = "val_acc") -> pd.Series:
    """True where no other row is at least as good on both and better on one."""
    a, b = df[minimise].to_numpy(float), df[maximise].to_numpy(float)
    keep = []
    for i in range(len(df)):
        dominated = ((a <= a[i]) & (b >= b[i]) & ((a < a[i]) | (b > b[i]))).any()
        keep.append(not dominated and math.isfinite(a[i]) and math.isfinite(b[i]))
    return pd.Series(keep, index=df.index)


SCORE_COLUMNS = ["sweep", "method", "trial_id", "poison", "part", "score", "control"]


def load_results(sweep: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, history) DataFrames of a sweep directory."""
    trials, hist, _ = load_tables(sweep)
    return trials, hist


def _reference_effect(meta: dict, ref: str, m: dict) -> float | None:
    """θ_initial's / θ_retrain's poison effect, as the sweep's attack defines it."""
    from .attacks import ATTACKS

    refs = meta["references"]
    attack = ATTACKS.get(meta.get("attack", "gaussian"))
    try:
        return float(attack.effect(m, refs))
    except (KeyError, TypeError):
        return None


def load_tables(sweep: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(trials, history, scores) DataFrames of a sweep directory."""
    sweep = Path(sweep).resolve()
    meta = read_sweep_meta(sweep)
    cfg = meta["config"]
    vers = {f"version_{k}": v for k, v in {**{"raysweep": meta["versions"]["raysweep"],
                                                "torch": meta["versions"]["torch"]}, **_versions()}.items()}
    trials, history, scores = [], [], []
    ledger = read_ledger(sweep)
    holdout = meta.get("holdout_rows", [])
    hold_set = set(holdout)
    for ref, sc in (meta.get("reference_scores") or {}).items():
        for i, (v, c) in enumerate(zip(sc["scores"], sc["control"])):
            scores.append((meta["name"], ref, ref, i, "holdout" if i in hold_set else "tune", v, c))
    for method, tdir in trial_dirs(sweep, meta):
        params = json.loads((tdir / "params.json").read_text())
        params.pop("method", None)
        results, n_attempts = last_attempt(_read_results(tdir))
        trial_id = results[-1]["trial_id"] if results else tdir.name.split("_")[2]
        err_f = next((f for f in (tdir / "error.txt",) if f.is_file()), None)
        last = results[-1] if results else {}
        entry = ledger.get(trial_id, {})
        # the status the trial ended with (the driver's ledger); without one: a final report is a
        # finished trial even when an earlier attempt left an error.txt
        status = entry.get("status") if entry.get("status") in ("finished", "stopped", "errored") else \
            "finished" if last.get("final") else "errored" if err_f else "stopped"
        errors = entry.get("errors") or ([err_f.read_text().strip().splitlines()[-1]] if err_f else [])
        hp = {**meta["spaces"][method]["fixed"], **params, **(last.get("hparams") or {})}
        parts = tdir.name.split("_")
        order = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
        row = {"sweep": meta["name"], "scenario": meta["scenario"], "method": method, "trial_id": trial_id,
               "order": order,
               "status": status, "error": errors[-1] if errors and status == "errored" else None,
               "attempts": max(entry.get("attempts", 0), n_attempts, 1),
               "started": entry.get("started"), "ended": entry.get("ended"),
               "budget": cfg["budget"], "cap_share": float(params.get("cap_share", 1.0)),
               **{f"hp_{k}": v for k, v in hp.items() if k != "cap_share"},
               **{k: last.get(k) for k in TRIAL_METRICS},
               "wall_s": last.get("trial_wall_s", last.get("time_total_s")), "seed": cfg["seed"],
               "reports": len(results), "node_id": last.get("node_id"), **vers}
        trials.append(row)
        for i, v, c in zip(holdout, last.get("holdout_scores") or [], last.get("holdout_control_scores") or []):
            scores.append((meta["name"], method, trial_id, i, "holdout", v, c))
        for i, r in enumerate(results):
            history.append({"sweep": meta["name"], "method": method, "trial_id": trial_id, "report": i + 1,
                            **{k: r.get(k) for k in HISTORY_COLUMNS[4:]}})
    for ref, key in (("none", "none"), ("retrain", "retrain")):
        m = meta["references"][key]
        trials.append({"sweep": meta["name"], "scenario": meta["scenario"], "method": ref, "trial_id": ref,
                       "status": "reference", "budget": cfg["budget"], "budget_spent": 0.0 if ref == "none" else None,
                       **{k: m.get(k) for k in TRIAL_METRICS if k in m},
                       "abs_tune_gus": abs(m["tune_gus"]) if m.get("tune_gus") is not None else None,
                       "effect": _reference_effect(meta, ref, m),
                       "diverged": False, "seed": cfg["seed"], **vers})
    df = pd.DataFrame(trials)
    if "effect" in df:  # sweeps written before `effect` was reported: it was |GUS_tune|
        df["effect"] = df["effect"].fillna(df["abs_tune_gus"])
    df["is_best"] = False
    df["pareto"] = False
    for _, g in df[df.status == "finished"].groupby("method"):
        df.loc[g["objective"].astype(float).idxmin(), "is_best"] = True
        df.loc[g.index, "pareto"] = pareto_mask(g.astype({"effect": float, "val_acc": float}))
    hist = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    return df, hist, pd.DataFrame(scores, columns=SCORE_COLUMNS)


def export(sweep: str | Path, fmt: str = "parquet", out: str | Path | None = None) -> list[Path]:
    """Write trials.<fmt> and history.<fmt> (atomically) to `out` (default: the sweep directory)."""
    if fmt not in ("parquet", "csv"):
        from .errors import ConfigError

        raise ConfigError("format", fmt, "parquet or csv")
    trials, hist, scores = load_tables(sweep)
    out = Path(out or sweep).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write_table(df, out / f"{name}.{fmt}")
             for name, df in (("trials", trials), ("history", hist), ("scores", scores))]
    atomic_write_text(out / "columns.json", json.dumps({"trials": list(trials.columns), "history": list(hist.columns),
                                                         "scores": list(scores.columns)}, indent=1))
    if out != Path(sweep).resolve():  # an exported folder is self-contained: the report needs sweep.json too
        atomic_write_text(out / "sweep.json", (Path(sweep) / "sweep.json").read_text())
    return paths
