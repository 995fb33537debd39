"""raysweep: stress-test machine-unlearning methods against data poisoning, from a laptop to a Ray cluster.

The few names a Python user needs (the command line, `raysweep --help`, does everything else):

    import raysweep
    cfg = raysweep.load_scenario("tiny", ["train.epochs=2"])     # a preset or a YAML file, plus overrides
    raysweep.prepare_scenario(cfg, "raysweep-out")                # poison, train θ_initial and θ_retrain (once)
    scen = raysweep.Scenario.load("raysweep-out", cfg)
    res = raysweep.unlearn_scenario(scen, "gd", budget=0.1, hparams={"lr": 1e-2})
    print(scen.evaluate(res.model)["test_acc"], res.budget_spent)
    trials, history, scores = raysweep.load_tables("raysweep-out/sweeps/NAME")   # a sweep's tidy tables

`METHODS` and `ATTACKS` are the registries (adding one is one file: docs/extending.md). No name here is
also a subpackage's (`raysweep.prepare`, `raysweep.unlearn` stay the packages).
"""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from .artifacts import open_store
from .attacks import ATTACKS
from .config import load_scenario
from .prepare.scenario import Scenario
from .prepare.scenario import prepare as prepare_scenario
from .results.tables import export, load_tables
from .runs import unlearn_scenario
from .unlearn import METHODS
from .version import __version__

__all__ = ["ATTACKS", "METHODS", "Scenario", "__version__", "export", "load_scenario", "load_tables", "open_store",
           "prepare_scenario", "unlearn_scenario"]

# Modules that moved when the package was layered (2026-12): their old dotted paths still import, with a
# DeprecationWarning, so plug-ins written against them (and sweeps that recorded such plug-ins) keep working.
MOVED = {"raysweep.scenario": "raysweep.prepare.scenario", "raysweep.train": "raysweep.prepare.train",
         "raysweep.spread": "raysweep.prepare.spread", "raysweep.unlearn.session": "raysweep.runs",
         "raysweep.attacks.evidence": "raysweep.stats.evidence", "raysweep.report.tests_exact": "raysweep.stats.exact",
         "raysweep.report.verdict": "raysweep.verdict.judge", "raysweep.report.seeds": "raysweep.verdict.pool",
         "raysweep.sweep.objective": "raysweep.objective", "raysweep.explain.cli": "raysweep.cli.explain"}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old dotted path to the module it moved to (the same module object, not a copy)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())
