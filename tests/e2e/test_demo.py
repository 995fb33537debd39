"""The whole pipeline through the CLI, as a user runs it: demo = prepare + sweep (all eight) + report."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
def test_demo_pipeline_on_the_tiny_scenario(prepared_tiny):
    store, _ = prepared_tiny  # the session's tiny scenario: the demo's prepare is the cache hit a second run sees
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    out = subprocess.run([sys.executable, "-m", "raysweep.cli", "demo", "--scenario", "tiny", "--trials", "1",
                          "--store", str(store), "--device", "cpu"], env=env, capture_output=True, text=True,
                         timeout=900, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    report = Path(out.stdout.strip().splitlines()[-1].split("report: ")[-1])
    assert report.is_file() and report.name == "report.md"
    verdict = pd.read_csv(report.parent / "verdict.csv")
    methods = {"gd", "ngd", "ga", "euk", "cfk", "scrub", "neggrad_plus", "ssd"}
    assert set(verdict.method) == methods | {"none", "retrain"}
    judged = verdict[verdict.status == "tuned"]
    assert len(judged) == 8
    assert judged.verdict.str.match(
        r"^(removes the poison|fails: .+|signal destroyed, not removed.*|inconclusive: .+)").all()
    assert "power: " in out.stdout and "This is the demo" in out.stdout  # its own power line
    assert set(judged.outcome) <= {"fails", "signal destroyed", "removes", "inconclusive"}
    for m in methods:
        assert m in out.stdout  # the verdict table is printed
    sweep = report.parents[1]
    trials = pd.read_parquet(sweep / "trials.parquet")
    assert (trials[trials.status != "reference"].groupby("method").size() == 1).all()
