"""The attack search: each attack's searchable parameters, the plan's one-line refusals, the outer
proposals from constructed points (TPE seeded per point; the boundary brackets), a toy plug-in that
declares its own parameter, and a 2-point search on the tiny scenario end to end, resumed without
running anything again."""
import json
import math

import pandas as pd
import pytest

from raysweep.attack_search.plan import Plan, brackets, check_plan, parse_space, propose_boundary, propose_worst
from raysweep.attack_search.run import outcomes_of
from raysweep.attack_search.table import boundary_table
from raysweep.attacks import ATTACKS
from raysweep.cli import main
from raysweep.config import load_scenario
from raysweep.errors import ConfigError
from raysweep.verdict.judge import OUTCOMES


def test_attacks_map_their_searched_values_to_their_parameters():
    g = ATTACKS.get("gaussian")
    p = g.searched_params({"fraction": 0.05, "space": "input"}, {"eps2": 0.25, "k": 32})
    assert p == {"space": "input", "eps": 0.5, "k": 32}  # k replaces the fraction, eps = sqrt(eps2)
    assert g(**p).params["eps"] == 0.5
    b = ATTACKS.get("backdoor")
    assert b.searched_params({"trigger": "x"}, {"trigger_words": 2, "fraction": 0.01}) == \
        {"trigger": "cf mn", "fraction": 0.01}
    tiny = load_scenario("tiny")
    plan = Plan("gaussian", parse_space("eps2=0.04:1:log", "gaussian"), "worst", 2, 0.02, 0, dict(tiny.attack_params))
    at = plan.scenario(tiny, {"eps2": 0.04})
    assert math.isclose(at.attack_params["eps"], 0.2) and at.attack_params["k"] == 64 and at.hash() != tiny.hash()


