"""Subprocess sections of bench/gpu_check.py: the `raysweep` command line end to end (section 4) and
packing 1, 2, 4 concurrent sweep trials on one card (section 2), with GPU memory polled by nvidia-smi."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from _gpu_sections import DASH, Report, fmt, log

ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
# Packing on the card: concurrency levels, trials per level, budget cap per trial (see docs/gpu.md).
PACK_LEVELS, PACK_TRIALS, PACK_BUDGET = [1, 2, 4], 8, 1.0
# The packing sweeps search only a narrow lr: every trial does the same work (full cap, no ASHA stop).
PACK_SPACE = """method: gd
params:
  lr: {loguniform: [1.0e-3, 2.0e-3]}
fixed: {momentum: 0.9, weight_decay: 5.0e-4, cap_share: 1.0}
"""


class Run:
    """A finished CLI run: return code, wall seconds, stdout, stderr lines with their arrival times."""

    def __init__(self, rc, wall, out, lines, t0):
        self.rc, self.wall, self.out, self.lines, self.t0 = rc, wall, out, lines, t0

    def when(self, pattern: str, last: bool = False) -> float | None:
        """Seconds after the start at which a stderr line matching `pattern` arrived (first, or last)."""
        hits = [t for t, line in self.lines if re.search(pattern, line)]
        return (hits[-1] if last else hits[0]) - self.t0 if hits else None

    def tail(self, n: int = 3) -> str:
        return " / ".join(line for _, line in self.lines[-n:])[-300:]

    def json(self) -> dict:
        text = self.out[self.out.find("{"): self.out.rfind("}") + 1]
        return json.loads(text)


def run_cli(args: list[str], timeout: float, cwd: str) -> Run:
    """`python -m raysweep.cli ARGS` in its own session; on timeout SIGINT (a sweep stops cleanly), then SIGKILL."""
    cmd = [sys.executable, "-m", "raysweep.cli", *args]
    log(f"$ raysweep {' '.join(args)}  (timeout {timeout:.0f}s)")
    env = {**os.environ, **ENV}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                         start_new_session=True)
    lines: list[tuple[float, str]] = []
    out: list[str] = []

    def read_err():
        for line in p.stderr:
            lines.append((time.perf_counter(), line.rstrip()))

    def read_out():
        out.append(p.stdout.read())

    threads = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out)]
    for t in threads:
        t.start()
    try:
        rc = p.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        log(f"timeout: stopping pid {p.pid}")
        _signal(p, signal.SIGINT)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait()
        rc = "timeout"
    finally:
        if p.poll() is None:  # an exception (the global alarm) while waiting
            _signal(p, signal.SIGKILL)
            p.wait()
    for t in threads:
        t.join(timeout=5)
    wall = time.perf_counter() - t0
    log(f"rc {rc} after {wall:.1f}s")
    return Run(rc, wall, "".join(out), lines, t0)


def _signal(p: subprocess.Popen, sig) -> None:
    try:
        os.killpg(p.pid, sig)  # the process group this script started (the CLI and its Ray processes)
    except (ProcessLookupError, PermissionError):
        pass


class MemPoller:
    """Background polling of GPU memory: per process (nvidia-smi compute apps) and device-wide (cudaMemGetInfo)."""

    def __init__(self, dev: torch.device, period: float = 0.25):
        self.dev, self.period = dev, period
        self.smi = shutil.which("nvidia-smi") if dev.type == "cuda" else None
        self.per_pid: dict[str, float] = {}
        self.total_peak = 0.0
        self.stop_evt = threading.Event()
        self.base_pids = set(self._apps())
        self.base_used = self._used()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _apps(self) -> dict[str, float]:
        if not self.smi:
            return {}
        try:
            r = subprocess.run([self.smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return {}
        apps = {}
        for line in r.stdout.splitlines():
            parts = [s.strip() for s in line.split(",")]
            if len(parts) == 2 and parts[1].replace(".", "", 1).isdigit():
                apps[parts[0]] = float(parts[1]) / 1024  # MiB -> GiB
        return apps

    def _used(self) -> float:
        if self.dev.type != "cuda":
            return 0.0
        free, total = torch.cuda.mem_get_info(self.dev)
        return (total - free) / 2**30

    def _loop(self):
        while not self.stop_evt.is_set():
            for pid, gib in self._apps().items():
                if pid not in self.base_pids:
                    self.per_pid[pid] = max(self.per_pid.get(pid, 0.0), gib)
            try:
                self.total_peak = max(self.total_peak, self._used() - self.base_used)
            except RuntimeError:
                pass
            self.stop_evt.wait(self.period)

    def __enter__(self):
        if self.dev.type == "cuda":
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_evt.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def per_trial(self, concurrent: int) -> str:
        if self.dev.type != "cuda":
            return "n/a (CPU)"
        if self.per_pid:
            return f"{max(self.per_pid.values()):.2f} (max over {len(self.per_pid)} trial processes, nvidia-smi)"
        return f"{self.total_peak / concurrent:.2f} (device-wide peak / {concurrent}; nvidia-smi listed no process)"


def trials_table(store: str, name: str):
    import pandas as pd

    t = pd.read_parquet(Path(store) / "sweeps" / name / "trials.parquet")
    return t[t.status != "reference"]


# ---- section 4: prepare / unlearn / sweep through the CLI -------------------------------------------
def e2e_prepare_unlearn(rep: Report, scen: list[str], store: str, dev: str, cwd: str, cap_s: float) -> None:
    S = "4 end to end"
    r = run_cli(["prepare", *scen, "--store", store, "--device", dev, "--json"], min(cap_s, rep.left()), cwd)
    ok = r.rc == 0
    detail = ""
    if ok:
        try:
            m = r.json()
            man = json.loads((Path(m["path"]) / "manifest.json").read_text())
            ok = dev in str(man.get("device", ""))
            detail = f" (trained on {man.get('device')}; θ_initial z {m['metrics']['initial'].get('z', 0.0):+.2f})"
        except (ValueError, KeyError, OSError, TypeError) as e:
            detail = f" (its --json output was not read: {type(e).__name__}: {e})"
    rep.add(S, f"`raysweep prepare {' '.join(scen)} --device {dev}`: wall s{detail}",
            fmt(r.wall, 3) if r.rc == 0 else f"ERROR: rc {r.rc}: {r.tail()}", "runs, on " + dev,
            "yes" if ok else "error" if r.rc != 0 else "no")
    if r.rc != 0:
        return
    r = run_cli(["unlearn", *scen, "--store", store, "--device", dev, "--method", "gd", "--budget", "0.1", "--json"],
                min(cap_s, rep.left()), cwd)
    detail = ""
    if r.rc == 0:
        try:
            row = r.json()
            detail = f" (holdout z {row.get('holdout_z', float('nan')):+.2f}, {row.get('steps')} steps)"
        except (ValueError, TypeError) as e:
            detail = f" (its --json output was not read: {type(e).__name__})"
    rep.add(S, f"`raysweep unlearn --method gd --device {dev}`: wall s{detail}",
            fmt(r.wall, 3) if r.rc == 0 else f"ERROR: rc {r.rc}: {r.tail()}", "runs", "yes" if r.rc == 0 else "error")


def sweep_args(scen, store, dev, name, trials, budget, cpus, gpus, concurrent, spaces) -> list[str]:
    return ["sweep", *scen, "--store", store, "--device", dev, "--methods", "gd", "--trials", str(trials),
            "--budget", str(budget), "--checkpoint-every", "1.0", "--cpus-per-trial", str(cpus),
            "--gpus-per-trial", str(gpus), "--max-concurrent", str(concurrent), "--name", name,
            "--spaces-dir", spaces]


def sweep_row(rep: Report, r: Run, store: str, name: str, trials: int, what: str) -> int:
    """The end-to-end sweep row; returns the number of finished trials."""
    S = "4 end to end"
    if r.rc != 0:
        rep.add(S, what, f"ERROR: rc {r.rc}: {r.tail()}", "runs", "error")
        return 0
    t = trials_table(store, name)
    done = int((t.status == "finished").sum())
    rep.add(S, f"{what}: wall s ({done}/{trials} trials finished)", fmt(r.wall, 3), f"runs, {trials} finished",
            "yes" if done == trials else "no")
    return done


def e2e_sweep(rep: Report, scen, store, dev, cwd, spaces, cap_s: float) -> None:
    gpus = 0.5 if dev == "cuda" else 0
    name = "e2e"
    r = run_cli(sweep_args(scen, store, dev, name, 2, 0.1, 1, gpus, 2, spaces), min(cap_s, rep.left()), cwd)
    sweep_row(rep, r, store, name, 2, f"`raysweep sweep --methods gd --trials 2 --gpus-per-trial {gpus:g}`")


# ---- section 2: packing ------------------------------------------------------------------------------
def section_packing(rep: Report, scen: list[str], store: str, dev: torch.device, cwd: str, spaces: str,
                    smoke: bool, cap_s: float, tiny_row: bool = False) -> None:
    """1, 2 (and 4) concurrent trials of one sweep each; trials per minute from the sweep's own progress lines."""
    S = "2 packing"
    end = time.perf_counter() + min(cap_s, rep.left())
    levels = [1, 2] if smoke else PACK_LEVELS
    trials = 1 if smoke else PACK_TRIALS
    budget = 0.1 if smoke else PACK_BUDGET
    if not smoke and not rep.guard(S, "prepare the packing scenario", _prepare_pack, rep, scen, store, dev.type, cwd,
                                   end):
        return
    tpm: dict[int, float] = {}
    reserve = 20 if smoke else 45  # seconds kept for each level still to run
    for i, p in enumerate(levels):
        left = end - time.perf_counter()
        n = trials if smoke or left > 40 * (len(levels) - i) else max(p, trials // 2)
        if left < 20:
            rep.skip(S, f"{p} concurrent trial(s): trials per minute", f"section time cap, {left:.0f}s left")
            continue
        timeout = max(20.0, left - 5 - reserve * (len(levels) - i - 1))
        got = rep.guard(S, f"{p} concurrent trial(s): trials per minute", _level, rep, p, n, scen, store, dev, cwd,
                        spaces, budget, timeout, tiny_row)
        if got:
            tpm[p] = got
    for p in levels[1:]:
        if p in tpm and tpm.get(1):
            s = tpm[p] / tpm[1]
            goal = ">= 2.5" if p == 4 else DASH
            met = ("yes" if s >= 2.5 else "no") if p == 4 else DASH
            rep.add(S, f"speed-up, {p} concurrent vs 1", fmt(s, 3), goal, met)


def _level(rep: Report, p: int, n: int, scen, store, dev, cwd, spaces, budget, timeout, tiny_row) -> float | None:
    """One sweep with p concurrent trials: its rows; returns trials per minute."""
    S = "2 packing"
    cuda = dev.type == "cuda"
    gpus = round(1 / p, 4) if cuda else 0
    name = f"pack{p}"
    with MemPoller(dev) as mem:
        cpus = 2 if cuda and (os.cpu_count() or 1) >= 8 else 1  # 4 trials x 2 CPUs on a 16-core box
        r = run_cli(sweep_args(scen, store, dev.type, name, n, budget, cpus, gpus, p, spaces), timeout, cwd)
    flag = f"--gpus-per-trial {gpus:g}" if cuda else f"--gpus-per-trial 0 --max-concurrent {p}"
    if tiny_row and p == 1:
        sweep_row(rep, r, store, name, n, f"`raysweep sweep --methods gd --trials {n} {flag}` (section 2's run)")
    start = r.when(r"^\[sweep\] ")  # the sweep's first line, printed as its trials are launched
    stop = r.when(r"^\[sweep\] gd: \d+ finished")
    src = "from the sweep's start line to its summary line"
    try:  # the exported table (also written by a sweep cut short by the timeout)
        done = int((trials_table(store, name).status == "finished").sum())
    except Exception:  # noqa: BLE001
        done = sum(1 for _, line in r.lines if re.match(r"^\[gd\] trial \d+/\d+ finished", line))
    if r.rc != 0 or stop is None:
        stop = r.when(r"^\[gd\] trial \d+/\d+ finished", last=True)
        src = ("from the start line to the last finished trial" if r.rc == 0 else
               f"cut short (rc {r.rc}): from the start line to the last finished trial")
    if start is None or stop is None or stop <= start or done == 0:
        if r.rc != 0:
            raise RuntimeError(f"rc {r.rc}, {done} trials finished: {r.tail()}")
        start, stop, src = 0.0, r.wall, "whole command (progress lines not found)"
    tpm = done / (stop - start) * 60
    rep.add(S, f"{p} concurrent ({flag}): trials per minute ({done}/{n} finished in {stop - start:.1f}s, {src})",
            fmt(tpm, 3))
    rep.add(S, f"{p} concurrent: peak GPU memory per trial, GiB", mem.per_trial(p))
    return tpm


def _prepare_pack(rep: Report, scen, store, dev: str, cwd, end) -> bool:
    r = run_cli(["prepare", *scen, "--store", store, "--device", dev], max(1.0, end - time.perf_counter() - 60), cwd)
    if r.rc != 0:
        raise RuntimeError(f"prepare of the packing scenario: rc {r.rc}: {r.tail()}")
    rep.add("2 packing", f"prepare the packing scenario ({' '.join(scen)}) on {dev}, s", fmt(r.wall, 3))
    return True
