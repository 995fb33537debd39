"""bench/gpu_check.py --smoke-test: every section of the GPU check runs on the CPU at tiny sizes.

The smoke test has no GPU to compare with, so its GUS agreement row compares CPU fp32 against a CPU fp64
reference for the same θ_initial weights (the GPU run adds cuda-vs-cpu rows with the same goal).
"""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def rows(markdown: str) -> list[list[str]]:
    out = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 5 and cells[0][:1].isdigit():
            out.append(cells)
    return out


def is_number(text: str) -> bool:
    try:
        float(text.split()[0])
        return True
    except (ValueError, IndexError):
        return False


@pytest.mark.slow  # ~75 s on an idle 2-core machine, minutes on a busy one
def test_smoke_run_fills_every_section(tmp_path):
    out = tmp_path / "smoke.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke-test", str(out), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=900)
    assert out.is_file(), proc.stderr[-3000:]
    table = rows(out.read_text())
    assert proc.returncode == 0, proc.stderr[-3000:] + "\n" + out.read_text()
    assert "CPU smoke test" in out.read_text() and "torch" in out.read_text()
    bad = [r for r in table if r[4] in ("error", "skipped") or r[2].startswith(("ERROR", "skipped"))]
    assert not bad, bad
    for section in "1234":
        numeric = [r for r in table if r[0].startswith(section) and is_number(r[2])]
        assert numeric, f"section {section} has no measured row"
    ratio = [r for r in table if r[0].startswith("1") and "ratio raysweep / bare" in r[1]]
    assert len(ratio) == 3  # fp32, bf16, fp32 without augmentation
    packing = [r for r in table if r[0].startswith("2") and "trials per minute" in r[1]]
    assert len(packing) == 2 and all(float(r[2]) > 0 for r in packing)
    agree = [r for r in table if "GUS agreement, cpu fp32 vs cpu fp64" in r[1]]
    assert len(agree) == 1 and agree[0][4] == "yes" and float(agree[0][2]) <= 1e-4, agree
    e2e = [r for r in table if r[0].startswith("4") and r[1].startswith("`raysweep ")]
    assert {r[1].split()[1] for r in e2e} >= {"prepare", "unlearn", "sweep"} and all(r[4] == "yes" for r in e2e), e2e
