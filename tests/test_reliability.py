"""Bad input fails in one line before any training and writes nothing; artifacts survive faults;
a retried trial is exported as what it ended as (docs/reliability.md lists every case)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from raysweep.artifacts import LocalStore, atomic_write_table, clean_stale_staging
from raysweep.cli import main
from raysweep.config import load_scenario, parse_value
from raysweep.errors import ArtifactError, ConfigError
from raysweep.prepare.scenario import Scenario, store_key
from raysweep.results.tables import export, load_results, load_tables
from raysweep.sweep.search import SweepConfig, claim_sweep_dir, run_sweep, trial_resources

REPO = Path(__file__).resolve().parents[1]

BAD_INPUTS = [  # (argv after the verb's store, the field the one-line message must name)
    (["prepare", "--set", "model_params.depth=3"], "model_params.depth"),
    (["prepare", "--set", "attack_params={fraction: abc}"], "attack.fraction"),
    (["prepare", "--set", "train.lr=.nan"], "train.lr"),
    (["prepare", "--set", "train.epochs=0"], "train.epochs"),
    (["prepare", "--set", "train=3"], "train"),
    (["prepare", "--set", "val_size=0"], "val_size"),
    (["prepare", "--set", "val_size=5000"], "val_size"),  # >= the 2,000-row held-out split: found on load
    (["prepare", "--set", "name=../escape"], "name"),
    (["prepare", "--scenario", "nosuch"], "scenario"),
    (["prepare", "--set", "attack_params.k=999999"], "attack.k"),
    (["sweep", "--name", "../../x"], "name"),
    (["sweep", "--name", "/abs"], "name"),
    (["sweep", "--max-concurrent", "-1"], "max_concurrent"),
    (["sweep", "--trials", "0"], "trials"),
    (["sweep", "--methods", "gd,nosuch"], "methods"),
    (["sweep", "--budget", "1.5"], "budget"),
    (["sweep", "--evidence", "some"], "evidence"),
    (["sweep", "--schedule", "wide"], "schedule"),
    (["sweep", "--schedule", "deep", "--checkpoint-every", "0.1"], "checkpoint_every"),
    (["sweep", "--schedule", "deep", "--multi-objective"], "schedule"),
    (["sweep", "--device", "cpu", "--gpus-per-trial", "0.5"], "gpus_per_trial"),
    (["sweep", "--address", "127.0.0.1:1"], "address"),
    (["sweep", "--address", "nonsense"], "address"),
    (["sweep", "--resume"], "name"),
    (["sweep", "--resume", "--name", "never-ran"], "name"),
    (["unlearn", "--method", "gd", "--budget", "0"], "budget"),
    (["unlearn", "--method", "nosuch"], "method"),
    (["unlearn", "--method", "gd", "--hp", "nosuch=1"], "nosuch"),
    (["report", "nosuch"], "sweep"),
    (["export", "nosuch"], "sweep"),
]


@pytest.mark.parametrize("argv,field", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, field, tmp_path, capsys, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("training started: the input was not refused first")

    monkeypatch.setattr("raysweep.prepare.scenario.train", no_training)
    store = tmp_path / "store"
    code = main([*argv, "--store", str(store)])
    err = capsys.readouterr().err.strip().splitlines()
    err = [ln for ln in err if "Started a local Ray instance" not in ln]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("raysweep: error: ") and field in err[0], err[0]
    assert not store.exists() or not any(store.rglob("*")), list(store.rglob("*"))


def test_gpu_request_on_a_cpu_host_fails_before_prepare(ray_local, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["sweep", "--gpus-per-trial", "1", "--store", str(store)]) == 2
    assert "gpus_per_trial" in capsys.readouterr().err
    assert not store.exists()


def test_numbers_in_every_form_people_write_them():
    assert parse_value("1e-3") == 0.001 and parse_value("5E2") == 500.0 and parse_value("3") == 3
    assert parse_value(".5") == 0.5 and parse_value("-2.5e-1") == -0.25 and parse_value("abc") == "abc"
    assert load_scenario("tiny", ["train.lr=1e-3"]).train.lr == 0.001
    assert load_scenario("tiny", ["attack_params={k: 10, eps: 1e-1}"]).attack_params == {"k": 10, "eps": 0.1}


def test_device_cpu_keeps_trials_off_a_gpu_the_cluster_has():
    have = {"CPU": 8, "GPU": 1}
    assert trial_resources(SweepConfig(methods=["gd"], device="cpu"), have)["gpu"] == 0
    assert trial_resources(SweepConfig(methods=["gd"]), have)["gpu"] == 0.25
    with pytest.raises(ConfigError, match="gpus_per_trial"):
        SweepConfig(methods=["gd"], device="cpu", gpus_per_trial=1, name="x").check()


def test_sweep_names_are_claimed_exclusively(tmp_path):
    cfg = SweepConfig(methods=["gd"], name="same-second", storage_path=str(tmp_path))
    first = claim_sweep_dir(cfg, auto_name=True)
    cfg2 = SweepConfig(methods=["gd"], name="same-second", storage_path=str(tmp_path))
    second = claim_sweep_dir(cfg2, auto_name=True)
    assert first.name == "same-second" and second.name == "same-second-2" and cfg2.name == "same-second-2"
    with pytest.raises(ConfigError, match="exists"):
        claim_sweep_dir(SweepConfig(methods=["gd"], name="same-second", storage_path=str(tmp_path)))


def _copy_store(prepared_tiny, tmp_path) -> tuple[Path, Path]:
    root, manifest = prepared_tiny
    dst = tmp_path / "store"
    shutil.copytree(root / "scenarios", dst / "scenarios")
    return dst, dst / store_key(manifest["hash"])


def test_a_corrupt_artifact_is_refused_by_prepare_and_unlearn(prepared_tiny, tmp_path, capsys):
    store, folder = _copy_store(prepared_tiny, tmp_path)
    f = folder / "initial.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    for argv in (["prepare", "--scenario", "tiny"], ["unlearn", "--scenario", "tiny", "--method", "gd"]):
        assert main([*argv, "--store", str(store)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "fails its checksum" in err[0] and "initial.safetensors" in err[0]


def test_a_manifest_without_its_fields_is_refused(prepared_tiny, tmp_path, capsys):
    store, folder = _copy_store(prepared_tiny, tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    for key in ("config", "metrics"):
        (folder / "manifest.json").write_text(json.dumps({k: v for k, v in m.items() if k != key}))
        assert main(["unlearn", "--scenario", "tiny", "--method", "gd", "--store", str(store)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"lacks {key}" in err[0]
        with pytest.raises(ArtifactError, match=key):
            Scenario.load(LocalStore(store), load_scenario("tiny"))


def test_staging_folders_of_dead_processes_are_cleaned(tmp_path):
    store = LocalStore(tmp_path)
    (tmp_path / "scenarios").mkdir()
    host = socket.gethostname().replace(".", "_").replace("-", "_")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "scenarios" / f".abc.{host}-{dead.pid}.x1.tmp"
    live = tmp_path / "scenarios" / f".abc.{host}-{os.getpid()}.x2.tmp"
    for d in (stale, live):
        d.mkdir()
        (d / "initial.safetensors").write_bytes(b"half written")
    staged = store.staging("scenarios/abc")
    assert not stale.exists() and live.exists() and staged.is_dir()
    assert clean_stale_staging(tmp_path / "scenarios") == []  # the live ones (ours) stay


def test_concurrent_prepare_builds_one_artifact(tmp_path):
    store = tmp_path / "store"
    env = {**os.environ, "RAYSWEEP_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "raysweep.cli", "prepare", "--scenario", "tiny", "--set", "train.epochs=1",
            "--store", str(store), "--json", "--threads", "1"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    hashes = {json.loads(o[0])["hash"] for o in outs}
    assert len(hashes) == 1
    assert [p.name for p in (store / "scenarios").iterdir()] == [hashes.pop()]  # no staging folder left
    assert main(["prepare", "--scenario", "tiny", "--set", "train.epochs=1", "--store", str(store)]) == 0


def test_atomic_tables_never_share_a_temp_file(tmp_path):
    df = pd.DataFrame({"a": range(2000), "b": [str(i) * 20 for i in range(2000)]})
    errors = []

    def write(i):
        try:
            for _ in range(5):
                atomic_write_table(df.assign(writer=i), tmp_path / "t.parquet")
                atomic_write_table(df.assign(writer=i), tmp_path / "t.csv")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == 2000 and len(pd.read_csv(tmp_path / "t.csv")) == 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]


def test_a_trial_that_raises_once_then_succeeds_is_finished(ray_local, prepared_tiny, tiny_cfg, tmp_path, flaky):
    root, _ = prepared_tiny
    scen = Scenario.load(LocalStore(root), tiny_cfg)
    spaces, faults = flaky(1)
    cfg = SweepConfig(methods=["flaky"], trials=2, name="retry", storage_path=str(tmp_path), max_failures=1,
                      spaces_dir=spaces, budget=0.1, checkpoint_every=0.25)
    sweep, complete = run_sweep(scen, cfg, str(root))
    assert complete
    assert sorted(int(p.read_text()) for p in faults.iterdir()) == [2, 2]  # each raised once, then ran
    trials, hist, _ = load_tables(sweep)
    ssd = trials[trials.method == "flaky"]
    assert len(ssd) == 2 and (ssd.status == "finished").all() and (ssd.attempts == 2).all()
    assert ssd.error.isna().all() and ssd.is_best.sum() == 1
    assert (ssd.started < ssd.ended).all()
    for _, g in hist.groupby("trial_id"):  # the history of the attempt that finished, once
        assert g.final.sum() == 1 and list(g.report) == list(range(1, len(g) + 1))
    paths = []
    threads = [threading.Thread(target=lambda i=i: paths.append(export(sweep, "csv", tmp_path / "exp")))
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 3 and len(pd.read_csv(tmp_path / "exp" / "trials.csv")) == len(trials)


NODE_LOSS_SCRIPT = r"""
import json, sys, threading, time
from pathlib import Path
from ray.cluster_utils import Cluster
import ray
from raysweep.artifacts import LocalStore
from raysweep.config import load_scenario
from raysweep.prepare.scenario import Scenario
from raysweep.sweep.search import SweepConfig, run_sweep
from raysweep.results.tables import load_results
store, out = sys.argv[1], sys.argv[2]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
scen = Scenario.load(LocalStore(store), load_scenario("tiny"))
cfg = SweepConfig(methods=["gd"], trials=3, name="lossy", storage_path=out, address=cluster.address,
                  budget=0.3, checkpoint_every=0.25, reuse_actors=False, max_failures=2)
