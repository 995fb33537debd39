"""Sweeps on the tiny scenario with a private 2-CPU Ray: complete, export, faults, resume, Pareto."""
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from raysweep.artifacts import LocalStore
from raysweep.cli import main
from raysweep.errors import ConfigError
from raysweep.prepare.scenario import Scenario
from raysweep.results.tables import export, load_results, load_tables
from raysweep.sweep.search import SweepConfig, run_sweep
from raysweep.sweep.spaces import load_space, parse_space

FAST = dict(budget=0.1, checkpoint_every=0.25, cpus_per_trial=1.0)


@pytest.fixture(scope="module")
def scen(prepared_tiny, tiny_cfg):
    root, _ = prepared_tiny
    return Scenario.load(LocalStore(root), tiny_cfg)


def test_two_methods_three_trials_complete_and_export(ray_local, scen, prepared_tiny, tmp_path):
    root, _ = prepared_tiny
    cfg = SweepConfig(methods=["gd", "ssd"], trials=3, name="basic", storage_path=str(tmp_path), **FAST)
    sweep, complete = run_sweep(scen, cfg, str(root))
    assert complete
    paths = export(sweep)
    trials = pd.read_parquet(paths[0])
    hist = pd.read_parquet(paths[1])
    runs = trials[trials.status != "reference"]
    assert len(runs) == 6 and sorted(runs.method.unique()) == ["gd", "ssd"]
    assert set(trials[trials.status == "reference"].method) == {"none", "retrain"}
    documented = json.loads((sweep / "columns.json").read_text())
    for col in ("scenario", "method", "trial_id", "status", "hp_lr", "hp_alpha", "budget", "budget_spent",
                "val_acc", "tune_gus", "tune_z", "effect", "objective", "holdout_gus", "holdout_z", "test_acc",
                "mia_tpr", "wall_s", "seed", "version_torch", "version_ray", "is_best", "pareto"):
        assert col in trials.columns and col in documented["trials"]
    assert list(hist.columns[:4]) == ["sweep", "method", "trial_id", "report"]
    for col in ("step", "budget_spent", "val_acc", "tune_gus", "tune_z", "effect", "objective", "final"):
        assert col in hist.columns and col in documented["history"]
    assert set(hist.trial_id) == set(runs.trial_id)
    finished = runs[runs.status == "finished"]
    assert len(finished) >= 2 and finished.tune_z.notna().all() and finished.val_acc.notna().all()
    assert (finished.budget_spent <= 0.1 + 1e-9).all()
    assert trials.groupby("method").is_best.sum().get("gd") == 1
    # the verdict's evidence: each method's best trial is evaluated in full after the search, the
    # others report what the search needs (sweep/evidence.py); only the best keep their weights
    best = finished[finished.is_best]
    assert sorted(best.method) == ["gd", "ssd"]
    assert best.holdout_z.notna().all() and best.test_acc.notna().all() and best.mia_tpr.notna().all()
    rest = finished[~finished.is_best]
    assert (rest.evidence == "deferred").all() and rest.test_acc.isna().all()
    kept = sorted(p.name for p in (sweep / "models").glob("*.pt"))  # weights, and what their final report took
    assert kept == sorted(f"{t}{ext}" for t in best.trial_id for ext in (".pt", ".known.pt"))
    assert {p.stem for p in (sweep / "evidence").glob("*.json")} == set(best.trial_id)
    use = json.loads((sweep / "utilisation.json").read_text())[-1]  # in the search's idle tail, or after it
    assert use["evidence_trials"] + use["evidence_tail_trials"] == len(best)
    _, _, scores = load_tables(sweep)
    assert set(scores[~scores.method.isin(["none", "retrain"])].trial_id) == set(best.trial_id)
    csv = export(sweep, "csv", tmp_path / "csv")
    assert len(pd.read_csv(csv[0])) == len(trials)
    # a trial that finished after a killed driver's last snapshot (ledger: finished, final report in done/)
    # is unknown to the resumed experiment: its folder is gone, the export still has it from done/
    import shutil

    cut = shutil.copytree(sweep, tmp_path / "after-kill")
    gone = rest.trial_id.iloc[0]
    shutil.rmtree(next((cut / "trials").glob(f"*{gone}*")))
    again = load_results(cut)[0].set_index("trial_id")
    assert gone in again.index and again.loc[gone, "status"] == "finished"
    assert again.loc[gone, "objective"] == pytest.approx(rest.set_index("trial_id").loc[gone, "objective"])


