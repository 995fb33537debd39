"""Watching and sharing a sweep: the live status, Optuna storage, MLflow (raysweep/sweep/observe.py, trackers.py)."""
from __future__ import annotations

import importlib.util
import io
import os
import pickle
from types import SimpleNamespace

import optuna
import pytest

from raysweep.errors import ConfigError
from raysweep.sweep.observe import (
    LiveStatus,
    MethodStatus,
    Snapshot,
    StoredOptunaSearch,
    TrialRecord,
    build_snapshot,
    check_mlflow_uri,
    check_optuna_storage,
    eta_line,
    fmt_duration,
    mlflow_callback,
    open_optuna_storage,
    optuna_study_kwargs,
    render_status,
)


class FakeTrial(SimpleNamespace):
    """What the callbacks read of a Ray Tune Trial."""

    __hash__ = object.__hash__

    def __str__(self):
        return self.trial_id


def trial(tid, status="RUNNING", method=None, **result):
    return FakeTrial(trial_id=tid, status=status, config={"x": 0.5, **({"method": method} if method else {})},
                     last_result=dict(result), local_path="")


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


# ------------------------------------------------------------------------------------------ ETA lines, render


def test_durations_and_eta_lines():
    assert [fmt_duration(s) for s in (None, float("nan"), 4.6, 185, 7620)] == ["-", "-", "5s", "3m05s", "2h07m"]
    assert eta_line("initial", 3, 10, 30, "loss 1.2345") == \
        "[initial] epoch 3/10  loss 1.2345  30s elapsed, ~1m10s left"
    assert eta_line("retrain", 2.5, 10, 50) == "[retrain] epoch 3/10 50%  50s elapsed, ~2m30s left"
    assert eta_line("initial", 10, 10, 300).endswith("5m00s elapsed, done")
    assert eta_line("initial", 0, 10, 0).endswith("time left unknown")


def snap():
    return Snapshot([MethodStatus("gd", 8, finished=6, stopped=2, best=0.41234, mean_s=31),
                     MethodStatus("ngd", 8, finished=1, running=2, best=0.441, mean_s=40),
                     MethodStatus("ga", 8)], elapsed_s=252, eta_s=220, concurrency=2, title="demo")


def test_render_status_table_on_a_terminal():
    lines = render_status(snap(), tty=True)
    assert lines[0] == "demo: 9/24 trials, 2 running, 4m12s elapsed, ~3m40s left"
    assert lines[1].split() == ["method", "trials", "finished", "running", "stopped", "errored", "best", "objective",
                                "mean", "trial"]
    assert lines[2].split() == ["gd", "8/8", "6", "0", "2", "0", "0.4123", "31s"]
    assert lines[3].split() == ["ngd", "1/8", "1", "2", "0", "0", "0.4410", "40s"]
    assert lines[4].split() == ["ga", "0/8", "0", "0", "0", "0", "-", "-"]
    assert len({len(ln) for ln in lines[1:]}) == 1          # aligned columns


def test_render_status_plain_is_one_line():
    (line,) = render_status(snap(), tty=False)
    assert line == ("[status] demo: 9/24 trials, 2 running, 4m12s elapsed, ~3m40s left | gd 8/8 (6 finished, "
                    "2 stopped) best 0.4123 | ngd 1/8 (1 finished, 2 running) best 0.4410 | ga 0/8")
    idle = Snapshot([MethodStatus("gd", 2, running=1), MethodStatus("ga", 2), MethodStatus("ssd", 2)], 9, None)
    assert render_status(idle, tty=False)[0].endswith("| gd 0/2 (1 running) | not started: ga, ssd")
    done = Snapshot([MethodStatus("gd", 2, finished=2, best=0.1)], 60, 0.0)
    assert "done" in render_status(done, tty=False)[0]
    assert "time left unknown" in render_status(Snapshot([MethodStatus("gd", 2)], 5, None), tty=False)[0]


