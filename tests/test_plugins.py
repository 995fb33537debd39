"""Plug-ins: a toy attack and a toy unlearner, each one test-only file (tests/plugins/), go through
prepare -> sweep -> export -> report with no edit anywhere else; adding a method changes no other
method's trials."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pandas as pd

from raysweep.defaults import RAY_ENV

from .conftest import PLUGINS

TOY = """name: toy
attack: toy_flip
attack_params: {k: 150, source: 3, target: 5}
model_params: {width: 4}
train_size: 2000
val_size: 200
train: {epochs: 3, batch_size: 128}
"""


def _cli(args, env, timeout=600):
    r = subprocess.run([sys.executable, "-m", "raysweep.cli", *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_a_toy_attack_and_a_toy_unlearner_run_end_to_end(tmp_path, plugin, capsys):
    """The sweep runs as users run it (`RAYSWEEP_PLUGINS`, its own process and Ray, whose workers load the
    plug-ins); prepare, export and report run in this process, with the same two files registered."""
    from raysweep.cli import main

    scenario = tmp_path / "toy.yaml"
    scenario.write_text(TOY)
    store = tmp_path / "store"
    env = {**os.environ, **RAY_ENV, "RAYSWEEP_PLUGINS": f"{PLUGINS / 'toy_attack.py'},{PLUGINS / 'ascent_mix.py'}",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="rp", dir="/tmp"), "OMP_NUM_THREADS": "1"}
    plugin("toy_attack.py")
    plugin("ascent_mix.py")
    assert main(["prepare", "--scenario", str(scenario), "--store", str(store), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ini, ret = out["metrics"]["initial"], out["metrics"]["retrain"]
    assert ini["flip_rate"] > ret["flip_rate"]  # the toy attack's own metric, computed by its own evaluate
    _cli(["sweep", "--scenario", str(scenario), "--store", str(store), "--methods", "gd,ascent_mix", "--trials", "1",
          "--budget", "0.05", "--name", "toy", "--checkpoint-every", "0.5"], env)
    sweep = store / "sweeps" / "toy"
    assert main(["export", str(sweep), "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    trials = pd.read_csv(tmp_path / "csv" / "trials.csv")
    hist = pd.read_csv(tmp_path / "csv" / "history.csv")
    runs = trials[trials.status != "reference"]
    assert sorted(runs.method.unique()) == ["ascent_mix", "gd"]
    assert {"flip_rate", "val_flip_rate", "flip_hits", "hp_mix"} <= set(trials.columns)  # its columns, kept
    assert "val_flip_rate" in hist.columns  # the attack's checkpoint figure, in the history
    finished = runs[runs.status == "finished"]
    assert finished.flip_rate.notna().all() and finished.effect.notna().all()
    assert main(["report", str(tmp_path / "csv"), "--out", str(tmp_path / "report")]) == 0
    verdict = pd.read_csv(tmp_path / "report" / "verdict.csv").set_index("method")
    assert {"none", "retrain", "gd", "ascent_mix"} <= set(verdict.index)
    judged = verdict.loc[["gd", "ascent_mix"]]
    assert judged.outcome.isin(["fails", "removes", "inconclusive"]).all() and judged.p_fails.notna().all()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "flip rate − θ_retrain's" in md and "toy attack's flip rate" in md  # its header and its text


def _suggestions(methods, n=6):
    from raysweep.sweep.search import SweepConfig, make_searchers
    from raysweep.sweep.spaces import load_space

    cfg = SweepConfig(methods=methods, trials=n, name="s", seed=3)
    searchers = make_searchers({m: load_space(m) for m in methods}, cfg)
    return {m: [searchers[m].suggest(f"{m}_{i}") for i in range(n)] for m in methods if m != "ascent_mix"}


def test_adding_a_method_leaves_the_other_methods_trials_unchanged(plugin):
    shipped = ["gd", "ngd", "ssd"]
    before = _suggestions(shipped)
    plugin("ascent_mix.py")
    after = _suggestions(["ascent_mix", *shipped])  # sorts before every shipped method
    assert before == after
