"""The deep schedule (`raysweep sweep --schedule deep`, docs/performance.md "Depth per hour"): its rungs come
from raysweep/defaults.py, ASHA and the trials use them, each method's TPE has the constant liar, bad
values are one error naming the field; and bench/bench_depth.py --smoke-test runs both schedules end to end."""
import math
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from raysweep import defaults as D
from raysweep.errors import ConfigError
from raysweep.sweep.schedule import schedule_of
from raysweep.sweep.search import make_sampler, make_scheduler, make_searchers
from raysweep.sweep.setup import RESUME_FIELDS, SweepConfig
from raysweep.sweep.spaces import load_space

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_depth.py"


def cfg_of(**kw) -> SweepConfig:
    return SweepConfig(**{"methods": ["gd", "ssd"], "name": "t", **kw}).check()


def deep(**kw) -> SweepConfig:
    return cfg_of(schedule="deep", **kw)


def test_the_deep_rungs_come_from_the_defaults():
    plan = schedule_of(deep())
    steps = [D.DEEP_GRACE * D.DEEP_REDUCTION ** i for i in range(10)
             if D.DEEP_GRACE * D.DEEP_REDUCTION ** i <= D.DEEP_STEPS]
    assert plan.rungs() == steps == [1, 4, 16]  # the figures defaults.py holds now
    assert plan.rung_shares() == pytest.approx([1 / 16, 1 / 4, 1.0])
    assert plan.evaluate_at == (1, 4) and plan.constant_liar  # the cap itself is the trial's final report
    # the default schedule is what it was: checkpoints every 25 %, rungs at 25 % and 75 %, every step evaluated
    base = schedule_of(cfg_of())
    assert base.rung_shares() == pytest.approx([0.25, 0.75]) and base.evaluate_at is None
    assert not base.constant_liar


def test_a_deep_sweep_records_its_spacing_and_resume_compares_the_schedule():
    cfg = deep()
    saved = asdict(cfg)  # what sweep.json's config holds
    assert saved["schedule"] == "deep" and math.isclose(saved["checkpoint_every"], 1 / D.DEEP_STEPS)
    assert math.isclose(saved["asha_grace"], D.DEEP_GRACE / D.DEEP_STEPS)
    assert "schedule" in RESUME_FIELDS
    assert deep().check().checkpoint_every == cfg.checkpoint_every  # checking again changes nothing


@pytest.mark.parametrize("kw,field", [({"schedule": "wide"}, "schedule"),
                                      ({"schedule": "deep", "checkpoint_every": 0.1}, "checkpoint_every"),
                                      ({"schedule": "deep", "asha_grace": 0.5}, "asha_grace"),
                                      ({"schedule": "deep", "multi_objective": True}, "schedule")])
def test_bad_deep_settings_are_one_error_naming_the_field(kw, field):
    with pytest.raises(ConfigError) as e:
        cfg_of(**kw)
    assert e.value.field == field and "\n" not in str(e.value)


def test_ashas_rungs_are_the_schedules():
    for cfg in (deep(), cfg_of()):
        sched = make_scheduler(cfg)
        assert sched.schedulers["ssd"] is None  # one-shot: no budget axis
        milestones = sorted(m for m, _ in sched.schedulers["gd"]._brackets[0]._rungs)  # Ray's ASHA internals
        assert milestones == schedule_of(cfg).rungs()
    full = cfg_of(schedule="full")  # the full-fidelity search a deep one is compared with: nothing stopped
    assert make_scheduler(full).schedulers == {"gd": None, "ssd": None} and schedule_of(full).rungs() == []


def test_the_deep_searcher_uses_the_constant_liar():
    cfg = deep()
    sampler = make_sampler(cfg, "gd")
    # Optuna's TPESampler attributes: pinned, not left to Optuna's defaults (5.0 has both for one objective)
    assert sampler._constant_liar is True and sampler._multivariate is True
    searchers = make_searchers({"gd": load_space("gd")}, cfg)
    assert searchers["gd"]._sampler._constant_liar is True and searchers["gd"]._sampler._multivariate is True


def value(table: dict, measure: str, col: int) -> float:
    return float(re.match(r"-?[0-9.]+", table[measure][col]).group())


@pytest.mark.slow  # two tiny sweeps (gd, ssd x 3 trials) and a prepare: about a minute on an idle 2-core machine
def test_the_smoke_bench_prints_both_schedules(tmp_path):
    out = tmp_path / "depth.md"
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke-test", "--store", str(store), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.strip("|").split(" | ") for line in out.read_text().splitlines() if line.startswith("| ")]
    assert [c.strip() for c in rows[0]] == ["measure", "default", "deep", "deep / default"]
    table = {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}
    d, p = (value(table, "trials per method per hour", i) for i in (0, 1))
    assert d > 0 and p > 0
    assert value(table, "trials per method per hour", 2) == pytest.approx(p / d, abs=0.01 + 0.06 * p / d)  # rounded
    for i in (0, 1):
        assert 0 <= value(table, "share of slot-seconds in stopped trials", i) <= 100
    assert table["trials per method"][:2] == ["3", "3"]
    for m in ("gd", "ssd"):
        assert f"best objective: {m} (per seed)" in table and f"verdict: {m} (per seed)" in table
    # the deep sweep's trials evaluated only where they passed a rung (steps 1 and 4; on the tiny scenario a
    # batch spans several steps, so the first checkpoint past a rung may be a later step), final reports anywhere
    from raysweep.results.tables import load_tables

    sweep = next(p for p in (store / "sweeps").iterdir() if p.name.startswith("depth-deep-"))
    _, history, _ = load_tables(sweep)
    ckpt = history[(history.method == "gd") & ~history.final.astype(bool)]
    assert len(ckpt)
    for _, steps in ckpt.groupby("trial_id").step:
        before = 0
        for step in sorted(steps.astype(int)):
            assert any(before < r <= step for r in (1, 4)), list(steps)  # each report passed a rung of its own
            before = step


def test_resuming_a_deep_sweep_under_another_schedule_names_the_schedule(tmp_path):
    import json

    from raysweep.sweep.setup import check_resume

    saved = deep(storage_path=str(tmp_path), name="s")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(json.dumps({"name": "s", "scenario": "abc", "config": asdict(saved)}))
    check_resume(deep(storage_path=str(tmp_path), name="s"), "abc")  # the same: accepted
    with pytest.raises(ConfigError) as e:
        check_resume(cfg_of(storage_path=str(tmp_path), name="s"), "abc")
    assert e.value.field == "schedule"
