"""Pilot for the deep schedule's rungs: how well a trial's objective at a small share of the budget
predicts its objective at the full budget (docs/performance.md, "Depth per hour").

    python bench/pilot_rungs.py --store STORE [--methods gd,ga,neggrad_plus,cfk] [--trials 6] [--out pilot.jsonl]
    python bench/pilot_rungs.py --analyse pilot.jsonl

Per method: the first warm-start point of its space and `--trials - 1` seeded random points (cap_share 1:
every trial runs the whole cap), each unlearned once with budget callbacks every 1/108 of the cap. At the
first callback past each share in SHARES it takes what a sweep's checkpoint takes (validation accuracy
and the tuning half's GUS on 250 poisons, and on the nested 100 of them), at the end what a trial's
final report takes (all of the tuning half): the objective of each. `--analyse` prints, per method and
share, Spearman's rho between the objective there (on 250 poisons, and on the nested 100) and the final
one, and for each candidate schedule (successive halving keeping the best 1/η at
each rung) whether the final best survives and the regret (the best survivor's final objective over the
best one's). Run on two worker processes of one thread each, as a sweep's trials.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SHARES = (1 / 27, 1 / 16, 1 / 9, 1 / 4, 1 / 3, 1 / 2)
EVERY = 1 / 108                      # callbacks fine enough to land within 1/108 of each share
CANDIDATES = {"1/27, 1/9, 1/3 (η 3)": ((1 / 27, 1 / 9, 1 / 3), 3), "1/16, 1/4 (η 4: deep)": ((1 / 16, 1 / 4), 4),
              "1/9, 1/3 (η 3)": ((1 / 9, 1 / 3), 3), "1/4 (η 3: the default's first rung)": ((1 / 4,), 3)}
_SCEN = {}


def _load(store: str, scenario: str):
    import torch

    from raysweep.artifacts import open_store
    from raysweep.config import load_scenario
    from raysweep.prepare.scenario import Scenario

    torch.set_num_threads(1)
    _SCEN["s"] = Scenario.load(open_store(store), load_scenario(scenario, []))


def _one(job: tuple) -> dict:
    """One full-cap run with the checkpoints of SHARES; returns its objectives at each and at the end."""
    import torch

    from raysweep.metrics.gus import gus_summary
    from raysweep.objective import objective
    from raysweep.runs import unlearn_scenario

    method, budget, params, seed, floor = job
    scen = _SCEN["s"]
    refs = {"none": scen.manifest["metrics"]["initial"], "retrain": scen.manifest["metrics"]["retrain"]}
    tune = scen.tune_rows.long()
    pick = torch.randperm(len(tune), generator=torch.Generator().manual_seed(scen.cfg.seed))
    rows100 = tune[pick[:100].sort().values]
    todo, out = list(SHARES), {"method": method, "params": params, "points": []}
    t0 = time.perf_counter()

    def on_checkpoint(model, info):
        if not todo or info["cap_used"] + 1e-9 < todo[0]:
            return False
        while todo and info["cap_used"] + 1e-9 >= todo[0]:
            todo.pop(0)
        m, sc = scen.scored(model, parts=("tune",), full=False, tune_cap=250)
        m100 = {**m, "tune_gus": gus_summary(sc["scores"][rows100], sc["control"][rows100])["gus"]}
        out["points"].append({"share": info["cap_used"], "val_acc": m["val_acc"],
                              "objective": objective(scen.attack.effect(m, refs), m["val_acc"], floor),
                              "objective100": objective(scen.attack.effect(m100, refs), m["val_acc"], floor)})
        return False

    res = unlearn_scenario(scen, method, budget, params, seed, on_checkpoint, EVERY)
    final, _ = scen.scored(res.model, parts=("tune",), full=False)
    out.update(final=objective(scen.attack.effect(final, refs), final["val_acc"], floor, res.diverged),
               val_acc=final["val_acc"], wall_s=time.perf_counter() - t0, unlearn_wall_s=res.wall_s)
    return out


def _configs(method: str, n: int, seed: int) -> list[dict]:
    import optuna

    from raysweep.sweep.spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(method)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = [dict(space.warm_start[0])] if space.warm_start else []
    while len(points) < n:
        points.append(study.ask(space.optuna()).params)
    return [{k: v for k, v in {**space.fixed, **p}.items() if k != "cap_share"} for p in points[:n]]  # the whole cap


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va and vb else float("nan")


def _at(run: dict, share: float, key: str = "objective") -> float:
    """The objective at the first checkpoint at or past `share` (the run's final one past its last)."""
    for p in run["points"]:
        if p["share"] + 1e-9 >= share:
            return p[key]
    return run["final"]


def analyse(runs: list[dict]) -> str:
    lines = []
    methods = list(dict.fromkeys(r["method"] for r in runs))
    head = " | ".join(f"ρ at {s:.3g}" for s in SHARES)
    lines += [f"| method | trials | {head} |", "|---|---|" + "---|" * len(SHARES)]
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        final = [r["final"] for r in rs]
        for key, label in (("objective", ""), ("objective100", " (100 poisons)")):
            rho = [spearman([_at(r, s, key) for r in rs], final) for s in SHARES]
            lines.append(f"| {m}{label} | {len(rs)} | " + " | ".join(f"{x:.2f}" for x in rho) + " |")
    lines += ["", "| schedule (keep the best 1/η at each rung) | final best kept, methods | worst regret "
              "(best kept / best, feasible) | full-cap shares spent per trial |", "|---|---|---|---|"]
    for name, (rungs, reduction) in CANDIDATES.items():
        kept_best, regrets, cost = 0, [], []
        for m in methods:
            rs = [r for r in runs if r["method"] == m]
            alive, spent = list(range(len(rs))), 0.0
            last = 0.0
            for share in rungs:
                spent += len(alive) * (share - last)
                last = share
                keep = max(1, -(-len(alive) // reduction))
                alive = sorted(alive, key=lambda i: _at(rs[i], share))[:keep]
            spent += len(alive) * (1 - last)
            best = min(range(len(rs)), key=lambda i: rs[i]["final"])
            kept_best += best in alive
            got = min(rs[i]["final"] for i in alive)
            if rs[best]["final"] < 1e5:
                regrets.append(got / rs[best]["final"] if rs[best]["final"] > 0 else float("inf"))
            cost.append(spent / len(rs))
        lines.append(f"| {name} | {kept_best} of {len(methods)} | {max(regrets) if regrets else float('nan'):.2f} | "
                     f"{sum(cost) / len(cost):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--methods", default="gd,ga,neggrad_plus,cfk")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="pilot_rungs.jsonl")
    ap.add_argument("--analyse", default=None, metavar="FILE", help="print the tables of a pilot's FILE")
    a = ap.parse_args()
    if a.analyse:
        print(analyse([json.loads(ln) for ln in Path(a.analyse).read_text().splitlines() if ln.strip()]))
        return
    if not a.store:
        sys.exit("--store is needed (the default scenario prepared there)")
    from raysweep.artifacts import open_store
    from raysweep.config import load_scenario
    from raysweep.prepare.scenario import Scenario

    scen = Scenario.load(open_store(a.store), load_scenario(a.scenario, []))
    floor = scen.manifest["metrics"]["retrain"]["val_acc"] - a.tolerance
    jobs = [(m, a.budget, p, a.seed, floor) for i, m in enumerate(a.methods.split(","))
            for p in _configs(m, a.trials, a.seed + i)]
    jobs.sort(key=lambda j: j[0] not in ("scrub", "ngd"))  # the longest first
    t0 = time.perf_counter()
    import multiprocessing as mp

    with ProcessPoolExecutor(a.workers, mp_context=mp.get_context("spawn"), initializer=_load,
                             initargs=(a.store, a.scenario)) as pool, open(a.out, "w") as f:
        for r in pool.map(_one, jobs):
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(f"{r['method']}: final {r['final']:.4g} in {r['wall_s']:.0f}s", file=sys.stderr, flush=True)
    print(f"{len(jobs)} runs in {time.perf_counter() - t0:.0f}s on {a.workers} workers ({os.cpu_count()} CPUs)")
    print(analyse([json.loads(ln) for ln in Path(a.out).read_text().splitlines() if ln.strip()]))


if __name__ == "__main__":
    main()
