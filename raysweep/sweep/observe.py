"""Watch and share a sweep: a live status (a Ray Tune callback), persistent Optuna studies, MLflow.

- `LiveStatus`: per method finished / running / stopped / errored trials, best objective, elapsed, time
  left; a table redrawn in place on a terminal, rate-limited plain lines otherwise.
- `eta_line`: a progress line with the time left, for long training loops.
- re-exported from `trackers`: the Optuna storage (`check_optuna_storage`, `open_optuna_storage`,
  `optuna_study_kwargs`, `StoredOptunaSearch`) and MLflow (`check_mlflow_uri`, `mlflow_callback`) helpers.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable

from ray.tune import Callback

from ..eta import eta_line, fmt_duration  # noqa: F401 - re-exported
from .trackers import (  # noqa: F401 - the integration API in one place
    StoredOptunaSearch,
    check_mlflow_uri,
    check_optuna_storage,
    mlflow_callback,
    open_optuna_storage,
    optuna_study_kwargs,
    study_name,
)

# ---------------------------------------------------------------------------------------------- the status


@dataclass
class MethodStatus:
    method: str
    total: int                      # trials asked for
    finished: int = 0               # ran to the end (their last report has final=True)
    stopped: int = 0                # stopped early by the scheduler (ASHA)
    errored: int = 0                # failed after all retries
    running: int = 0
    best: float | None = None       # best objective among finished trials
    mean_s: float | None = None     # mean wall time of its ended trials

    @property
    def ended(self) -> int:
        return self.finished + self.stopped + self.errored


@dataclass
class Snapshot:
    methods: list[MethodStatus]
    elapsed_s: float
    eta_s: float | None             # None: no trial has ended yet
    concurrency: int = 1            # most trials seen running at once
    title: str = "sweep"


@dataclass
class TrialRecord:
    method: str
    state: str = "PENDING"          # PENDING, RUNNING, FINISHED, STOPPED, ERRORED
    value: float | None = None      # the metric of its last report
    start: float | None = None      # clock at its first start in this session
    end: float | None = None
    reported_s: float | None = None  # Ray's time_total_s: the duration of a trial ended before a resume


def _duration(r: TrialRecord) -> float | None:
    if r.start is not None and r.end is not None:
        return r.end - r.start
    return r.reported_s


def build_snapshot(records: list[TrialRecord], totals: dict[str, int], elapsed_s: float, now: float,
                   concurrency: int = 1, mode: str = "min", title: str = "sweep") -> Snapshot:
    """Counts, best values and the time left from trial records (pure: no Ray)."""
    stats = {m: MethodStatus(m, int(n)) for m, n in totals.items()}
    durations: dict[str, list[float]] = {}
    for r in records:
        st = stats.setdefault(r.method, MethodStatus(r.method, 0))
        if r.state == "RUNNING":
            st.running += 1
        elif r.state in ("FINISHED", "STOPPED", "ERRORED"):
            setattr(st, r.state.lower(), getattr(st, r.state.lower()) + 1)
            d = _duration(r)
            if d is not None:
                durations.setdefault(r.method, []).append(d)
        if r.state == "FINISHED" and r.value is not None and math.isfinite(r.value):
            if st.best is None or (r.value < st.best if mode == "min" else r.value > st.best):
                st.best = r.value
    for st in stats.values():
        st.total = max(st.total, st.ended + st.running + sum(1 for r in records if r.method == st.method
                                                             and r.state == "PENDING"))
        if st.method in durations:
            st.mean_s = sum(durations[st.method]) / len(durations[st.method])
    every = [d for ds in durations.values() for d in ds]
    eta = None
    if every:
        overall = sum(every) / len(every)
        work = 0.0
        for st in stats.values():
            mean = st.mean_s if st.mean_s is not None else overall
            work += max(0, st.total - st.ended - st.running) * mean
            work += sum(max(0.0, mean - (now - r.start)) for r in records
                        if r.method == st.method and r.state == "RUNNING" and r.start is not None)
        eta = work / max(1, concurrency)
    elif not any(st.total - st.ended for st in stats.values()):
        eta = 0.0
    return Snapshot(list(stats.values()), elapsed_s, eta, max(1, concurrency), title)


def _best(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def render_status(snap: Snapshot, tty: bool = True) -> list[str]:
    """The status as a table (tty=True) or as one plain line (tty=False)."""
    running = sum(m.running for m in snap.methods)
    ended, total = sum(m.ended for m in snap.methods), sum(m.total for m in snap.methods)
    left = "done" if ended >= total else f"~{fmt_duration(snap.eta_s)} left" if snap.eta_s is not None \
        else "time left unknown"
    head = f"{snap.title}: {ended}/{total} trials, {running} running, {fmt_duration(snap.elapsed_s)} elapsed, {left}"
    if not tty:
        parts = [f"[status] {head}"]
        idle = [m.method for m in snap.methods if not m.ended and not m.running]
        for m in snap.methods:
            if len(idle) > 1 and m.method in idle:
                continue
            counts = [f"{n} {w}" for n, w in ((m.finished, "finished"), (m.stopped, "stopped"),
                                               (m.errored, "errored"), (m.running, "running")) if n]
            parts.append(f"{m.method} {m.ended}/{m.total}" + (f" ({', '.join(counts)})" if counts else "")
                         + (f" best {_best(m.best)}" if m.best is not None else ""))
        return [" | ".join(parts + ([f"not started: {', '.join(idle)}"] if len(idle) > 1 else []))]
    w = max([6] + [len(m.method) for m in snap.methods])
    lines = [head, f"{'method':<{w}}  {'trials':>7}  {'finished':>8}  {'running':>7}  {'stopped':>7}  "
             f"{'errored':>7}  {'best objective':>14}  {'mean trial':>10}"]
    for m in snap.methods:
        lines.append(f"{m.method:<{w}}  {f'{m.ended}/{m.total}':>7}  {m.finished:>8}  {m.running:>7}  "
                     f"{m.stopped:>7}  {m.errored:>7}  {_best(m.best):>14}  {fmt_duration(m.mean_s):>10}")
    return lines


class LiveStatus(Callback):
    """A Ray Tune callback that shows the sweep's status while it runs.

    total_per_method: trials asked for per method (all methods of the sweep, also with one Tuner per method).
    method_of: a method name (every trial of this Tuner belongs to it), a function trial -> method name, or None:
      the trial's config or last result "method", else the only/first method of total_per_method.
    On a terminal the table is redrawn in place at most every `every_s` seconds and ended trials are printed
    above it; otherwise a plain summary line at most every `plain_every_s` seconds and a line per ended trial.
    One instance may serve several Tuners in turn (`bind(method)` before each): it keeps their trials.
    """

    def __init__(self, total_per_method: dict[str, int], method_of: str | Callable | None = None,
                 stream=None, every_s: float = 5.0, plain_every_s: float = 30.0, metric: str = "objective",
                 mode: str = "min", title: str = "sweep", tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.totals = dict(total_per_method)
        self.method_of = method_of
        self.stream, self.every_s, self.plain_every_s = stream, every_s, plain_every_s
        self.metric, self.mode, self.title, self.tty, self.clock = metric, mode, title, tty, clock
        self.records: dict[tuple[str, str], TrialRecord] = {}
        self._t0: float | None = None
        self._last_draw = -math.inf
        self._drawn = 0                 # table lines on screen (tty)
        self._peak = 1
        self._tty: bool | None = None   # resolved `tty`

    def bind(self, method: str) -> "LiveStatus":
        """Trials of the next Tuner belong to `method`; returns self (for `callbacks=[status.bind(m)]`)."""
        self.method_of = method
        return self

    def __getstate__(self):
        """Tune pickles callbacks with the Tuner (and a resume unpickles them in a new process): no stream, no
        screen state, and durations instead of this process's clock readings."""
        state = {**self.__dict__, "stream": None, "_t0": None, "_last_draw": -math.inf, "_drawn": 0, "_tty": None}
        state["records"] = {k: TrialRecord(r.method, "PENDING" if r.state == "RUNNING" else r.state, r.value,
                                           reported_s=_duration(r)) for k, r in self.records.items()}
        return state

    # --- bookkeeping
    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def _is_tty(self) -> bool:
        if self._tty is None:
            isatty = getattr(self._out(), "isatty", None)
            self._tty = self.tty if self.tty is not None else \
                bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        return self._tty

    def _method(self, trial) -> str:
        if isinstance(self.method_of, str):
            return self.method_of
        if callable(self.method_of):
            return str(self.method_of(trial))
        for src in (getattr(trial, "config", None), getattr(trial, "last_result", None)):
            if isinstance(src, dict) and isinstance(src.get("method"), str):
                return src["method"]
        return next(iter(self.totals), "trials")

    def _record(self, trial) -> TrialRecord:
        method = self._method(trial)
        key = (method, str(trial.trial_id))
        if key not in self.records:
            self.records[key] = TrialRecord(method)
        return self.records[key]

    def _update(self, trial, now: float) -> TrialRecord:
        r = self._record(trial)
        res = getattr(trial, "last_result", None) or {}
        v = res.get(self.metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            r.value = float(v)
        status = str(getattr(trial, "status", "PENDING"))
        if status == "RUNNING":
            r.state, r.end = "RUNNING", None
            if r.start is None:
                r.start = now
        elif status == "TERMINATED":
            r.state = "FINISHED" if res.get("final", False) else "STOPPED"
        elif status == "ERROR":
            r.state = "ERRORED"
        else:                           # PENDING / PAUSED, also a trial waiting for its retry
            r.state = "PENDING"
        if r.state in ("FINISHED", "STOPPED", "ERRORED"):
            if r.start is None:
                r.reported_s = res.get("time_total_s") or r.reported_s
            elif r.end is None:
                r.end = now
        return r

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = self.clock() if now is None else now
        elapsed = 0.0 if self._t0 is None else now - self._t0
        return build_snapshot(list(self.records.values()), self.totals, elapsed, now, self._peak, self.mode,
                              self.title)

    # --- output
    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text)
        out.flush()

    def _clear(self) -> None:
        if self._drawn:
            self._write(f"\r\x1b[{self._drawn}A\x1b[J")   # up to the table's first line, erase to the end
            self._drawn = 0

    def _draw(self, now: float) -> None:
        lines = render_status(self.snapshot(now), tty=self._is_tty())
        if self._is_tty():
            width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
            lines = [ln[:width] for ln in lines]    # a wrapped line would break the cursor moves
            self._clear()
            self._drawn = len(lines)
        self._write("".join(ln + "\n" for ln in lines))
        self._last_draw = now

    def say(self, line: str) -> None:
        """Print a line above the table (other output while a table is up would be erased by its redraw)."""
        if self._drawn:
            self._clear()
            self._write(line + "\n")
            self._draw(self.clock())
        else:
            self._write(line + "\n")

    def _event(self, trial, r: TrialRecord, now: float) -> None:
        st = next(m for m in self.snapshot(now).methods if m.method == r.method)
        res = getattr(trial, "last_result", None) or {}
        figs = "".join(f"  {k} {res[k]:.4f}" for k in (self.metric, "val_acc")
                       if isinstance(res.get(k), (int, float)) and not isinstance(res.get(k), bool))
        self.say(f"[{r.method}] trial {st.ended}/{st.total} {r.state.lower():<8}{figs}  {fmt_duration(_duration(r))}")
        if self._is_tty() and not self._drawn:
            self._draw(now)

    # --- Tune hooks
    def setup(self, **info):
        if self._t0 is None:
            self._t0 = self.clock()

    def on_step_end(self, iteration, trials, **info):
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        if now - self._last_draw < (self.every_s if self._is_tty() else self.plain_every_s):
            return
        for t in trials:
            self._update(t, now)
        self._peak = max(self._peak, sum(1 for r in self.records.values() if r.state == "RUNNING"))
        self._draw(now)

    def on_trial_start(self, iteration, trials, trial, **info):
        now = self.clock()
        r = self._update(trial, now)  # Tune marks the trial RUNNING only after this callback
        r.state, r.end = "RUNNING", None
        if r.start is None:
            r.start = now
        self._peak = max(self._peak, sum(1 for r in self.records.values() if r.state == "RUNNING"))

    def _ended(self, trial, errored: bool) -> None:
        now = self.clock()                              # Tune calls on_trial_complete while the trial is
        r = self._update(trial, now)                    # still RUNNING: its state is set here
        r.state = "ERRORED" if errored else "FINISHED" if (trial.last_result or {}).get("final") else "STOPPED"
        if r.start is not None and r.end is None:
            r.end = now
        self._event(trial, r, now)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, errored=True)

    def on_experiment_end(self, trials, **info):
        now = self.clock()
        for t in trials:
            self._update(t, now)
        snap = self.snapshot(now)
        self._clear()
        done = all(m.ended >= m.total for m in snap.methods)
        lines = render_status(snap, tty=self._is_tty() and done)   # the last Tuner leaves the full table
        self._write("".join(ln + "\n" for ln in lines))
        self._last_draw = -math.inf


# ---------------------------------------------------------------------------------------------- a toy trainable


def toy_trial(config: dict, fail_dir: str | None = None, steps: int = 3) -> None:
    """A trivial function trainable for tests and demonstrations: objective (x - 0.3)^2, `steps` reports, the
    last with final=True. With `fail_dir`, the first attempt of the first trial to start raises once."""
    from ray import tune

    if fail_dir:
        try:
            os.close(os.open(os.path.join(fail_dir, "failed-once"), os.O_CREAT | os.O_EXCL))
            raise RuntimeError("injected fault (first attempt)")
        except FileExistsError:
            pass
    x = float(config["x"])
    for i in range(steps):
        tune.report({"objective": (x - 0.3) ** 2 + 0.01 * (steps - 1 - i), "val_acc": 1 - abs(x - 0.3),
                     "budget_spent": (i + 1) / steps, "final": i == steps - 1})
