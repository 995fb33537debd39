"""All methods in one Ray Tune experiment: a searcher and a scheduler that dispatch by method.

One `Tuner` runs every method's trials, so a free slot takes the next trial of any method whose
search still wants one (methods no longer wait for each other's slowest trial, and a cluster with
more slots than one method's trials stays busy). Each method keeps:
- its own seeded Optuna search (`MethodDispatchSearch` routes suggest / results / completions to
  the method's searcher by trial id; a trial's config carries `method`);
- its own early-stopping comparisons (`MethodDispatchScheduler` holds one ASHA per iterative method
  and routes each trial's results to its method's ASHA only: a GD trial is never compared with an
  SSD trial). docs/sweep.md says why one Tuner and not concurrent Tuners (Ray does not support
  several Tune runs on one cluster at once).
"""
from __future__ import annotations

import pickle
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from ..artifacts import append_json_line, read_json_lines


def next_method(wanted: dict[str, int], started: dict[str, int], order: list[str],
                seconds: dict[str, list[float]] | None = None) -> list[str]:
    """Methods whose search still wants a trial, the least advanced first, so methods interleave instead
    of running one after another; among equally advanced ones the longest trials first (mean `seconds`
    of the method's ended trials; a method with none yet counts as the longest; ties: the sweep's
    order), so the sweep ends on short trials rather than one long trial beside an idle slot."""
    seconds = seconds or {}
    mean = {m: sum(seconds[m]) / len(seconds[m]) if seconds.get(m) else float("inf") for m in order}
    left = [m for m in order if started[m] < wanted[m]]
    return sorted(left, key=lambda m: (started[m] / wanted[m], -mean[m], order.index(m)))


class _PickledState:
    """Tune saves and restores searchers and schedulers through these, and pickles them with the Tuner:
    the whole state. `_added` names the attributes a later raysweep added, with their defaults, so a
    sweep pickled by an older one resumes with them."""

    _added: dict = {}  # attribute -> a function giving its default

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({k: make() for k, make in self._added.items() if k not in state}, **state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))


class MethodDispatchSearch(_PickledState, Searcher):
    """One searcher per method behind Tune's single search algorithm."""

    _added = {"seconds": dict}

    def __init__(self, searchers: dict[str, Searcher], trials: dict[str, int], metric=None, mode=None):
        super().__init__(metric=metric, mode=mode)
        self.searchers = searchers
        self.trials = dict(trials)
        self.order = list(searchers)
        self.started = {m: 0 for m in searchers}
        self.method_of: dict[str, str] = {}
        self.seconds: dict[str, list[float]] = {m: [] for m in searchers}  # ended trials' run times, per method

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each method's searcher was built with its own space, metric and mode

    def suggest(self, trial_id: str):
        if trial_id in self.method_of:  # asked again for a trial it already answered (restore)
            return None
        candidates = next_method(self.trials, self.started, self.order, self.seconds)
        if not candidates:
            return Searcher.FINISHED
        for method in candidates:
            config = self.searchers[method].suggest(trial_id)
            if config in (None, Searcher.FINISHED):
                continue
            self.method_of[trial_id] = method
            self.started[method] += 1
            return {**config, "method": method}
        return None

    def _route(self, trial_id: str) -> Searcher | None:
        m = self.method_of.get(trial_id)
        return self.searchers.get(m) if m else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        s = self._route(trial_id)
        if s is not None:
            s.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        s = self._route(trial_id)
        if s is not None:
            s.on_trial_complete(trial_id, result=result, error=error)
            took = (result or {}).get("time_total_s")  # Tune's: the trial's time so far (stopped: until then)
            if took is not None and not error and not (result or {}).get("replayed"):  # replayed: ran before
                self.seconds.setdefault(self.method_of[trial_id], []).append(float(took))


DECISIONS = "early_stopping.jsonl"  # in the sweep directory: what each method's early stopper decided, on whom


def judged_on(stopper: TrialScheduler, trial_id: str) -> list[str] | None:
    """The trials whose results `stopper` holds at the rungs of `trial_id`'s bracket: everything it can
    compare the trial with, read from ASHA's own state (Ray's internals `_trial_info` and `_rungs`;
    tests/test_dispatch.py fails if they change); None for a stopper without them."""
    bracket = (getattr(stopper, "_trial_info", None) or {}).get(trial_id)
    rungs = getattr(bracket, "_rungs", None)
    return None if rungs is None else sorted({t for _, recorded in rungs for t in recorded})


def read_decisions(root: str | Path) -> list[dict]:
    """The early stoppers' decisions of a sweep, in order (a line cut by a kill is skipped)."""
    return read_json_lines(Path(root) / DECISIONS)


class MethodDispatchScheduler(_PickledState, FIFOScheduler):
    """One early stopper per method (None for a one-shot method: it runs to its end).

    Every decision of a method's stopper is appended to `root/DECISIONS` (when `root` is given) with
    `judged_on`, the trials whose results that stopper held when it decided, so a sweep shows that no
    trial was judged on another method's trials."""

    _added = {"root": lambda: None, "decisions": list}

    def __init__(self, schedulers: dict[str, TrialScheduler | None], root: str | Path | None = None):
        super().__init__()
        self.schedulers = schedulers
        self.root = None if root is None else str(root)
        self.decisions: list[dict] = []

    def _sub(self, trial) -> TrialScheduler | None:
        return self.schedulers.get((trial.config or {}).get("method"))

    def set_search_properties(self, metric, mode, **spec) -> bool:
        for s in self.schedulers.values():
            if s is not None:
                s.set_search_properties(metric, mode, **spec)
        self._metric, self._mode = metric, mode
        return True

    def on_trial_add(self, tune_controller, trial):
        s = self._sub(trial)
        if s is not None:
            s.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        s = self._sub(trial)
        if s is not None:
            s.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result) -> str:
        s = self._sub(trial)
        if s is None:
            return TrialScheduler.CONTINUE
        action = s.on_trial_result(tune_controller, trial, result)
        self._record({"trial_id": trial.trial_id, "method": trial.config["method"], "step": result.get("step"),
                      "value": result.get(self._metric) if self._metric else None,
                      "action": "stop" if action == TrialScheduler.STOP else "continue",
                      "judged_on": judged_on(s, trial.trial_id)})
        return action

    def _record(self, decision: dict) -> None:
        self.decisions.append(decision)
        if self.root is not None:  # one line per decision (a resumed sweep appends to the same file)
            append_json_line(Path(self.root) / DECISIONS, decision)

    def on_trial_complete(self, tune_controller, trial, result):
        s = self._sub(trial)
        if s is not None:
            s.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        s = self._sub(trial)
        if s is not None:
            s.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{m}: {s.debug_string()}" for m, s in self.schedulers.items() if s is not None)