def test_a_raising_trial_is_retried_then_recorded_and_the_sweep_goes_on(ray_local, scen, prepared_tiny, tmp_path,
                                                                        flaky):
    root, _ = prepared_tiny
    spaces, faults = flaky(99)
    cfg = SweepConfig(methods=["flaky", "gd"], trials=2, name="faulty", storage_path=str(tmp_path), max_failures=1,
                      spaces_dir=spaces, **FAST)
    sweep, _ = run_sweep(scen, cfg, str(root))
    trials, _ = load_results(sweep)
    ssd = trials[trials.method == "flaky"]
    assert len(ssd) == 2 and (ssd.status == "errored").all()
    assert ssd.error.str.contains("injected fault").all()
    attempts = sorted(int(p.read_text()) for p in faults.iterdir())
    assert attempts == [2, 2]  # each tried, retried once (max_failures=1), then given up
    gd = trials[trials.method == "gd"]
    assert len(gd) == 2 and (gd.status != "errored").all()


def test_an_interrupted_sweep_resumes_and_keeps_finished_trials(prepared_tiny, tmp_path, capsys):
    """Ctrl-C (SIGINT) a real `raysweep sweep` once two trials have finished, then --resume it.

    The signal is sent when the sweep's own progress output (stderr, read line by line) reports the
    second finished trial, so a fast machine cannot finish all trials before the interrupt lands.
    """
    root, _ = prepared_tiny
    total = 5
    argv = [sys.executable, "-m", "raysweep.cli", "sweep", "--scenario", "tiny", "--store", str(root), "--methods",
            "ssd", "--trials", str(total), "--max-concurrent", "1", "--budget", "0.1", "--name", "cut",
            "--storage-path", str(tmp_path), "--device", "cpu"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    err_lines: list[str] = []
    two_done = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)
            if sum("] trial " in x and " finished " in x for x in err_lines) >= 2:
                two_done.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert two_done.wait(timeout=240), "".join(err_lines)[-2000:]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=30)
    err = "".join(err_lines)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    first, _ = load_results(tmp_path / "cut")
    done_first = first[(first.method == "ssd") & (first.status == "finished")]
    assert 2 <= len(done_first) < total
    scenarios = sorted((root / "scenarios").iterdir())
    for change, field in ((["--budget", "0.2"], "budget"), (["--set", "seed=5"], "scenario=")):  # in-process: no Ray
        assert main([*argv[3:], "--resume", *change]) == 2
        assert field in capsys.readouterr().err
    assert sorted((root / "scenarios").iterdir()) == scenarios  # refused before prepare trained anything
    again = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    after, _ = load_results(tmp_path / "cut")
    ssd = after[after.method == "ssd"]
    assert len(ssd) == total and (ssd.status == "finished").all()
    kept = ssd.set_index("trial_id").loc[done_first.trial_id]
    pd.testing.assert_series_equal(kept.objective, done_first.set_index("trial_id").objective)


def test_multi_objective_marks_a_pareto_set(ray_local, scen, prepared_tiny, tmp_path):
    root, _ = prepared_tiny
    cfg = SweepConfig(methods=["gd"], trials=4, name="mo", storage_path=str(tmp_path), multi_objective=True, **FAST)
    trials, _ = load_results(run_sweep(scen, cfg, str(root))[0])
    gd = trials[(trials.method == "gd") & (trials.status == "finished")]
    assert len(gd) == 4 and gd.pareto.sum() >= 1
    front = gd[gd.pareto]
    for _, r in gd[~gd.pareto].iterrows():  # each point off the front is dominated by one on it
        assert ((front.effect <= r.effect) & (front.val_acc >= r.val_acc)).any()
    assert (gd.effect == gd.tune_gus.abs()).all()  # for Gaussian poisons the effect is |GUS_tune|


