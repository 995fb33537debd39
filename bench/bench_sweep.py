"""The sweep engine against its limit and against the anchors' shell loop, on the same trials.

    python bench/bench_sweep.py [--scenario default] [--trials 4] [--budget 0.1] [--slots 2] [--out FILE.md]
    python bench/bench_sweep.py --smoke-test          # about 1.5 minutes: tiny scenario, 2 methods x 2 trials
    python bench/bench_sweep.py --budget 0.3 --no-loop  # (a) against (c) only, at another budget

(a) `raysweep sweep`: all methods x --trials, budget cap --budget, --slots trials at once (1 CPU each).
(b) the anchors' way: one `raysweep unlearn --threads 1` process per trial of (a) (same method,
    hyperparameters and budget share), --slots at a time, every trial to its full budget, each with a
    full evaluation at the end.
(c) the limit: the bare unlearning compute (a)'s trials spent (a trial stopped early counts what it
    ran: its budget_spent), re-run without evaluation, checkpoints or Ray, --slots processes at once,
    summed and divided by the slots.
(c+) the limit of a search that evaluates as (a) does: (c) plus (a)'s checkpoint evaluations, final reports
    and after-search evidence (as (a)'s trials and driver timed them), divided by the slots.
(d) the floor under any Ray Tune sweep here: a process that imports torch and Ray Tune, starts Ray and
    runs as many no-op trials (each importing a trial's modules) --slots at a time, then exits
    (bench/_tune_floor.py). "floor": (c) + (d) + (a)'s final reports / slots, (a)'s trials as they ran
    with only the finished ones' objective evaluations, no checkpoint evaluation, no evidence, no idle
    slot; "floor with the checkpoints" adds (a)'s checkpoint evaluations (ASHA's and the curve's).
Goals: (b) / (a) >= 1.5, and (a) <= 1.15 x (c); the floor shows whether the second can be met on this
machine at all (docs/performance.md).
The scenario is prepared before any timing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

for k, v in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
             "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}.items():
    os.environ.setdefault(k, v)

CLI = [sys.executable, "-m", "raysweep.cli"]


def _hp_args(row: dict) -> list[str]:
    out = []
    for k, v in row.items():
        if k.startswith("hp_") and v is not None and v == v:
            out += ["--hp", f"{k[3:]}={v}"]
    return out


def _bare(job: tuple) -> float:
    """One trial's unlearning alone (no evaluation, no checkpoints, no Ray), one thread; its wall time."""
    store, scenario, overrides, method, budget, hparams, seed = job
    import torch

    from raysweep.artifacts import LocalStore
    from raysweep.config import load_scenario
    from raysweep.prepare.scenario import Scenario
    from raysweep.runs import unlearn_scenario

    torch.set_num_threads(1)
    scen = Scenario.load(LocalStore(store), load_scenario(scenario, overrides))
    t = time.perf_counter()
    unlearn_scenario(scen, method, budget, hparams, seed, None, 1.0)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--methods", default="all")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--store", default=None)
    ap.add_argument("--out", default=None, help="also write the table as Markdown here")
    ap.add_argument("--smoke-test", action="store_true")
    ap.add_argument("--no-loop", action="store_true", help="skip (b), the shell loop (the longest part)")
    a = ap.parse_args()
    if a.smoke_test:
        a.scenario, a.methods, a.trials = "tiny", "gd,ssd", 2
    store = a.store or tempfile.mkdtemp(prefix="raysweep-bench-")
    sets = [x for s in a.overrides for x in ("--set", s)]
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rb-", dir="/tmp")}

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        out = subprocess.run(argv, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"failed: {' '.join(argv)}\n{out.stderr[-3000:]}")
        return out

    run([*CLI, "prepare", "--scenario", a.scenario, *sets, "--store", store])

    # (a) the sweep
    name = f"bench-{int(time.time())}"
    t = time.perf_counter()
    sweep_out = run([*CLI, "sweep", "--scenario", a.scenario, *sets, "--methods", a.methods, "--trials", str(a.trials),
                     "--budget", str(a.budget), "--max-concurrent", str(a.slots), "--cpus-per-trial", "1",
                     "--name", name, "--store", store, "--device", "cpu"])
    t_sweep = time.perf_counter() - t
    import pandas as pd

    sweep_dir = Path(store) / "sweeps" / name
    trials = pd.read_parquet(sweep_dir / "trials.parquet")
    runs = trials[trials.status != "reference"].to_dict("records")
    use = json.loads((sweep_dir / "utilisation.json").read_text())[-1]

    # (b) the shell loop: one process per trial, --slots at a time, each to its full budget
    def one(row: dict) -> float:
        t0 = time.perf_counter()
        run([*CLI, "unlearn", "--scenario", a.scenario, *sets, "--method", row["method"], "--budget",
             str(a.budget * float(row.get("cap_share") or 1.0)), *_hp_args(row), "--threads", "1", "--store", store,
             "--device", "cpu", "--json"])
        return time.perf_counter() - t0

    t_loop = float("nan")
    if not a.no_loop:
        t = time.perf_counter()
        with ThreadPoolExecutor(a.slots) as pool:
            list(pool.map(one, runs))
        t_loop = time.perf_counter() - t

    # (c) the limit: what (a)'s trials spent, unlearning only
    jobs = []
    for row in runs:
        spent = row.get("budget_spent")
        if spent is None or spent != spent or row["status"] == "errored":
            continue
        hp = {k[3:]: v for k, v in row.items() if k.startswith("hp_") and v is not None and v == v}
        jobs.append((store, a.scenario, a.overrides, row["method"], float(spent), hp, 0))
    with ProcessPoolExecutor(a.slots) as pool:
        bare = list(pool.map(_bare, jobs))
    t_limit = sum(bare) / a.slots

    # (d) the floor: Ray Tune's own start, trials and stop, with no work in the trials
    t = time.perf_counter()
    floor_out = run([sys.executable, str(Path(__file__).with_name("_tune_floor.py")), str(len(runs)), str(a.slots)])
    t_floor = time.perf_counter() - t
    n_noop = floor_out.stdout.strip().splitlines()[-1].split(": ")[-1]

    stopped = sum(r["status"] == "stopped" for r in runs)
    # (a) - (c) in slot-seconds, by where it went; the parts add up to it exactly:
    # 2 x (a) = slots x (search + evidence + outside Tune), and the search's slot-seconds are the trials' wall
    # times (evaluations + unlearning) plus the idle ones
    def col(key: str, method: str | None = None) -> float:
        return sum(float(r.get(key) or 0.0) for r in runs
                   if r.get(key) == r.get(key) and method in (None, r["method"]))

    def unlearning(method: str | None = None) -> float:  # the trials' time less their evaluations
        return col("wall_s", method) - col("eval_s", method) - col("final_eval_s", method)

    def share(method: str | None = None) -> str:
        u = unlearning(method)
        return f"{col('eval_s', method) / u:.1%}" if u > 0 else "n/a"

    ev_s, outside = use.get("evidence_s", 0.0), t_sweep - use["wall_s"] - use.get("evidence_s", 0.0)
    ev_tail = use.get("evidence_tail_slot_s", 0.0)  # the evidence done in the search's idle tail (tail.py)
    parts = {"checkpoint evaluations": col("eval_s"), "final reports": col("final_eval_s"),
             "checkpoint reports (the trial waits for the driver's reply)": col("report_s"),
             "rest of the trials (their unlearning beyond (c)'s re-run, set-up, errored trials)":
                 unlearning() - sum(bare) - col("report_s"),
             "idle slots in the search": use["available_slot_s"] - col("wall_s") - ev_tail,
             "evidence in the search's idle tail": ev_tail,
             "evidence after the search": ev_s * a.slots, "outside Tune": outside * a.slots}
    t_evals = (sum(bare) + parts["checkpoint evaluations"] + parts["final reports"]
               + ev_tail + parts["evidence after the search"]) / a.slots
    floor = t_limit + t_floor + parts["final reports"] / a.slots
    floor_ckpt = floor + parts["checkpoint evaluations"] / a.slots
    methods = sorted({r["method"] for r in runs})
    rows = [("(a) raysweep sweep", f"{t_sweep:.1f} s", f"{len(runs)} trials, {stopped} stopped early by ASHA"),
            ("(b) shell loop of `raysweep unlearn`", "skipped" if a.no_loop else f"{t_loop:.1f} s",
             f"{a.slots} at a time, full budgets"),
            ("(c) limit: bare unlearning / slots", f"{t_limit:.1f} s", f"sum {sum(bare):.1f} s over {len(bare)} runs"),
            ("(a) / (c)", f"{t_sweep / t_limit:.2f}",
             f"goal <= 1.15: {'met' if t_sweep <= 1.15 * t_limit else 'not met'}; "
             f"the floor below is {floor / t_limit:.2f} x (c)"),
            ("(c+) limit with the search's evaluations", f"{t_evals:.1f} s",
             "(c) plus the checkpoint evaluations, final reports and evidence as (a) measured them, / slots"),
            ("(a) / (c+)", f"{t_sweep / t_evals:.2f}", "what the engine itself adds: Python, Ray, idle slots"),
            ("(d) a Tune sweep of as many no-op trials", f"{t_floor:.1f} s",
             f"{n_noop} no-op trials: imports, Ray's start and stop, the trials' workers (bench/_tune_floor.py)"),
            ("floor: (c) + (d) + final reports / slots", f"{floor:.1f} s",
             f"{floor / t_limit:.2f} x (c): (a)'s trials with only the objective evaluations of the "
             f"{sum(float(r.get('final_eval_s') or 0) > 0 for r in runs)} that finished"),
            ("floor with the checkpoints: + checkpoint evaluations / slots", f"{floor_ckpt:.1f} s",
             f"{floor_ckpt / t_limit:.2f} x (c): with the evaluations ASHA and the GUS-vs-budget curve use"),
            ("(b) / (a)", "skipped" if a.no_loop else f"{t_loop / t_sweep:.2f}",
             "goal >= 1.5" + ("" if a.no_loop else f": {'met' if t_loop >= 1.5 * t_sweep else 'not met'}")),
            ("slots busy (sweep)", f"{use['busy_share']:.0%}",
             f"{use['busy_slot_s']:.0f} of {use['available_slot_s']:.0f} slot-seconds"),
            ("evaluation share of trial time", f"{use['eval_share']:.1%}", "checkpoint evaluations only"),
            ("checkpoint evaluation / unlearning", share(),
             "all trials together (the trials' time less their evaluations); by method: "
             + ", ".join(f"{m} {share(m)}" for m in methods)),
            ("(a) split", f"{use['wall_s']:.1f} + {ev_s:.1f} + {outside:.1f} s",
             f"search in Tune (with the evidence of {use.get('evidence_tail_trials', 0)} best trial(s) in its tail) "
             f"+ full evidence of {use.get('evidence_trials', 0)} best trial(s) after it + the rest "
             "(imports, Ray start, loading the scenario, export)"),
            ("(a) - (c), slot-seconds", f"{t_sweep * a.slots - sum(bare):.0f}",
             "; ".join(f"{k} {v:.0f}" for k, v in parts.items()))]
    head = (f"scenario {a.scenario} {' '.join(a.overrides)}, methods {a.methods} x {a.trials}, budget {a.budget}, "
            f"{a.slots} slots; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")
    table = "\n".join([head, "", "| measure | value | note |", "|---|---|---|",
                       *(f"| {m} | {v} | {n} |" for m, v, n in rows)])
    print(table)
    if a.out:
        from raysweep.artifacts import atomic_write_text

        atomic_write_text(Path(a.out), table + "\n")
    print(sweep_out.stderr.strip().splitlines()[-1], file=sys.stderr)


if __name__ == "__main__":
    main()
