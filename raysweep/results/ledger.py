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
from pathlib import Path

from ..artifacts import atomic_write_text
from ..errors import ArtifactError


def ledger_path(root: str | Path, trial_id: str) -> Path:
    """Where the driver keeps one trial's ledger entry."""
    return Path(root) / "ledger" / f"{trial_id}.json"


def read_records(folder: str | Path) -> dict[str, dict]:
    """<trial_id>.json files of a sweep folder (ledger/, done/, evidence/) -> {trial_id: record};
    {} without the folder; a file cut by a kill is skipped."""
    out = {}
    folder = Path(folder)
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(record, dict):
            raise ArtifactError(f"{f} is damaged (a JSON {type(record).__name__}, not a record): remove it; the "
                                "trial's other files keep what it did")
        out[f.stem] = record
    return out


LEDGER_FIELDS = {"status": (str,), "started": (int, float, type(None)), "ended": (int, float, type(None)),
                 "attempts": (int,), "errors": (list,), "method": (str,)}


def read_ledger(root: str | Path) -> dict[str, dict]:
    """trial_id -> its ledger entry ({} for a sweep written before the ledger existed); an entry with a
    field of the wrong type is one ArtifactError naming its file."""
    out = read_records(Path(root) / "ledger")
    for tid, entry in out.items():
        for key, types in LEDGER_FIELDS.items():
            v = entry.get(key)
            if key in entry and (not isinstance(v, types) or isinstance(v, bool)):
                raise ArtifactError(f"{ledger_path(root, tid)} is damaged ({key}={v!r}): remove it; the export "
                                    "then reads the trial's status from its own files")
    return out


def mark_lost(root: str | Path) -> int:
    """Before a resume: every trial still `running` is marked `lost` (its driver died). A trial the
    restored experiment runs again becomes `running` at its start; one the experiment never saved
    (started just before a SIGKILL) stays `lost` and does not make the resumed sweep look cut.
    Returns how many were marked."""
    n = 0
    for tid, entry in read_ledger(root).items():
        if entry.get("status") == "running":
            atomic_write_text(ledger_path(root, tid), json.dumps({**entry, "status": "lost"}))
            n += 1
    return n


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
        record = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # cut by a kill: the trial runs again
    if not isinstance(record, dict):
        raise ArtifactError(f"{p} is damaged (a JSON {type(record).__name__}, not a report): remove it; the trial "
                            "then runs again on --resume")
    return record