def test_a_bad_search_space_fails_before_any_trial(tmp_path):
    bad = {"method": "gd", "params": {"learning_rate": {"loguniform": [1e-5, 1e-1]}}}
    with pytest.raises(ConfigError, match="params.learning_rate"):
        parse_space(bad, "gd.yaml", "gd")
    for spec, field in [({"lr": {"loguniform": [0, 1]}}, "params.lr"), ({"lr": {"uniform": [1, 0.1]}}, "params.lr"),
                        ({"k": {"uniform": [1, 3]}}, "params.k"),
                        ({"momentum": {"uniform": [0, 2]}}, "params.momentum"),
                        ({"bn": {"choice": ["maybe"]}}, "params.bn")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            parse_space({"method": "euk", "params": spec}, "x.yaml", "euk")
    with pytest.raises(ConfigError, match="warm_start"):
        parse_space({"method": "gd", "params": {"lr": {"loguniform": [1e-4, 1e-2]}}, "warm_start": [{"lr": 1.0}]},
                    "gd.yaml", "gd")
    (tmp_path / "gd.yaml").write_text("method: gd\nparams: {lr: {cauchy: [1, 2]}}\n")
    with pytest.raises(ConfigError, match="cauchy"):
        load_space("gd", tmp_path)


def test_eu_k_searches_k_up_to_every_layer_group_of_the_model():
    """`all` is a layer-count field's bound: the sweep resolves it to the model's layer groups (7 on
    ResNet-9); a warm start above them, or `all` on a field that counts no layers, is one line."""
    space = load_space("euk")
    assert space.params["k"] == ("int", [1, "all"])
    assert space.resolved(7).optuna()["k"].high == 7 and space.resolved(10).optuna()["k"].high == 10
    assert space.params["k"] == ("int", [1, "all"])  # resolving made a new space
    with pytest.raises(ConfigError, match=r"warm_start\[0\]\.k"):
        space.resolved(2)  # the paper's warm start k = 3 on a two-group model
    with pytest.raises(ConfigError, match=r"params\.batch_size"):
        parse_space({"method": "euk", "params": {"batch_size": {"int": [1, "all"]}}}, "x.yaml", "euk")


def test_every_shipped_space_is_valid():
    from raysweep.unlearn import METHODS

    for m in METHODS.names():
        space = load_space(m)
        assert space.params and space.warm_start


def test_gpu_request_on_a_cpu_cluster_is_refused(ray_local):
    from raysweep.sweep.search import resources

    with pytest.raises(ConfigError, match="gpus_per_trial"):
        resources(SweepConfig(methods=["gd"], gpus_per_trial=0.5))
    assert resources(SweepConfig(methods=["gd"]))["gpu"] == 0


CLUSTER_SCRIPT = r"""
import sys, json
from ray.cluster_utils import Cluster
import ray
from raysweep.artifacts import LocalStore
from raysweep.config import load_scenario
from raysweep.prepare.scenario import Scenario
from raysweep.sweep.search import SweepConfig, run_sweep
from raysweep.results.tables import load_results
store, out = sys.argv[1], sys.argv[2]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
scen = Scenario.load(LocalStore(store), load_scenario("tiny"))
cfg = SweepConfig(methods=["ssd"], trials=4, name="cluster", storage_path=out, address=cluster.address,
                  budget=0.1, checkpoint_every=0.25, reuse_actors=False)
trials, _ = load_results(run_sweep(scen, cfg, store)[0])
runs = trials[trials.method == "ssd"]
print(json.dumps({"n": len(runs), "finished": int((runs.status == "finished").sum()),
                  "nodes": runs.node_id.nunique()}))
ray.shutdown(); cluster.shutdown()
"""


@pytest.mark.slow
def test_two_node_cluster_with_shared_storage_runs_trials_on_both(prepared_tiny, tmp_path):
    root, _ = prepared_tiny
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    out = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, str(root), str(tmp_path / "shared")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"n": 4, "finished": 4, "nodes": 2}