def test_build_snapshot_counts_best_and_eta():
    recs = [TrialRecord("gd", "FINISHED", 0.5, 0, 10), TrialRecord("gd", "FINISHED", 0.3, 0, 20),
            TrialRecord("gd", "STOPPED", 0.1, 0, 6),         # stopped early: never "best"
            TrialRecord("gd", "ERRORED", None, 0, 4), TrialRecord("gd", "RUNNING", 0.2, 96),
            TrialRecord("ssd", "FINISHED", 0.9, None, None, reported_s=3.0)]  # ended before a resume
    s = build_snapshot(recs, {"gd": 6, "ngd": 2, "ssd": 1}, elapsed_s=50, now=100, concurrency=2)
    gd, ngd, ssd = s.methods
    assert (gd.finished, gd.stopped, gd.errored, gd.running, gd.total) == (2, 1, 1, 1, 6)
    assert gd.best == 0.3 and gd.mean_s == 10 and ssd.best == 0.9 and ssd.mean_s == 3
    assert ngd.ended == 0 and ngd.best is None
    # gd: 1 not started x 10 s + the running one's 10 - 4 s; ngd: 2 x the mean of all ended (43 / 5); / 2 at once
    assert s.eta_s == pytest.approx((10 + 6 + 2 * 43 / 5) / 2)
    assert build_snapshot([], {"gd": 2}, 0, 0).eta_s is None


# ------------------------------------------------------------------------------------------ the callback


def test_live_status_counts_a_retried_trial_as_finished():
    out, clock = io.StringIO(), Clock()
    st = LiveStatus({"gd": 4}, stream=out, every_s=5, plain_every_s=30, clock=clock, title="s1")
    st.setup()
    a, b, c, d = (trial(t, "PENDING") for t in "abcd")
    st.on_step_end(0, [a, b, c, d])
    for t in (a, b, c, d):
        t.status = "RUNNING"
        st.on_trial_start(0, [a, b, c, d], t)
    # a fails once and is retried by Tune (on_trial_recover, back to PENDING, then RUNNING), then finishes
    a.status = "PENDING"
    clock.t += 31
    st.on_step_end(1, [a, b, c, d])
    assert st.snapshot().methods[0].running == 3
    a.status = "RUNNING"
    a.last_result = {"objective": 0.25, "val_acc": 0.7, "final": True}
    clock.t += 10
    st.on_trial_complete(2, [a, b, c, d], a)                 # Tune calls it while the trial is still RUNNING
    b.last_result = {"objective": 0.05, "final": False}
    st.on_trial_complete(3, [a, b, c, d], b)                 # stopped by ASHA
    c.status = "ERROR"
    st.on_trial_error(4, [a, b, c, d], c)
    # a trial reported as errored that runs again (another retry path) ends up finished, not errored
    d.status = "ERROR"
    st.on_trial_error(5, [a, b, c, d], d)
    d.status, d.last_result = "RUNNING", {"objective": 0.5, "final": True}
    st.on_trial_start(6, [a, b, c, d], d)
    st.on_trial_complete(7, [a, b, c, d], d)
    m = st.snapshot().methods[0]
    assert (m.finished, m.stopped, m.errored, m.running, m.best) == (2, 1, 1, 0, 0.25)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[status] s1: 0/4 trials, 0 running")
    assert lines[1].startswith("[status] s1: 0/4 trials, 3 running, 31s elapsed")
    assert lines[2] == "[gd] trial 1/4 finished  objective 0.2500  val_acc 0.7000  41s"
    assert lines[3].startswith("[gd] trial 2/4 stopped   objective 0.0500")
    assert lines[4].startswith("[gd] trial 3/4 errored")
    assert lines[-1].startswith("[gd] trial 4/4 finished")
    assert "\x1b[" not in out.getvalue()


