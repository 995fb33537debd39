"""The outer loop: one outer point after another, each a prepared scenario, a full sweep and a verdict.

Each point's record is one JSON file under ROOT/points/, written atomically at each step (proposed →
swept → done, or not stealthy), so a killed search resumes where it stopped: a finished point is never
run again, a point cut inside its sweep resumes that sweep (`run_sweep(resume=True)`), and a point whose
attack parameters repeat an earlier one's (the same scenario hash) copies its record and runs nothing.
The scenarios are content-addressed in the store (`prepare` returns at once for one already built).
Points run one after the other: Ray Tune does not run two Tuners on one cluster at once (docs/sweep.md),
so the slots are shared by the trials of one point's methods at a time (docs/attack_search.md, "Limits").
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..artifacts import atomic_write_text, read_json
from ..config import ScenarioConfig
from ..errors import ConfigError
from ..prepare.scenario import Scenario, prepare
from ..results.tables import export, read_tables
from ..stats.evidence import missing
from ..sweep.search import run_sweep
from ..sweep.setup import SweepConfig
from ..verdict.judge import judge
from ..verdict.pool import rerun_best
from . import PLAN_FILE
from .plan import Plan, propose

POINTS, SWEEPS = "points", "sweeps"
FINAL = ("done", "not stealthy")
# what must match for the same command to continue a search (everything but --points, which may grow)
RESUME_FIELDS = ("attack", "scenario", "space", "mode", "stealth", "seed", "inner")


@dataclass
class Inner:
    """The inner defender search at every point, and how its verdict is taken."""

    sweep: SweepConfig   # methods, trials, budget, tolerance, seed, resources (name and path set per point)
    alpha: float
    margin: float
    seeds: int = 0       # fresh unlearning seeds per best configuration (0: the selected trial judges itself)

    def record(self) -> dict:
        keep = ("methods", "trials", "budget", "tolerance", "seed", "checkpoint_every", "asha_grace", "evidence")
        return {**{k: getattr(self.sweep, k) for k in keep}, "alpha": self.alpha, "margin": self.margin,
                "seeds": self.seeds}


def space_text(plan: Plan) -> str:
    """The searched space as `--space` takes it (eps2=0.01:1:log,k=32:1024:log)."""
    return ",".join(f"{a.name}={a.lo:g}:{a.hi:g}:{'log' if a.log else 'lin'}" for a in plan.axes)


def search_record(plan: Plan, base: ScenarioConfig, inner: Inner) -> dict:
    return {"attack": plan.attack, "scenario": base.hash(), "scenario_name": base.name, "space": space_text(plan),
            "axes": [asdict(a) for a in plan.axes], "mode": plan.mode, "stealth": plan.stealth, "seed": plan.seed,
            "fixed": plan.fixed, "inner": inner.record(), "points": plan.points}


def open_search(root: Path, record: dict, write: bool = True) -> None:
    """A new search writes its record (`write`); the same command finds its own and continues; a different
    one is one line naming the first field that differs (before anything trains)."""
    f = root / PLAN_FILE
    if not f.is_file():
        if not write:
            return
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(f, json.dumps(record, indent=1, default=str))
        return
    saved = read_json(f, f"remove {root} to start this attack search again")
    plain = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731
    for k in RESUME_FIELDS:
        was, now = plain(saved.get(k)), plain(record[k])
        if k == "inner":  # name the inner option that differs
            k, was, now = next(((n, was.get(n), now[n]) for n in now if was.get(n) != now[n]), (k, was, now))
        if was != now:
            raise ConfigError(k, now, f"{was!r} as when the attack search in {root} started (drop the option or "
                              "pass a new --name)")
    if write and saved.get("points") != record["points"]:
        atomic_write_text(f, json.dumps({**saved, "points": record["points"]}, indent=1, default=str))


def point_file(root: Path, index: int) -> Path:
    return root / POINTS / f"p{index:03d}.json"


def write_point(root: Path, rec: dict) -> dict:
    atomic_write_text(point_file(root, rec["index"]), json.dumps(rec, indent=1, default=str))
    return rec


def read_points(root: Path) -> list[dict]:
    folder = root / POINTS
    files = sorted(folder.glob("p*.json")) if folder.is_dir() else []
    return [read_json(f, f"remove {f} to run that point again") for f in files]


def outcomes_of(rec: dict) -> dict | None:
    """{method: outcome} of a judged point (only methods with a verdict), or None."""
    if rec.get("status") != "done":
        return None
    return {m: v["outcome"] for m, v in rec["methods"].items() if v.get("outcome")}


def run_search(root: Path, plan: Plan, base: ScenarioConfig, inner: Inner, store, device: str = "cpu",
               data_dir: str | None = None, log=print) -> tuple[list[dict], bool]:
    """Run the points not on file, up to plan.points. Returns (every point on file, complete); complete is
    False when a sweep was interrupted (the same command resumes it)."""
    points = read_points(root)
    done = [p for p in points if p.get("status") in FINAL]
    cut = next((p for p in points if p.get("status") not in FINAL), None)
    log(f"[attack-search] {plan.mode} over {', '.join(plan.names)} of {plan.attack}: {len(done)} of {plan.points} "
        f"point(s) on file -> {root}")
    for i in range(len(done), plan.points):
        rec = cut if cut is not None and cut["index"] == i else None
        if rec is None:
            values = propose(plan, done, i, outcomes_of)
            if values is None:
                log(f"[attack-search] every method's bracket is closed after {len(done)} point(s): nothing to bisect")
                break
            cfg = plan.scenario(base, values)
            rec = {"index": i, "values": values, "attack_params": cfg.attack_params, "scenario": cfg.hash(),
                   "status": "proposed"}
            same = next((d for d in done if d["scenario"] == rec["scenario"]), None)
            if same is not None:  # a repeated point: its scenario and its sweep are those of the earlier one
                done.append(write_point(root, {**same, "index": i, "values": values, "repeat_of": same["index"]}))
                log(f"[attack-search] point {i}: {values} repeats point {same['index']}: nothing run")
                continue
            write_point(root, rec)
        log(f"[attack-search] point {i}: {rec['values']} (scenario {rec['scenario']})")
        rec = run_point(root, plan, base, rec, inner, store, device, data_dir, log)
        if rec is None:
            return read_points(root), False
        done.append(rec)
    return read_points(root), True


def run_point(root: Path, plan: Plan, base: ScenarioConfig, rec: dict, inner: Inner, store, device: str,
              data_dir: str | None, log) -> dict | None:
    """Prepare the point's scenario, test stealth, sweep (resuming a cut sweep), judge. None: interrupted."""
    cfg = plan.scenario(base, rec["values"])
    manifest, _ = prepare(cfg, store, device, data_dir, log=log)
    m = manifest["metrics"]
    ini, clean = float(m["initial"]["test_acc"]), float(m["retrain"]["test_acc"])
    rec["k"] = manifest["k"]
    rec["stealth"] = {"initial_test_acc": ini, "clean_test_acc": clean, "drop": clean - ini,
                      "feasible": clean - ini <= plan.stealth}
    if not rec["stealth"]["feasible"]:
        log(f"[attack-search] point {rec['index']}: not stealthy (θ_initial's test accuracy {ini:.3f}, "
            f"{clean - ini:.3f} below the clean model's, tolerance {plan.stealth:g}): no sweep")
        return write_point(root, {**rec, "status": "not stealthy", "objective": None, "methods": {}})
    name = f"p{rec['index']:03d}"
    sdir = root / SWEEPS / name
    if rec["status"] != "swept":
        scfg = replace(inner.sweep, name=name, storage_path=str(root / SWEEPS))
        resume = (sdir / "sweep.json").is_file()
        if sdir.exists() and not resume:  # claimed but cut before its sweep.json: nothing in it to keep
            shutil.rmtree(sdir)
        scen = Scenario.load(store, cfg, "cpu", data_dir)
        _, complete = run_sweep(scen, scfg, store, resume=resume, device=device, data_dir=data_dir)
        if not complete:
            write_point(root, rec)
            return None
        rec = write_point(root, {**rec, "status": "swept", "sweep": f"{SWEEPS}/{name}"})
    return write_point(root, {**rec, **judged(sdir, inner, log), "status": "done"})