removed = {}

def kill_one_node():
    ledger = Path(out) / "lossy" / "ledger"
    while True:  # once both workers run a trial (1 CPU each, none on the head), remove one of them
        running = [json.loads(p.read_text()) for p in ledger.glob("*.json")] if ledger.is_dir() else []
        if sum(e["status"] == "running" for e in running) >= 2:
            time.sleep(1.0)
            cluster.remove_node(workers[1], allow_graceful=False)
            removed["at"] = time.time()
            return
        time.sleep(0.1)

threading.Thread(target=kill_one_node, daemon=True).start()
root, complete = run_sweep(scen, cfg, store)
trials, _ = load_results(root)
runs = trials[trials.method == "gd"]
print(json.dumps({"complete": complete, "removed": "at" in removed, "n": len(runs),
                  "statuses": sorted(runs.status), "attempts": sorted(int(a) for a in runs.attempts),
                  "nodes": runs.node_id.nunique()}))
ray.shutdown(); cluster.shutdown()
"""


@pytest.fixture
def ray_env():
    """Environment for a subprocess that starts its own private Ray, in a short temporary folder (Ray's
    socket paths must stay under 107 bytes), removed afterwards."""
    import tempfile

    tmp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    yield {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": tmp}
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_a_lost_worker_node_loses_no_trial(prepared_tiny, tmp_path, ray_env):
    root, _ = prepared_tiny
    out = subprocess.run([sys.executable, "-c", NODE_LOSS_SCRIPT, str(root), str(tmp_path / "shared")],
                         env=ray_env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["complete"] and got["removed"] and got["n"] == 3, got
    assert set(got["statuses"]) <= {"finished", "stopped"}, got  # none errored, none lost
    assert max(got["attempts"]) >= 2, got  # the lost node's trial ran again elsewhere


@pytest.mark.slow
def test_a_driver_killed_with_sigkill_resumes_without_losing_or_rerunning_a_finished_trial(prepared_tiny, tmp_path,
                                                                                            ray_env):
    """SIGKILL the `raysweep sweep` driver (no chance to save anything) once two trials have finished,
    kill what it started (its private Ray), then --resume."""
    import signal

    root, _ = prepared_tiny
    total = 5
    argv = [sys.executable, "-m", "raysweep.cli", "sweep", "--scenario", "tiny", "--store", str(root), "--methods",
            "ssd", "--trials", str(total), "--max-concurrent", "1", "--budget", "0.1", "--name", "killed",
            "--storage-path", str(tmp_path), "--device", "cpu"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env=ray_env, cwd=REPO, start_new_session=True)
    lines: list[str] = []
    two_done = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if sum("] trial " in x and " finished " in x for x in lines) >= 2:
                two_done.set()

    threading.Thread(target=read, daemon=True).start()
    assert two_done.wait(timeout=300), "".join(lines)[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver's own Ray processes go with it
    except ProcessLookupError:
        pass
    sweep = tmp_path / "killed"
    before = {p.stem: json.loads(p.read_text()) for p in (sweep / "done").glob("*.json")}
    assert len(before) >= 2
    again = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=600, env=ray_env, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    trials, hist = load_results(sweep)
    ssd = trials[trials.method == "ssd"].set_index("trial_id")
    assert len(ssd) >= total and (ssd.status == "finished").all()
    for tid, final in before.items():  # still there, same result, unlearned once (same attempt)
        assert tid in ssd.index and ssd.loc[tid, "objective"] == pytest.approx(final["objective"])
        folder = next(sweep.glob(f"trials/*{tid}*/result.json"), None)
        if folder is None:  # finished after the killed driver's last snapshot: exported from done/ alone
            # its driver died before it (lost) or just after it saw the trial end (finished)
            assert json.loads((sweep / "ledger" / f"{tid}.json").read_text())["status"] in ("lost", "finished")
            continue
        rows = [json.loads(x) for x in folder.read_text().splitlines() if x]
        # one attempt only (a re-run would tag its reports with a new one); its final report is there,
        # replayed from done/ when the killed driver had not yet flushed it to result.json
        assert {r["attempt"] for r in rows} == {final["attempt"]} and any(r.get("final") for r in rows)


def test_quick_exit_runs_the_exit_handlers_flushes_and_keeps_the_code(tmp_path):
    """`raysweep`'s exit (runtime.quick_exit): an idle thread pool left open does not hang it, atexit
    handlers run (after the pool's), unflushed output arrives, and the exit code is the command's."""
    script = ("import atexit, concurrent.futures, sys\n"
              "from raysweep.runtime import quick_exit\n"
              "pool = concurrent.futures.ThreadPoolExecutor(1)\n"
              "pool.submit(int).result()\n"
              f"atexit.register(lambda: open({str(tmp_path / 'ran')!r}, 'w').write('yes'))\n"
              "sys.stdout.write('no newline, not flushed')\n"
              "quick_exit(3)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 3, out.stderr[-2000:]
    assert out.stdout == "no newline, not flushed"
    assert (tmp_path / "ran").read_text() == "yes"


def test_errors_cross_process_borders_as_themselves():
    """An error raised in a reference-training process or a Ray task reaches the command as itself."""
    import pickle

    from raysweep.errors import PluginError

    for err in (ConfigError("model_params.width", 0, "an integer in [1, 1024]"), ArtifactError("x is damaged"),
                PluginError("plug-in p failed")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)


def test_a_plugin_that_exits_is_one_line_naming_it(tmp_path):
    """In a fresh process (plug-ins named in $RAYSWEEP_PLUGINS load when a registry is first used)."""
    plugin = tmp_path / "exits.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    out = subprocess.run([sys.executable, "-m", "raysweep.cli", "prepare", "--scenario", "tiny", "--store",
                          str(tmp_path / "store")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RAYSWEEP_PLUGINS": str(plugin)})
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1 and "exits.py" in err[0] and "sys.exit(3)" in err[0], err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*"))


def test_a_sweep_naming_a_missing_plugin_blames_its_sweep_json(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(REPO / "tests" / "fixtures" / "sweep_v0_1_layout", sweep)
    meta = json.loads((sweep / "sweep.json").read_text())
    meta["plugins"] = str(tmp_path / "gone.py")
    (sweep / "sweep.json").write_text(json.dumps(meta))
    assert main(["export", str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep.json" in err[0] and "gone.py" in err[0] and "RAYSWEEP_PLUGINS" not in err[0], err