def test_live_status_redraws_in_place_on_a_terminal_and_keeps_methods_across_tuners():
    out, clock = io.StringIO(), Clock()
    st = LiveStatus({"gd": 1, "ngd": 1}, stream=out, every_s=5, clock=clock, tty=True, title="s2")
    a = trial("a")
    st.bind("gd").on_step_end(0, [a])                       # first draw: 2 + 2 lines, no cursor move
    assert out.getvalue().count("\n") == 4 and "\x1b[" not in out.getvalue()
    clock.t += 1
    st.on_step_end(1, [a])                                  # rate-limited
    assert out.getvalue().count("\n") == 4
    clock.t += 5
    st.on_step_end(2, [a])
    assert "\r\x1b[4A\x1b[J" in out.getvalue()                 # back over the old table, erased, drawn again
    st.say("[sweep] a line of its own")                     # printed above the table, which is redrawn
    after = out.getvalue().rsplit("\x1b[J", 1)[1].splitlines()
    assert after[0] == "[sweep] a line of its own" and after[1].startswith("s2: 0/2 trials") and len(after) == 5
    a.status, a.last_result = "TERMINATED", {"objective": 0.3, "final": True}
    st.on_trial_complete(3, [a], a)
    st.on_experiment_end([a])                               # ngd still to come: one summary line stays
    assert out.getvalue().rsplit("\x1b[J", 1)[1] == \
        "[status] s2: 1/2 trials, 0 running, 6s elapsed, ~6s left | gd 1/1 (1 finished) best 0.3000 | ngd 0/1\n"
    b = trial("a")                                          # a new Tuner may reuse the trial id
    st.bind("ngd").on_trial_start(0, [b], b)
    b.status, b.last_result = "TERMINATED", {"objective": 0.2, "final": True}
    st.on_trial_complete(1, [b], b)
    st.on_experiment_end([b])
    tail = out.getvalue().rsplit("\x1b[J", 1)[1].splitlines()
    assert tail[0].startswith("s2: 2/2 trials") and tail[0].endswith("done")   # the last Tuner: the full table
    assert [ln.split()[:2] for ln in tail[2:]] == [["gd", "1/1"], ["ngd", "1/1"]]
    again = pickle.loads(pickle.dumps(st))                  # Tune pickles callbacks with the Tuner; a resume
    assert again.stream is None and again._t0 is None       # unpickles them in another process
    assert [(m.finished, m.mean_s) for m in again.snapshot().methods] == [(1, 6), (1, 0)]


def test_live_status_reads_the_method_of_each_trial_in_one_tuner():
    st = LiveStatus({"gd": 2, "ssd": 2}, stream=io.StringIO(), tty=False)
    ts = [trial("1", method="gd"), trial("2", method="ssd"), trial("3", method="ssd")]
    for t in ts:
        st.on_trial_start(0, ts, t)
    assert [(m.method, m.running) for m in st.snapshot().methods] == [("gd", 1), ("ssd", 2)]
    st2 = LiveStatus({"gd": 2, "ssd": 2}, method_of=lambda t: "ssd", stream=io.StringIO(), tty=False)
    st2.on_trial_start(0, ts, ts[0])
    assert [m.running for m in st2.snapshot().methods] == [0, 1]


# ------------------------------------------------------------------------------------------ Optuna storage


@pytest.mark.parametrize("url", ["redis://localhost/0", "sweeps.db", "sqlite://sweeps.db", "sqlite:///:memory:",
                                 "sqlite:///", "postgresql:///nohost", "", None])
def test_optuna_storage_rejects_bad_urls(url):
    with pytest.raises(ConfigError) as e:
        check_optuna_storage(url)
    assert e.value.field == "optuna_storage" and "\n" not in str(e.value)


def test_optuna_storage_paths(tmp_path, monkeypatch):
    assert check_optuna_storage(f"sqlite:///{tmp_path}/new/sweeps.db") == f"sqlite:///{tmp_path}/new/sweeps.db"
    assert not (tmp_path / "new").exists()                  # checked, not created
    monkeypatch.chdir(tmp_path)
    assert check_optuna_storage("sqlite:///rel.db") == f"sqlite:///{tmp_path}/rel.db"
    assert check_optuna_storage("journal:///j/optuna.log") == f"journal:///{tmp_path}/j/optuna.log"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="can create or write"):     # a folder that cannot be created
        check_optuna_storage(f"sqlite:///{tmp_path}/afile/sub/sweeps.db")
    if os.path.isdir("/proc"):                              # unwritable even for root
        with pytest.raises(ConfigError, match="can create or write"):
            check_optuna_storage("sqlite:////proc/sweeps.db")
    pg = "postgresql://u:secret@localhost/sweeps"
    if importlib.util.find_spec("psycopg") is None:        # sqlalchemy's default PostgreSQL driver
        with pytest.raises(ConfigError, match=r"pip install 'psycopg\[binary\]'") as e:
            check_optuna_storage(pg)
        assert "secret" not in str(e.value) and "u:***@localhost" in str(e.value)
    else:
        assert check_optuna_storage(pg) == pg