def judged(sweep: Path, inner: Inner, log) -> dict:
    """The report's judgement of a point's sweep (verdict/judge.py), at `inner.seeds` fresh seeds (0: each
    method's selected trial judged on its held-out half), and what the outer search reads from it."""
    export(sweep)
    meta, trials, _, scores = read_tables(sweep)
    sr = rerun_best(meta, trials, inner.seeds, 0, log) if inner.seeds else None
    j = judge(trials, inner.alpha, meta["config"]["tolerance"], meta["attack"], meta.get("n_test"), sr, inner.margin,
              scores, meta)
    t = j.table.set_index("method")
    num = lambda v: None if missing(v) else float(v)  # noqa: E731
    text = lambda v: None if missing(v) else str(v)  # noqa: E731
    base = num(t.loc["none", "effect"]) if "none" in t.index else None
    p0 = num(t.loc["none", "p_fails"]) if "none" in t.index else None
    methods = {}
    for m, r in t[t.status != "reference"].iterrows():
        eff = num(r.get("effect"))
        methods[m] = {"outcome": text(r.get("outcome")), "effect": eff,
                      "effect_lo": num(r.get("effect_lo")), "effect_hi": num(r.get("effect_hi")),
                      "remaining": eff / base if eff is not None and base else None,
                      "p_fails": num(r.get("p_fails")), "p_removes": num(r.get("p_removes")),
                      "test_acc": num(r.get("test_acc")), "accuracy": text(r.get("accuracy")),
                      "verdict": text(r.get("verdict")), "config": text(r.get("config"))}
    left = [abs(v["effect"]) for v in methods.values() if v["effect"] is not None]
    return {"initial": {"effect": base, "p_fails": p0, "took": p0 is not None and p0 <= inner.alpha},
            "methods": methods, "objective": min(left) if left else None}
