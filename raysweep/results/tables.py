"""Export a sweep as three tidy tables, read from the sweep directory alone (no Ray needed).

trials:  one row per trial, plus the two reference rows `none` (θ_initial) and `retrain`
         (θ_retrain): sweep, scenario, method, trial_id, order (start order within the method),
         status (finished | stopped | errored | reference: the status the trial ended with, from
         the driver's ledger), error (errored trials), attempts (1 + retries), started, ended (Unix
         seconds, from the driver), hp_<name> (every hyperparameter, flattened), budget, cap_share,
         wall_s, seed, reports, node_id, is_best (lowest objective of the method's finished trials),
         evidence (deferred: the trial reported what the search needs; the best trial of each method
         is then evaluated in full after the search and its row carries that, with evidence_eval_s;
         trial: evaluated in full inside the trial, `--evidence all`),
         pareto (non-dominated in (effect min, val_acc max) among them), version_<package>; and
         every scalar figure of the trial's last report, whatever produced it: the trainable's own
         (sweep/trainable.py: budget_spent, effect, objective, diverged, steps, unlearn_wall_s,
         eval_s, final_eval_s), `Scenario.evaluate`'s (val_acc, test_acc, forget_acc, forget_loss,
         mia_tpr, mia_auc, and for noise attacks gus, z, p, tpr_two, auc, control_* and their tune_ /
         holdout_ halves) and the attack's own (`Attack.evaluate`: target_success, asr, ...). Under
         `--evidence best` only each method's best trial has the full-evaluation figures (test_acc,
         forget_*, mia_*, holdout_*, ...).
history: one row per report: sweep, method, trial_id, report, and every scalar figure the report
         carries (step, budget_spent, val_acc, effect, objective, final, time_total_s, the attack's
         checkpoint figures such as tune_gus).
scores:  one row per (model, poison): sweep, method, trial_id, poison (row among the k poisons),
         part (tune | holdout), score (I_z of the poison's own noise), control (I_z of fresh noise),
         for θ_initial and θ_retrain (all k poisons) and each finished trial (its holdout half).
"""
from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..artifacts import atomic_write_table, atomic_write_text, read_json, read_json_lines
from ..attacks import ATTACKS
from ..errors import ArtifactError, ConfigError, RaysweepError
from .layout import merged, rank_key, read_evidence, read_sweep_meta, require
from .ledger import read_ledger, replay_final

# keys of a report that are bookkeeping (Ray's own, or the trainable's), not figures of the model
NOT_FIGURES = {"trial_id", "timestamp", "checkpoint_dir_name", "done", "training_iteration", "date",
               "time_this_iter_s", "time_since_restore", "iterations_since_restore", "pid", "hostname", "node_ip",
               "experiment_tag", "config", "hparams", "attempt", "method", "replayed", "node_id", "trial_wall_s",
               "should_checkpoint", "timesteps_total", "episodes_total"}  # lists (per-poison scores) go to `scores`
HISTORY_KEYS = ["sweep", "method", "trial_id", "report"]


def figures_of(report: dict, history: bool = False) -> dict:
    """Every scalar figure of a report (numbers, flags, encoded per-item strings), bookkeeping left out."""
    keep = lambda k, v: (k not in NOT_FIGURES or (history and k == "time_total_s")) and \
        (v is None or isinstance(v, (int, float, bool, str)))  # noqa: E731
    return {k: v for k, v in report.items() if keep(k, v) and (history or k != "time_total_s")}