@pytest.mark.parametrize("scheme", ["sqlite", "journal"])
def test_optuna_study_persists_and_resume_continues_it(tmp_path, scheme):
    url = f"{scheme}:///{tmp_path}/optuna.{'db' if scheme == 'sqlite' else 'log'}"
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}

    def searcher(storage):
        return StoredOptunaSearch(space=space, metric="objective", mode="min", points_to_evaluate=[{"lr": 1e-2}],
                                  sampler=optuna.samplers.TPESampler(seed=0),
                                  **optuna_study_kwargs(storage, "sw", "gd"))

    s1 = searcher(open_optuna_storage(url, "sw", ["gd", "ngd"]))
    assert s1.suggest("t1") == {"lr": 1e-2} and s1.suggest("t2")
    s1.on_trial_result("t1", {"objective": 0.7, "training_iteration": 1})
    s1.on_trial_complete("t1", {"objective": 0.5})
    s1.save(str(tmp_path / "searcher.pkl"))                 # Tune's checkpoint of the searcher: t2 still running
    s1.on_trial_complete("t2", {"objective": 0.25})         # t2 ends, then a hard stop before the next checkpoint
    # `--resume` restores the searcher from its checkpoint and reruns t2, which the study has already closed
    s2 = StoredOptunaSearch()
    s2.restore(str(tmp_path / "searcher.pkl"))
    s2.on_trial_result("t2", {"objective": 0.3, "training_iteration": 1})   # plain OptunaSearch raises here
    s2.on_trial_complete("t2", {"objective": 0.26})
    s2.suggest("t3")
    s2.on_trial_complete("t3", {"objective": 0.125})
    storage_arg = url if scheme == "sqlite" else open_optuna_storage(url)
    study = optuna.load_study(study_name="sw-gd", storage=storage_arg)
    assert [t.value for t in study.trials] == [0.5, 0.25, 0.125] and study.best_value == 0.125
    assert study.trials[0].params == {"lr": 1e-2} and study.trials[0].intermediate_values == {1: 0.7}
    # a new sweep of the same name is refused; a resumed one reopens the same study (load_if_exists)
    with pytest.raises(ConfigError, match="pass --resume") as e:
        open_optuna_storage(url, "sw", ["gd"])
    assert e.value.field == "name"
    s3 = searcher(open_optuna_storage(url, "sw", ["gd"], resume=True))
    assert s3._ot_study._study_id == study._study_id and len(s3._ot_study.trials) == 4  # + the re-enqueued point


def test_optuna_storage_that_does_not_open_fails_in_one_line(tmp_path):
    (tmp_path / "bad.db").write_text("not a database " * 100)
    with pytest.raises(ConfigError) as e:
        open_optuna_storage(f"sqlite:///{tmp_path}/bad.db")
    assert e.value.field == "optuna_storage" and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------ MLflow


@pytest.mark.parametrize("uri", ["s3://bucket/mlruns", "http://", "databricks://x", "file://remotehost/mlruns", ""])
def test_mlflow_rejects_bad_uris(uri):
    with pytest.raises(ConfigError) as e:
        check_mlflow_uri(uri)
    assert e.value.field == "mlflow"


