"""The MLflow callback of `raysweep sweep --mlflow` (trackers.mlflow_callback builds it). A module of its own
so that Ray's MLflow integration, which imports mlflow (slow to import), is imported only by sweeps that ask for it;
module-level, because Tune pickles its callbacks with the experiment."""
from __future__ import annotations

import os
from typing import Callable

from ray.air.integrations.mlflow import MLflowLoggerCallback


class MethodTaggedMLflow(MLflowLoggerCallback):
    """MLflowLoggerCallback that tags each trial's run with its method (and the callback's own tags)."""

    def __init__(self, *args, method_of: str | Callable | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method_of = method_of

    def setup(self, *args, **kwargs):
        if str(self.tracking_uri).startswith("file:"):   # MLflow 3 keeps its file store ("maintenance mode")
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # behind this switch; also on a resume
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial):
        base = dict(self.tags or {})
        m = self.method_of(trial) if callable(self.method_of) else \
            self.method_of or (getattr(trial, "config", None) or {}).get("method")
        self.tags = {**base, **({"method": str(m)} if m else {})}
        try:
            super().log_trial_start(trial)
        finally:
            self.tags = base
