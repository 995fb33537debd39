"""Shared fixtures. Ray (when a test needs it) is one private, loopback-only instance per test process
(`pytest -n 2`: one in each of the two)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# A fresh tokenisation cache per run, so the Hugging Face loading path is exercised every time.
if "RAYSWEEP_CACHE" not in os.environ:
    os.environ["RAYSWEEP_CACHE"] = tempfile.mkdtemp(prefix="raysweep-cache-")
    atexit.register(shutil.rmtree, os.environ["RAYSWEEP_CACHE"], True)

# Tests read only what the repository carries: the bundled data (a fresh clone has nothing beside it).
BUNDLED = Path(__file__).resolve().parents[1] / "raysweep" / "data" / "bundled"

if os.environ.get("PYTEST_XDIST_WORKER"):  # tests in parallel processes: one thread each, no oversubscription
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_cfg():
    from raysweep.config import load_scenario

    return load_scenario("tiny")


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory, tiny_cfg):
    """The tiny scenario prepared once per test run: (store_root, manifest)."""
    from raysweep.prepare.scenario import prepare

    root = tmp_path_factory.mktemp("store")
    manifest, built = prepare(tiny_cfg, str(root), "cpu", log=lambda m: None)
    assert built
    return root, manifest


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 * 1024, _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def run_tiny_sweep(prepared_tiny, tmp, methods, trials, budget, checkpoint_every, name):
    """A real sweep of `methods` on the prepared tiny scenario (report and curve tests); its directory."""
    from raysweep.config import load_scenario
    from raysweep.prepare.scenario import Scenario
    from raysweep.sweep.search import SweepConfig, run_sweep

    root, _ = prepared_tiny
    scen = Scenario.load(str(root), load_scenario("tiny"))
    cfg = SweepConfig(methods=methods, trials=trials, budget=budget, checkpoint_every=checkpoint_every, name=name,
                      storage_path=str(tmp))
    return run_sweep(scen, cfg, str(root))[0]


PLUGINS = Path(__file__).resolve().parent / "plugins"  # test-only plug-ins: one file each


@pytest.fixture
def plugin():
    """load(file): register the test plug-in tests/plugins/<file> for this test only (every registry
    is restored afterwards, so later tests see the shipped entries alone)."""
    from raysweep import registry
    from raysweep.attacks import ATTACKS
    from raysweep.data import DATASETS
    from raysweep.models import MODELS
    from raysweep.unlearn import METHODS

    regs = (ATTACKS, METHODS, DATASETS, MODELS)
    saved = [(r, r.names() and dict(r._items)) for r in regs]  # noqa: SLF001 - shipped entries found first
    paths = []

    def load(file: str) -> None:
        paths.append(str(PLUGINS / file))
        registry.load_plugins(paths[-1])

    yield load
    for r, items in saved:
        r._items = items  # noqa: SLF001
    for p in paths:
        registry._loaded_plugins.discard(p)  # noqa: SLF001


@pytest.fixture
def flaky(tmp_path, plugin):
    """The fault-injecting test method (tests/plugins/flaky.py), registered for one test only.
    flaky(times) -> (spaces_dir, faults_dir): a spaces folder whose flaky.yaml makes each trial
    raise on its first `times` attempts, counting them in faults_dir."""
    plugin("flaky.py")

    def make(times: int):
        spaces, faults = tmp_path / "spaces", tmp_path / "faults"
        spaces.mkdir(exist_ok=True)
        faults.mkdir(exist_ok=True)
        (spaces / "flaky.yaml").write_text(
            "method: flaky\nparams:\n  alpha: {loguniform: [0.1, 100.0]}\n"
            f"fixed: {{fault_dir: '{faults}', fault_times: {times}}}\n")
        return str(spaces), faults

    return make
