"""A sweep written before the house was reshaped (raysweep at e5ce2e1: `tests/fixtures/sweep_v0_1_layout`,
the driver's files of a tiny gd + ssd sweep, Tune's own state and the weights left out) still exports and
reports, with the same rows its own export had then."""
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from raysweep.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "sweep_v0_1_layout"


@pytest.fixture
def old_sweep(tmp_path) -> Path:
    dst = tmp_path / "old-fixture"
    shutil.copytree(FIXTURE, dst)
    return dst


def test_an_old_sweep_exports_the_rows_it_exported_then(old_sweep, capsys):
    assert main(["export", str(old_sweep), "--format", "csv"]) == 0
    got = pd.read_csv(old_sweep / "trials.csv").set_index("trial_id")
    want = json.loads((old_sweep / "expected_trials.json").read_text())
    assert sorted(got.index) == sorted(r["trial_id"] for r in want)
    for row in want:
        for col, v in ((c, x) for c, x in row.items() if c != "trial_id"):
            g = got.loc[row["trial_id"], col]
            if isinstance(v, float) and math.isnan(v) or v is None:
                assert pd.isna(g), (row["trial_id"], col, g)
            elif isinstance(v, float):
                assert g == pytest.approx(v), (row["trial_id"], col)
            else:
                assert g == v or str(g) == str(v), (row["trial_id"], col, g, v)


def test_an_old_sweep_reports(old_sweep, capsys):
    assert main(["report", str(old_sweep)]) == 0
    verdict = pd.read_csv(old_sweep / "report" / "verdict.csv").set_index("method")
    assert {"none", "retrain", "gd", "ssd"} <= set(verdict.index)
    text = (old_sweep / "report" / "report.md").read_text()
    assert text.startswith("# raysweep report: old-fixture")
    # its store is gone (a copied sweep): the command's default re-runs give way to the tables, and it says so
    assert "nothing was re-run" in text and "judging its tables alone" in capsys.readouterr().err
    assert main(["report", str(old_sweep), "--seeds", "1"]) == 2  # asked for explicitly: one line, not ignored


def test_every_moved_module_still_imports_from_its_old_path():
    """Plug-ins written against the old paths (and sweeps that recorded such plug-ins) keep working."""
    import importlib
    import warnings

    import raysweep

    for old, new in raysweep.MOVED.items():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert importlib.import_module(old) is importlib.import_module(new), old
        assert any(issubclass(w.category, DeprecationWarning) for w in seen) or old in __import__("sys").modules
    from raysweep.results import export, load_results, load_tables  # the old module's names, now the package's

    assert callable(export) and callable(load_results) and callable(load_tables)