def test_mlflow_uri_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_mlflow_uri("mlruns") == (tmp_path / "mlruns").as_uri()
    assert check_mlflow_uri(f"file://{tmp_path}/m2") == (tmp_path / "m2").as_uri()
    assert check_mlflow_uri("sqlite:///ml.db") == f"sqlite:///{tmp_path}/ml.db"
    assert check_mlflow_uri("https://mlflow.example.org:5000") == "https://mlflow.example.org:5000"
    (tmp_path / "afile").write_text("x")
    for bad in ("afile", "afile/mlruns") + (("/proc/afile",) if os.path.isdir("/proc") else ()):
        with pytest.raises(ConfigError, match="afile"):
            check_mlflow_uri(bad)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    with pytest.raises(ConfigError, match=r"pip install 'raysweep\[mlflow\]'"):
        check_mlflow_uri("mlruns")


def test_mlflow_callback_logs_trials_to_a_file_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "0")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")           # restored as absent after the test
    cb = mlflow_callback(str(tmp_path / "mlruns"), "sw", method_of="gd", tags={"sweep": "sw"})
    cb.setup()
    t = FakeTrial(trial_id="t1", config={"lr": 0.01, "bn": "train"}, local_path=str(tmp_path), last_result={})
    cb.log_trial_start(t)
    cb.log_trial_result(1, t, {"objective": 0.5, "val_acc": 0.7, "final": False, "training_iteration": 1})
    cb.log_trial_result(2, t, {"objective": 0.4, "val_acc": 0.71, "final": True, "training_iteration": 2,
                               "holdout_scores": [0.1, 0.2], "node_id": "n"})
    cb.log_trial_end(t)
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("sw").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.01", "bn": "train"}
    assert run.data.tags["method"] == "gd" and run.data.tags["sweep"] == "sw"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "objective")] == [0.5, 0.4]
    assert run.data.metrics["val_acc"] == 0.71


# ------------------------------------------------------------------------------------------ all in a real Tuner


def test_a_tuner_with_status_optuna_storage_and_mlflow(ray_local, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from ray import tune

    from raysweep.sweep.observe import toy_trial

    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "0")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")           # mlflow_callback sets it; restored as absent
    url = f"sqlite:///{tmp_path}/sweeps.db"
    out = io.StringIO()
    status = LiveStatus({"gd": 2}, stream=out, tty=False, title="sw")
    searcher = StoredOptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)}, metric="objective",
                                  mode="min", sampler=optuna.samplers.TPESampler(seed=0),
                                  points_to_evaluate=[{"x": 0.3}],
                                  **optuna_study_kwargs(open_optuna_storage(url, "sw", ["gd"]), "sw", "gd"))
    (tmp_path / "faults").mkdir()
    tuner = tune.Tuner(
        tune.with_parameters(toy_trial, fail_dir=str(tmp_path / "faults")),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=2, max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name="gd", storage_path=str(tmp_path / "sweeps"), verbose=0,
                                  callbacks=[status.bind("gd"), mlflow_callback(str(tmp_path / "mlruns"), "sw", "gd")],
                                  failure_config=tune.FailureConfig(max_failures=1)))
    grid = tuner.fit()
    assert len(grid.errors) == 0 and (tmp_path / "faults" / "failed-once").exists()   # one trial was retried
    m = status.snapshot().methods[0]
    assert (m.finished, m.errored, m.stopped, m.running) == (2, 0, 0, 0) and m.best == pytest.approx(0.0)
    assert "[gd] trial 2/2 finished" in out.getvalue() and "2/2 trials" in out.getvalue().splitlines()[-1]
    study = optuna.load_study(study_name="sw-gd", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2 and study.best_params == {"x": 0.3}
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("sw").experiment_id])
    assert len(runs) == 2 and {r.data.tags["method"] for r in runs} == {"gd"}
    assert all("x" in r.data.params and "objective" in r.data.metrics for r in runs)


def test_a_sweep_pickled_before_the_mlflow_callback_moved_still_loads_it():
    """Tune pickles its callbacks with the experiment: a sweep started when the class lived in trackers.py
    names it there (the module resolves it lazily, so plain sweeps never import mlflow)."""
    import pickle

    from raysweep.sweep.mlflow_run import MethodTaggedMLflow

    assert pickle.loads(b"craysweep.sweep.trackers\nMethodTaggedMLflow\n.") is MethodTaggedMLflow
