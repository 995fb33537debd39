"""The after-search evidence, started in the search's tail where it can be.

Once every trial has started and a slot is idle (the last trials run beside it), each method whose
trials have all ended has its best finished trial evaluated in full (sweep/evidence.py) by a thread
of the driver, on the idle slots' torch threads (a trial's CPUs each); `complete_evidence` then does only
what is left. Local CPU sweeps only: the driver holds the scenario there (a cluster's or a GPU's
evidence stays after the search, as Ray tasks). Not pickled with the Tuner: a resumed sweep does its
evidence after the search, as before. docs/sweep.md, docs/performance.md.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from ray.tune import Callback

from ..results.layout import best_finished, read_evidence
from .evidence import write_evidence

_ENDED = ("TERMINATED", "ERROR")


class TailEvidence(Callback):
    def __init__(self, root: str | Path, scen, trials: dict[str, int], slots: int, method_of, threads: int = 1):
        self.root, self.scen, self.trials, self.slots, self.method_of = Path(root), scen, trials, slots, method_of
        self.threads = threads  # torch threads per slot (a trial's CPUs)
        self.queued: list[str] = []    # methods whose evidence is due, in the order their trials ended
        self.evaluated: dict[str, tuple[float, int]] = {}  # trial_id -> (seconds its evaluation took, idle slots)
        self._next = 0  # queued[_next:] are still to do
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._idle = 1

    def __getstate__(self):  # Tune pickles its callbacks with the experiment: no scenario, no thread
        return {"root": self.root, "trials": self.trials, "slots": self.slots, "method_of": self.method_of,
                "threads": self.threads}

    def __setstate__(self, state):
        self.__init__(state["root"], None, state["trials"], state["slots"], state["method_of"], state["threads"])

    def on_step_end(self, iteration, trials, **info):
        if self.scen is None or self._stop.is_set() or len(trials) < sum(self.trials.values()):
            return
        if any(t.status == "PENDING" for t in trials):
            return
        running = sum(t.status == "RUNNING" for t in trials)
        if running >= self.slots:
            return
        self._idle = self.slots - running
        for m, n in self.trials.items():
            mine = [t for t in trials if self.method_of(t) == m]
            if m not in self.queued and len(mine) == n and all(t.status in _ENDED for t in mine):
                self.queued.append(m)
        if self._thread is None and self._next < len(self.queued):
            self._thread = threading.Thread(target=self._run, name="raysweep-tail-evidence", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        import torch

        before = torch.get_num_threads()
        try:
            while self._next < len(self.queued) and not self._stop.is_set():
                tid = best_finished(self.root, self.queued[self._next])
                self._next += 1
                if tid is None or tid in read_evidence(self.root):
                    continue
                idle = max(1, self._idle)
                torch.set_num_threads(idle * self.threads)
                t = time.perf_counter()
                try:
                    write_evidence(self.root, tid, self.scen)
                except Exception:  # noqa: BLE001 - left to complete_evidence, which reports it
                    continue
                self.evaluated[tid] = (time.perf_counter() - t, idle)
        finally:
            torch.set_num_threads(before)
            self._thread = None  # a method queued meanwhile starts a new thread at the next step

    def finish(self) -> dict:
        """At the search's end (or Ctrl-C): let the evaluation under way end, start none. Returns
        {"trials": evaluated in the tail, "slot_s": their seconds x the idle slots each used}."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()
        return {"trials": len(self.evaluated), "slot_s": sum(s * n for s, n in self.evaluated.values())}
