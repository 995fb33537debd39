"""Depth per hour: the default (or full) and the deep schedule (`raysweep sweep --schedule deep`) side by side.

    python bench/bench_depth.py --store STORE [--trials 100] [--seeds 0,1] [--modes default,deep] [--out FILE.md]
    python bench/bench_depth.py --read SWEEP_DIR [SWEEP_DIR ...] [--out FILE.md]   # sweeps run before
    python bench/bench_depth.py --smoke-test          # about a minute: tiny scenario, gd and ssd x 3 trials

Each (schedule, seed) is one `raysweep sweep` of all --methods x --trials at budget --budget on --slots
trials at once (1 CPU each); --read takes sweep folders run before instead and groups them by the
schedule their sweep.json records (default, deep, or full: no early stopping, the full-fidelity search).
Printed per schedule: the command's wall time, trials per method per
hour (the baseline: the default schedule in the same run, or full where no default ran; `deep / default`
is the gain), the share of the
trials' slot-seconds spent in trials ASHA stopped, the trials stopped, where the trials' slot-seconds go
(checkpoint evaluations, final reports, the rest) and their mean per trial by method, and per method the best objective
found by each seed (the search's own objective on the tuning half) and the verdict of the sweep's best
trial (`raysweep.verdict.judge` on the sweep's tables alone, no re-runs), so "the same answer" can be
read off: the deep schedule's best objective within the seeds' spread of the default's, and the same
verdict. The scenario is prepared before any timing.
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

for k, v in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
             "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}.items():
    os.environ.setdefault(k, v)

CLI = [sys.executable, "-m", "raysweep.cli"]


def summarise(sweep: Path, wall_s: float | None = None) -> dict:
    """One sweep's figures: schedule, seed, trials per method, wall (the command's if given, else the
    sweep's sessions from utilisation.json), slot-seconds in all / stopped trials, best objective and
    verdict per method."""
    from raysweep.results.layout import read_sweep_meta
    from raysweep.results.tables import load_tables
    from raysweep.verdict.judge import judge

    meta = read_sweep_meta(sweep)
    cfg = meta["config"]
    trials, _, scores = load_tables(sweep)
    runs = trials[trials.status != "reference"]
    use = json.loads((sweep / "utilisation.json").read_text())
    wall = wall_s if wall_s is not None else sum(u["wall_s"] for u in use)
    slot_s = (runs.ended.astype(float) - runs.started.astype(float)).clip(lower=0)
    stopped = runs.status == "stopped"
    best = runs[runs.is_best.astype(bool)].set_index("method")
    verdict = judge(trials, tolerance=cfg["tolerance"], attack=meta["attack"], n_test=meta.get("n_test"),
                    scores=scores, meta=meta).table.set_index("method")
    methods = list(cfg["methods"])
    col = lambda k: runs[k].astype(float).fillna(0.0) if k in runs else 0.0 * slot_s  # noqa: E731
    return {"eval_slot_s": float(col("eval_s").sum()), "final_slot_s": float(col("final_eval_s").sum()),
            "per_trial": {m: float(slot_s[runs.method == m].mean()) for m in methods},
            "sweep": meta["name"], "schedule": cfg.get("schedule", "default"), "seed": cfg["seed"],
            "trials": cfg["trials"], "methods": methods, "wall_s": wall,
            "trials_per_method_per_hour": cfg["trials"] / wall * 3600 if wall else float("nan"),
            "slot_s": float(slot_s.sum()), "stopped_slot_s": float(slot_s[stopped].sum()),
            "stopped": int(stopped.sum()), "ran": len(runs),
            "best": {m: float(best.at[m, "objective"]) if m in best.index else None for m in methods},
            "verdict": {m: str(verdict.at[m, "verdict"]) if m in verdict.index else "" for m in methods}}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def table(sums: list[dict]) -> str:
    """The Markdown table: one column per schedule (seeds pooled), and deep / default where both ran."""
    modes = [m for m in ("default", "full", "deep") if any(s["schedule"] == m for s in sums)]
    by = {m: [s for s in sums if s["schedule"] == m] for m in modes}
    base = next((m for m in modes if m != "deep"), None)  # the baseline: the default schedule, else full
    both = base is not None and "deep" in modes
    head = "| measure | " + " | ".join(modes) + (f" | deep / {base} |" if both else " |")
    rows = [head, "|---|" + "---|" * (len(modes) + both)]

    def row(name: str, vals: list[str], ratio: str = "") -> None:
        rows.append(f"| {name} | " + " | ".join(vals) + (f" | {ratio} |" if both else " |"))

    seeds = {m: ", ".join(str(s["seed"]) for s in by[m]) for m in modes}
    row("sweeps (seeds)", [f"{len(by[m])} ({seeds[m]})" for m in modes])
    row("trials per method", [", ".join(str(s["trials"]) for s in by[m]) for m in modes])
    wall = {m: _mean([s["wall_s"] for s in by[m]]) for m in modes}
    row("wall time, s (mean)", [f"{wall[m]:.1f}" for m in modes])
    tph = {m: _mean([s["trials_per_method_per_hour"] for s in by[m]]) for m in modes}
    row("trials per method per hour", [f"{tph[m]:.1f}" for m in modes],
        f"{tph['deep'] / tph[base]:.2f}" if both and tph[base] else "")
    share = {m: sum(s["stopped_slot_s"] for s in by[m]) / max(1e-9, sum(s["slot_s"] for s in by[m])) for m in modes}
    row("share of slot-seconds in stopped trials", [f"{share[m]:.1%}" for m in modes])
    row("trials stopped early", [", ".join(f"{s['stopped']} of {s['ran']}" for s in by[m]) for m in modes])
    per = {m: sum(s["slot_s"] for s in by[m]) / max(1, sum(s["ran"] for s in by[m])) for m in modes}
    row("slot-seconds per trial (mean)", [f"{per[m]:.2f}" for m in modes],
        f"{per['deep'] / per[base]:.2f}" if both and per[base] else "")
    split = {m: [sum(s[k] for s in by[m]) / max(1e-9, sum(s["slot_s"] for s in by[m]))
                 for k in ("eval_slot_s", "final_slot_s")] for m in modes}
    row("of the trials' slot-seconds: checkpoint evaluations; final reports; the rest (unlearning, set-up)",
        [f"{e:.1%}; {f:.1%}; {1 - e - f:.1%}" for e, f in (split[m] for m in modes)])
    methods = list(dict.fromkeys(x for s in sums for x in s["methods"]))
    for x in methods:
        vals = {m: _mean([s["per_trial"].get(x, float("nan")) for s in by[m]]) for m in modes}
        row(f"slot-seconds per trial: {x}", [f"{vals[m]:.2f}" for m in modes],
            f"{vals['deep'] / vals[base]:.2f}" if both and vals[base] else "")
    for x in methods:
        vals = {m: [s["best"].get(x) for s in by[m]] for m in modes}
        cells = [", ".join("none" if v is None else f"{v:.4g}" for v in vals[m]) for m in modes]
        ratio = ""
        if both and all(v is not None for m in (base, "deep") for v in vals[m]) and _mean(vals[base]):
            ratio = f"{_mean(vals['deep']) / _mean(vals[base]):.2f}"
        row(f"best objective: {x} (per seed)", cells, ratio)
    for x in methods:
        vals = {m: [s["verdict"].get(x, "") for s in by[m]] for m in modes}
        cells = ["; ".join(v.split(":")[0] for v in vals[m]) for m in modes]
        same = both and len({v.split(":")[0] for m in (base, "deep") for v in vals[m]}) == 1
        row(f"verdict: {x} (per seed)", cells, ("same" if same else "differs") if both else "")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--methods", default="all")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--modes", default="default,deep")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--store", default=None)
    ap.add_argument("--read", nargs="+", default=None, metavar="SWEEP_DIR", help="summarise these sweeps instead")
    ap.add_argument("--out", default=None, help="also write the table as Markdown here")
    ap.add_argument("--smoke-test", action="store_true")
    a = ap.parse_args()
    if a.smoke_test:
        a.scenario, a.methods, a.trials, a.seeds = "tiny", "gd,ssd", 3, "0"
    if a.read:
        sums = [summarise(Path(p).resolve()) for p in a.read]
    else:
        store = a.store or tempfile.mkdtemp(prefix="raysweep-depth-")
        sets = [x for s in a.overrides for x in ("--set", s)]
        env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rd-", dir="/tmp")}

        def run(argv: list[str]) -> None:
            out = subprocess.run(argv, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"failed: {' '.join(argv)}\n{out.stderr[-3000:]}")

        run([*CLI, "prepare", "--scenario", a.scenario, *sets, "--store", store])
        sums, stamp = [], int(time.time())
        for seed in [int(s) for s in a.seeds.split(",")]:
            for mode in a.modes.split(","):
                name = f"depth-{mode}-{seed}-{stamp}"
                t = time.perf_counter()
                run([*CLI, "sweep", "--scenario", a.scenario, *sets, "--methods", a.methods, "--trials", str(a.trials),
                     "--budget", str(a.budget), "--schedule", mode, "--seed", str(seed), "--max-concurrent",
                     str(a.slots), "--cpus-per-trial", "1", "--name", name, "--store", store, "--device", "cpu"])
                sums.append(summarise(Path(store) / "sweeps" / name, time.perf_counter() - t))
                print(f"[depth] {mode} seed {seed}: {sums[-1]['wall_s']:.0f}s", file=sys.stderr, flush=True)
    text = table(sums)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
