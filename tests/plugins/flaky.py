"""A test-only method that raises on its first `fault_times` attempts per trial (fault injection),
then runs as SSD. Attempts are counted in files under `fault_dir` (set through a space's `fixed`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from raysweep.unlearn import METHODS
from raysweep.unlearn.ssd import SSD, SSDHyper


@dataclass
class FlakyHyper(SSDHyper):
    fault_dir: str = field(default="", metadata={"help": "folder counting attempts per trial"})
    fault_times: int = field(default=0, metadata={"help": "attempts that raise", "min": 0})


@METHODS.register("flaky")
class Flaky(SSD):
    name = "flaky"
    Hyper = FlakyHyper

    def execute(self, ctx, on_step):
        from ray import tune

        trial = tune.get_context().get_trial_id()
        marker = Path(ctx.hp.fault_dir) / f"attempts-{trial}"
        n = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(n))
        if n <= ctx.hp.fault_times:
            raise RuntimeError(f"injected fault (attempt {n}) for trial {trial}")
        return super().execute(ctx, on_step)
