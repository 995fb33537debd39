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
