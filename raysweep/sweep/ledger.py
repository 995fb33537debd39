"""What the sweep driver saw happen to each trial, kept beside Ray's own files.

`<sweep>/ledger/<trial_id>.json` (written atomically by the driver, one file per trial):
    trial_id, method, status (running | finished | stopped | errored | lost: its driver died and the
    resumed experiment never knew it), started, ended (Unix seconds),
    attempts (1 + retries: a raise or a lost node), errors (the failures the retries recovered from).
A trial's status is the one it ended with: a trial that raised once and then finished is
`finished`, with attempts = 2. Ray keeps the earlier failure in the trial's `error.txt` either way,
so `error.txt` alone cannot tell an errored trial from a recovered one.

`<sweep>/done/<trial_id>.json` (written by the trial itself, just before its final report): the
final report. A trial restarted after its driver was killed (`--resume` after SIGKILL) replays it
instead of unlearning again, so a finished trial is never run twice.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..artifacts import atomic_write_text


def _path(root: Path, trial_id: str) -> Path:
    return Path(root) / "ledger" / f"{trial_id}.json"


def read_records(folder: str | Path) -> dict[str, dict]:
    """<trial_id>.json files of a sweep folder (ledger/, done/, evidence/) -> {trial_id: record};
    {} without the folder; a file cut by a kill is skipped."""
    out = {}
    folder = Path(folder)
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[f.stem] = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
    return out


def read_ledger(root: str | Path) -> dict[str, dict]:
    """trial_id -> its ledger entry ({} for a sweep written before the ledger existed)."""
    return read_records(Path(root) / "ledger")


def mark_lost(root: str | Path) -> int:
    """Before a resume: every trial still `running` is marked `lost` (its driver died). A trial the
    restored experiment runs again becomes `running` at its start; one the experiment never saved
    (started just before a SIGKILL) stays `lost` and does not make the resumed sweep look cut.
    Returns how many were marked."""
    n = 0
    for tid, entry in read_ledger(root).items():
        if entry.get("status") == "running":
            atomic_write_text(_path(Path(root), tid), json.dumps({**entry, "status": "lost"}))
            n += 1
    return n


def trial_ledger(root: str | Path, method_of):
    """A Ray Tune callback recording start, retries and the final status of each trial (Ray is
    imported here only, so reading a ledger needs no Ray). `method_of`: a method name, or
    trial -> method name."""
    from ray.tune import Callback

    class TrialLedger(Callback):
        """Records start, retries and the final status of each trial of one Tuner."""

        def __init__(self, root: str | Path, method_of):
            self.root = Path(root)
            self.method_of = method_of if callable(method_of) else (lambda trial, m=method_of: m)

        def _update(self, trial, **fields) -> dict:
            path = _path(self.root, trial.trial_id)
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

    return TrialLedger(root, method_of)


def _last_error_line(error_file: str) -> str:
    try:
        lines = [ln for ln in Path(error_file).read_text().splitlines() if ln.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def done_path(sweep_root: str | Path, trial_id: str) -> Path:
    return Path(sweep_root) / "done" / f"{trial_id}.json"


def record_final(sweep_root: str | None, trial_id: str, report: dict) -> None:
    if sweep_root:
        atomic_write_text(done_path(sweep_root, trial_id), json.dumps(report, default=float))


def replay_final(sweep_root: str | None, trial_id: str) -> dict | None:
    """The final report of a trial that already finished (None if it did not)."""
    p = done_path(sweep_root, trial_id) if sweep_root else None
    if p is None or not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None
