"""The Ray Tune callback that keeps the driver's ledger of a sweep (the file format: results/ledger.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ray.tune import Callback

from ..artifacts import atomic_write_text
from ..results.ledger import ledger_path


class TrialLedger(Callback):
    """Records start, retries and the final status of each trial of one Tuner."""

    def __init__(self, root: str | Path, method_of):
        self.root = Path(root)
        self.method_of = method_of if callable(method_of) else (lambda trial, m=method_of: m)

    def _update(self, trial, **fields) -> dict:
        path = ledger_path(self.root, trial.trial_id)
        entry = json.loads(path.read_text()) if path.is_file() else {
            "trial_id": trial.trial_id, "method": self.method_of(trial), "status": "running", "started": None,
            "ended": None, "attempts": 0, "errors": []}
        for key, value in fields.items():
            entry[key] = value(entry) if callable(value) else value
        atomic_write_text(path, json.dumps(entry))
        return entry

    def on_trial_start(self, iteration, trials, trial, **info):
        now = time.time()
        self._update(trial, status="running", started=lambda e: e["started"] or now,
                     attempts=lambda e: e["attempts"] + 1)

    def on_trial_recover(self, iteration, trials, trial, **info):
        err = str(getattr(trial, "error_file", "") or "")
        self._update(trial, errors=lambda e: e["errors"] + [_last_error_line(err)])  # its restart counts

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        self._update(trial, status="finished" if last.get("final") else "stopped", ended=time.time(),
                     eval_s=float(last.get("eval_s") or 0.0),  # the sweep's utilisation reads these
                     trial_s=float(last.get("trial_wall_s") or last.get("time_total_s") or 0.0))

    def on_trial_error(self, iteration, trials, trial, **info):
        err = str(getattr(trial, "error_file", "") or "")
        self._update(trial, status="errored", ended=time.time(),
                     errors=lambda e: e["errors"] + [_last_error_line(err)])


def trial_ledger(root: str | Path, method_of) -> TrialLedger:
    """The ledger callback of one Tuner. `method_of`: a method name, or trial -> method name."""
    return TrialLedger(root, method_of)


def _last_error_line(error_file: str) -> str:
    try:
        lines = [ln for ln in Path(error_file).read_text().splitlines() if ln.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""