def trial_dirs(sweep: Path, meta: dict):
    """(method, trial folder) of every trial of the sweep's one experiment (each params.json names
    its method)."""
    exp = sweep / meta["layout"]
    for tdir in sorted(p for p in exp.iterdir() if p.is_dir()) if exp.is_dir() else []:
        f = tdir / "params.json"
        if f.is_file():
            params = read_json(f, f"remove the trial folder {tdir} to export the sweep without that trial")
            yield params.get("method"), tdir


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
    """The installed ray and optuna versions, read from their metadata (importing Ray here would make
    reading a sweep's tables need Ray)."""
    out = {}
    for name in ("ray", "optuna"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
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


def _trial_sources(sweep: Path, meta: dict, ledger: dict):
    """(method, trial_id, params, reports of the last attempt, attempts, error file or None) of every
    trial: those of the Tune experiment, then those finished just before a killed driver's last
    snapshot (final report in done/, ledger `lost`, or `finished` when the killed driver saw the end too:
    the resumed experiment never knew them)."""
    seen = set()
    for method, tdir in trial_dirs(sweep, meta):
        params = read_json(tdir / "params.json", f"remove the trial folder {tdir}")
        if method not in meta["spaces"]:
            raise ArtifactError(f"{tdir / 'params.json'} is damaged (method={method!r}, not one of the sweep's "
                                f"{', '.join(meta['spaces'])}): remove the trial folder {tdir}")
        params.pop("method", None)
        results, n_attempts = last_attempt(read_json_lines(tdir / "result.json"))
        trial_id = results[-1]["trial_id"] if results else tdir.name  # no report: the folder names it
        seen.add(trial_id)
        err_f = tdir / "error.txt"
        yield method, trial_id, params, results, n_attempts, err_f if err_f.is_file() else None
    for trial_id, entry in ledger.items():
        ended = entry.get("status") in ("lost", "finished")
        done = replay_final(sweep, trial_id) if ended and trial_id not in seen else None
        if done and entry.get("method") in meta["spaces"]:
            params = {"cap_share": (done.get("hparams") or {}).get("cap_share", 1.0)}
            yield entry["method"], trial_id, params, [done], 1, None


def _reference_effect(meta: dict, ref: str, m: dict) -> float | None:
    """θ_initial's / θ_retrain's poison effect, as the sweep's attack defines it."""

    refs = meta["references"]
    attack = ATTACKS.get(meta["attack"], "attack")
    try:
        return float(attack.effect(m, refs))
    except (KeyError, TypeError):
        return None


def load_tables(sweep: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(trials, history, scores) DataFrames of a sweep directory."""
    sweep = Path(sweep).resolve()
    meta = read_sweep_meta(sweep)
    require(meta, sweep, "attack", "spaces", "references", "layout", "versions")
    cfg = meta["config"]
    vers = {f"version_{k}": v for k, v in {**{"raysweep": meta["versions"]["raysweep"],
                                                "torch": meta["versions"]["torch"]}, **_versions()}.items()}
    trials, history, scores = [], [], []
    ledger = read_ledger(sweep)
    evidence = read_evidence(sweep)
    holdout = meta.get("holdout_rows", [])
    hold_set = set(holdout)
    for ref, sc in (meta.get("reference_scores") or {}).items():
        for i, (v, c) in enumerate(zip(sc["scores"], sc["control"])):
            scores.append((meta["name"], ref, ref, i, "holdout" if i in hold_set else "tune", v, c))
    for method, trial_id, params, results, n_attempts, err_f in _trial_sources(sweep, meta, ledger):
        last = merged(results[-1], evidence.get(trial_id)) if results else {}
        entry = ledger.get(trial_id, {})
        # the status the trial ended with (the driver's ledger); without one: a final report is a
        # finished trial even when an earlier attempt left an error.txt
        status = entry.get("status") if entry.get("status") in ("finished", "stopped", "errored") else \
            "finished" if last.get("final") else "errored" if err_f else "stopped"
        errors = entry.get("errors") or ([err_f.read_text().strip().splitlines()[-1]] if err_f else [])
        hp = {**meta["spaces"][method]["fixed"], **params, **(last.get("hparams") or {})}
        row = {"sweep": meta["name"], "scenario": meta["scenario"], "method": method, "trial_id": trial_id,
               "status": status, "error": errors[-1] if errors and status == "errored" else None,
               "attempts": max(entry.get("attempts", 0), n_attempts, 1),
               "started": entry.get("started"), "ended": entry.get("ended"),
               "budget": cfg["budget"], "cap_share": float(params.get("cap_share", 1.0)),
               **{f"hp_{k}": v for k, v in hp.items() if k != "cap_share"},
               **figures_of(last),
               "wall_s": last.get("trial_wall_s", last.get("time_total_s")), "seed": cfg["seed"],
               "reports": len(results), "node_id": last.get("node_id"), **vers}
        trials.append(row)
        for i, v, c in zip(holdout, last.get("holdout_scores") or [], last.get("holdout_control_scores") or []):
            scores.append((meta["name"], method, trial_id, i, "holdout", v, c))
        for i, v in enumerate(last.get("canary_scores") or []):  # canaries: the verdict's positive control
            scores.append((meta["name"], method, trial_id, i, "canary", v, None))
        for i, r in enumerate(results):
            history.append({"sweep": meta["name"], "method": method, "trial_id": trial_id, "report": i + 1,
                            **figures_of(r, history=True)})
    for ref, key in (("none", "none"), ("retrain", "retrain")):
        m = meta["references"][key]
        trials.append({"sweep": meta["name"], "scenario": meta["scenario"], "method": ref, "trial_id": ref,
                       "status": "reference", "budget": cfg["budget"], "budget_spent": 0.0 if ref == "none" else None,
                       **figures_of(m),
                       "effect": _reference_effect(meta, ref, m),
                       "diverged": False, "seed": cfg["seed"], **vers})
    df = pd.DataFrame(trials)
    started = pd.to_numeric(df.get("started"), errors="coerce") if "started" in df else pd.Series(index=df.index)
    df["order"] = started.groupby(df.method).rank(method="first")  # start order within the method
    df["is_best"] = False
    df["pareto"] = False
    for _, g in df[df.status == "finished"].groupby("method"):
        best = min(g.index, key=lambda i: rank_key(g.at[i, "objective"], g.at[i, "trial_id"],
                                                   g.at[i, "trial_id"] in evidence))  # layout.py: the one rule
        df.loc[best, "is_best"] = True
        df.loc[g.index, "pareto"] = pareto_mask(g.astype({"effect": float, "val_acc": float}))
    hist = pd.DataFrame(history)
    hist = hist if len(hist) else pd.DataFrame(columns=HISTORY_KEYS)
    return df, hist, pd.DataFrame(scores, columns=SCORE_COLUMNS)


def best_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Each method's best trial (the export's is_best, layout.py's rule), indexed by method."""
    return trials[(trials.status == "finished") & trials.is_best.astype(bool)].set_index("method")


def read_tables(path: str | Path):
    """(meta, trials, history, scores) from exported tables if present, else from the sweep dir."""
    path = Path(path)
    if not (path / "sweep.json").is_file():
        raise RaysweepError(f"{path} holds no sweep.json: pass a sweep directory or an export folder")
    meta = read_sweep_meta(path)  # the sweep's plug-ins loaded too
    for ext, reader in (("parquet", pd.read_parquet), ("csv", pd.read_csv)):
        if (path / f"trials.{ext}").is_file():
            return meta, *(_read_table(reader, path / f"{n}.{ext}") for n in ("trials", "history", "scores"))
    return meta, *load_tables(path)


def _read_table(reader, path: Path) -> pd.DataFrame:
    """An exported table, or one ArtifactError naming the file (missing, truncated, not a table)."""
    try:
        return reader(path)
    except Exception as e:  # noqa: BLE001 - pyarrow and pandas raise many kinds on a damaged file
        raise ArtifactError(f"{path} is damaged or missing ({type(e).__name__}): export the sweep again "
                            "(`raysweep export SWEEP`)") from None


def export(sweep: str | Path, fmt: str = "parquet", out: str | Path | None = None) -> list[Path]:
    """Write trials.<fmt> and history.<fmt> (atomically) to `out` (default: the sweep directory)."""
    if fmt not in ("parquet", "csv"):

        raise ConfigError("format", fmt, "parquet or csv")
    trials, hist, scores = load_tables(sweep)
    if fmt == "parquet":  # a record whose values cannot form a column: one line, before any file is written
        for name, df in (("trials", trials), ("history", hist), ("scores", scores)):
            try:
                pa.Table.from_pandas(df, preserve_index=False)
            except (pa.ArrowException, ValueError, TypeError) as e:
                raise ArtifactError(f"{sweep}: a trial's record holds a value of the wrong type for the {name} "
                                    f"table ({str(e).splitlines()[0]}); find it in the trial's evidence/, done/ or "
                                    "result.json and remove it") from None
    out = Path(out or sweep).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write_table(df, out / f"{name}.{fmt}")
             for name, df in (("trials", trials), ("history", hist), ("scores", scores))]
    atomic_write_text(out / "columns.json", json.dumps({"trials": list(trials.columns), "history": list(hist.columns),
                                                         "scores": list(scores.columns)}, indent=1))
    if out != Path(sweep).resolve():  # an exported folder is self-contained: the report needs sweep.json too
        atomic_write_text(out / "sweep.json", (Path(sweep) / "sweep.json").read_text())
    return paths
