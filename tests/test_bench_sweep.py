"""bench/bench_sweep.py --smoke-test: the sweep-engine bench runs end to end on the tiny scenario, prints
(a), (b), (c), (c+), the floor (d) and their ratios, says whether each goal is met from its own figures,
and its split of (a) - (c) adds up (docs/performance.md)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_sweep.py"


def value(table: dict, measure: str) -> float:
    return float(re.match(r"-?[0-9.]+", table[measure]).group())


@pytest.mark.slow  # 77-80 s on an idle 2-core machine: a prepare, a sweep, a shell loop of 4 processes, 4 bare runs,
# a no-op Tune sweep
def test_the_smoke_bench_prints_every_figure_and_its_split_adds_up(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke-test", "--store", str(tmp_path / "store"),
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.strip("|").split(" | ") for line in out.read_text().splitlines() if line.startswith("| ")]
    table = {r[0].strip(): r[1].strip() for r in rows[1:]}
    a, b, c = (value(table, k) for k in ("(a) raysweep sweep", "(b) shell loop of `raysweep unlearn`",
                                         "(c) limit: bare unlearning / slots"))
    c_plus = value(table, "(c+) limit with the search's evaluations")
    assert a > 0 and b > 0 and 0 < c <= c_plus
    for ratio, num, den in (("(a) / (c)", a, c), ("(a) / (c+)", a, c_plus), ("(b) / (a)", b, a)):
        # the times are printed to 0.05 s, the ratios (of the unrounded times) to 0.005
        assert value(table, ratio) == pytest.approx(num / den, abs=num / den * (0.05 / num + 0.05 / den) + 0.006)
    split = [r for r in rows if r[0].strip() == "(a) - (c), slot-seconds"][0]
    parts = [float(x) for x in re.findall(r" (-?[0-9]+)(?:;|$)", split[2].strip())]
    assert len(parts) == 8
    assert sum(parts) == pytest.approx(value(table, "(a) - (c), slot-seconds"), abs=len(parts))  # rounded parts
    notes = {r[0].strip(): r[2].strip() for r in rows[1:]}
    # the floor: (c) + a no-op Tune sweep's wall time + the final reports (the split's second part) / 2 slots
    d = value(table, "(d) a Tune sweep of as many no-op trials")
    # no relation between timings is asserted (a busy machine reorders them): what ran, and the sums
    assert d > 0 and notes["(d) a Tune sweep of as many no-op trials"].startswith("4 no-op trials")
    floor = value(table, "floor: (c) + (d) + final reports / slots")
    assert floor == pytest.approx(c + d + parts[1] / 2, abs=0.6)
    with_ckpt = value(table, "floor with the checkpoints: + checkpoint evaluations / slots")
    assert with_ckpt == pytest.approx(floor + parts[0] / 2, abs=0.6)
    finished = int(re.search(r"of the ([0-9]+) that finished", notes["floor: (c) + (d) + final reports / slots"])[1])
    assert 1 <= finished <= 4
    # met or not from the unrounded ratio: a printed ratio within rounding of the goal can say either
    for ratio, goal, met in (("(a) / (c)", 1.15, lambda r: r <= 1.15), ("(b) / (a)", 1.5, lambda r: r >= 1.5)):
        r = value(table, ratio)
        if abs(r - goal) > 0.006:
            assert (": met" in notes[ratio]) == met(r) and (": not met" in notes[ratio]) != met(r)
    assert notes["(a) raysweep sweep"].startswith("4 trials")  # gd and ssd x 2
