"""Which settings change a prepared scenario's numbers, and what pinning them costs (issue 11).

    python bench/pilot_determinism.py [--scenario tiny] [--out docs/determinism_table.md]

Prepares the same scenario (same seed) in fresh processes under: the default; the default again
(repeatability); one thread instead of two; torch's deterministic algorithms off (on by default on
the CPU: raysweep.runtime.deterministic); the CPU
kernels forced to the portable baseline (ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41),
which stands in for "another CPU's kernels". Prints, per variant, the wall time, θ_initial's test
accuracy and z, and the largest weight difference from the default run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "default (2 threads)": {},
    "default again": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "deterministic algorithms off": {"RAYSWEEP_DETERMINISTIC": "0"},
    "baseline kernels (no AVX)": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def run(scenario: str, env_extra: dict) -> tuple[dict, Path, float]:
    store = Path(tempfile.mkdtemp(prefix="det-"))
    env = {**os.environ, "OMP_NUM_THREADS": "2", **env_extra}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "raysweep.cli", "prepare", "--scenario", scenario, "--store",
                          str(store), "--json"], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout), store, time.perf_counter() - t0


def weights(res: dict) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(res["path"]) / "initial.safetensors"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="tiny")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    base = None
    lines = ["| variant | wall s | θ_initial test acc | θ_initial z | θ_retrain z | max weight diff vs default |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, extra in VARIANTS.items():
        res, _, wall = run(a.scenario, extra)
        w = weights(res)
        if base is None:
            base = w
        diff = max(float((w[k].double() - base[k].double()).abs().max()) for k in base if w[k].is_floating_point())
        ini, ret = res["metrics"]["initial"], res["metrics"]["retrain"]
        lines.append(f"| {name} | {wall:.1f} | {ini['test_acc']:.4f} | {ini['z']:+.3f} | {ret['z']:+.3f} "
                     f"| {diff:.2e} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