@pytest.mark.parametrize("args, field", [
    (["--space", "eps3=0.1:1"], "space.eps3"),                        # an unknown parameter
    (["--space", "eps2=0.01:100"], "space.eps2"),                     # beyond the attack's bound (16)
    (["--space", "k=1:10"], "space.k"),                               # below it (2: a tuning and a held-out half)
    (["--space", "k=32:5000"], "space"),                              # a corner the data cannot take (n = 2000)
    (["--space", "k=3.5:10"], "space.k"),                             # not integers
    (["--stealth", "-0.01"], "stealth"),                              # a tolerance no point can meet
    (["--mode", "boundary"], "space"),                                # boundary mode bisects one axis
    (["--set", "attack=gradient_canceling", "--set", "attack_params={}"], "attack"),  # nothing declared
])
def test_bad_input_is_one_line_before_anything_trains(tmp_path, capsys, args, field):
    assert main(["attack-search", "--scenario", "tiny", "--store", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"raysweep: error: {field}="), err
    assert not any(tmp_path.iterdir())  # no scenario, no search folder


def test_a_toy_attack_plugin_declares_its_own_searchable_parameter(plugin):
    plugin("toy_attack.py")
    axes = parse_space(None, "toy_flip")
    assert [(a.name, a.kind, a.lo, a.hi) for a in axes] == [("k", "int", 20, 200)]  # its declared default range
    with pytest.raises(ConfigError, match="space.k"):
        parse_space("k=0:10", "toy_flip")  # below its own bound
    with pytest.raises(ConfigError, match="toy_flip declares searchable: k"):
        parse_space("eps2", "toy_flip")
    base = load_scenario("tiny", ["attack=toy_flip", "attack_params={}"])
    plan = Plan("toy_flip", parse_space("k=10:40", "toy_flip"), "worst", 4, 0.02, 0, {})
    check_plan(plan, base)
    assert plan.scenario(base, {"k": 10}).attack_params["k"] == 10


def _point(i, values, outcomes=None, feasible=True, objective=None, drop=0.0):
    return {"index": i, "values": values, "status": "done" if feasible else "not stealthy",
            "stealth": {"feasible": feasible, "drop": drop},
            "methods": {m: {"outcome": o} for m, o in (outcomes or {}).items()}, "objective": objective}


def test_worst_mode_asks_the_same_point_again_from_the_same_history():
    plan = Plan("gaussian", parse_space("eps2=0.01:1:log,k=32:1024", "gaussian"), "worst", 12, 0.02, 7)
    done = [_point(i, {"eps2": 0.01 * 3 ** i, "k": 32 * 2 ** i}, objective=0.1 * i, feasible=i < 4, drop=0.01 * i)
            for i in range(5)]
    a, b = propose_worst(plan, done, 5), propose_worst(plan, done, 5)
    assert a == b  # the sampler is seeded from the search seed and the point's index: a resumed search asks the same
    assert 0.01 <= a["eps2"] <= 1 and isinstance(a["k"], int) and 32 <= a["k"] <= 1024
    assert propose_worst(plan, done, 6) != a


def test_boundary_brackets_and_the_next_point_from_constructed_verdicts():
    plan = Plan("gaussian", parse_space("eps2=0.01:1:log", "gaussian"), "boundary", 10, 0.02, 0)
    assert propose_boundary(plan, [], outcomes_of) == {"eps2": 1}  # the strongest end first, then the weakest
    assert propose_boundary(plan, [_point(0, {"eps2": 1}, {"gd": "fails"})], outcomes_of) == {"eps2": 0.01}
    done = [_point(0, {"eps2": 1.0}, feasible=False),  # not stealthy: the stretch above 0.3 is open for ssd
            _point(1, {"eps2": 0.01}, {"gd": "removes", "ga": "fails", "ssd": "inconclusive"}),
            _point(2, {"eps2": 0.1}, {"gd": "fails", "ga": "fails", "ssd": "inconclusive"}),
            _point(3, {"eps2": 0.3}, {"gd": "fails", "ga": "fails", "ssd": "removes"})]
    b = brackets(plan, done, outcomes_of)
    assert b == {"gd": (0.01, 0.1), "ga": (None, 0.01), "ssd": (0.3, 1.0)}
    nxt = propose_boundary(plan, done, outcomes_of)["eps2"]  # the widest open bracket's middle on the log scale
    assert math.isclose(nxt, math.sqrt(0.01 * 0.1))
    t = boundary_table(plan, done).set_index("method")
    assert t.loc["gd", "outcome_below"] == "removes" and t.loc["gd", "fails_from"] == 0.1
    assert "every stealthy point" in t.loc["ga", "reading"] and "not stealthy" in t.loc["ssd", "reading"]


def test_a_two_point_search_on_tiny_runs_end_to_end_and_resumes_without_running(
        ray_local, prepared_tiny, tmp_path, capsys, monkeypatch):
    store, manifest = prepared_tiny
    # boundary along k from 32 to tiny's own 64: the strongest end first, whose scenario the store already has
    args = ["attack-search", "--scenario", "tiny", "--store", str(store), "--storage-path", str(tmp_path),
            "--name", "as", "--mode", "boundary", "--space", "k=32:64", "--points", "2", "--methods", "gd,ga",
            "--trials", "1", "--budget", "0.05", "--checkpoint-every", "0.5", "--stealth", "1"]
    assert main(args) == 0
    root = tmp_path / "as"
    pts = pd.read_csv(root / "attack_points.csv")
    assert pts.k.tolist() == [64, 32] and (pts.status == "done").all()
    first = json.loads((root / "points" / "p000.json").read_text())
    assert first["scenario"] == manifest["hash"]  # content-addressed: the point reused the prepared scenario
    ver = pd.read_csv(root / "attack_verdicts.csv")
    assert len(ver) == 4 and set(ver.method) == {"gd", "ga"} and set(ver.outcome) <= set(OUTCOMES)
    assert set(pd.read_csv(root / "attack_boundary.csv").method) == {"gd", "ga"}
    fig = json.loads((root / "report" / "attack_plane.json").read_text())
    assert [p["title"] for p in fig["panels"]] == ["gd", "ga"] and all(p["points"] >= 2 for p in fig["panels"])
    assert "## Attack search" in (root / "report" / "report.md").read_text()
    files = {f: f.stat().st_mtime_ns for f in (root / "points").iterdir()}
    capsys.readouterr()

    def refuse(*a, **k):
        raise AssertionError("a finished point ran again")

    monkeypatch.setattr("raysweep.attack_search.run.run_sweep", refuse)
    monkeypatch.setattr("raysweep.attack_search.run.prepare", refuse)
    assert main(args) == 0  # the same command: every point on file, nothing runs
    assert {f: f.stat().st_mtime_ns for f in (root / "points").iterdir()} == files
    other = ["2" if a == "1" and args[i - 1] == "--trials" else a for i, a in enumerate(args)]
    assert main(other) == 2  # a different search under the same name
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("raysweep: error: trials=2")
