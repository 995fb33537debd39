"""`raysweep attack-search`: search the poison against the tuned defenders (docs/attack_search.md).

    raysweep attack-search [--scenario tiny] [--mode worst|boundary] [--space eps2=0.01:1:log,k=32:1024]
                           [--points 10] [--stealth 0.02] [--methods all] [--trials 8] [--budget 0.1] ...

Everything is checked before Ray starts or anything trains: the options, the space against the attack's
declared parameters and bounds, every corner of the space against the data, the inner sweep's options and
search spaces, and on a second call that it is the same search (it then continues where it stopped).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .. import defaults as D
from ..artifacts import open_store
from ..attack_search.plan import MODES, Plan, check_plan, parse_space
from ..attack_search.run import Inner, open_search, run_search, search_record
from ..attack_search.table import write_tables
from ..config import check_name, load_scenario
from ..errors import check_number
from ..report.build import attack_search_report
from ..sweep.setup import SweepConfig, init_ray, resources
from ..sweep.spaces import load_space
from .common import add_common, add_scenario_args, setup_device
from .sweep import methods_of


def add_parser(sub) -> None:
    S = SweepConfig(methods=[])
    p = sub.add_parser("attack-search", help="search the attack's parameters against every tuned unlearner: the "
                                             "worst case under stealth, or where each verdict stops being fails")
    add_scenario_args(p)
    add_common(p)
    p.add_argument("--mode", default="worst", choices=MODES,
                   help="worst: maximise the held-out effect the best tuned method leaves (default); boundary: "
                        "bisect along one parameter for where each method's verdict stops being fails")
    p.add_argument("--space", default=None, metavar="SPEC",
                   help="searched parameters: NAME, NAME=LO:HI or NAME=LO:HI:log, comma-separated (default: every "
                        "parameter the attack declares, at its default range; boundary mode: exactly one)")
    p.add_argument("--points", type=int, default=D.ATTACK_POINTS,
                   help=f"outer points, each a scenario and a full sweep (default {D.ATTACK_POINTS}); a second call "
                        "with more continues the search")
    p.add_argument("--stealth", type=float, default=D.STEALTH,
                   help=f"θ_initial's test accuracy at most this below the clean model's (default {D.STEALTH})")
    p.add_argument("--name", default=None, help="the search's folder name (default: SCENARIO-ATTACK-MODE)")
    p.add_argument("--storage-path", default=None, help="attack searches' root (default STORE/attack_search)")
    p.add_argument("--methods", default="all", help="comma-separated methods of the inner sweeps, or all")
    p.add_argument("--trials", type=int, default=S.trials, help=f"inner trials per method (default {S.trials})")
    p.add_argument("--budget", type=float, default=S.budget, help=f"inner budget cap (default {S.budget})")
    p.add_argument("--tolerance", type=float, default=S.tolerance,
                   help=f"the inner sweeps' accuracy floor below θ_retrain (default {S.tolerance})")
    p.add_argument("--checkpoint-every", type=float, default=S.checkpoint_every)
    p.add_argument("--seeds", type=int, default=0,
                   help="fresh unlearning seeds per best configuration for each point's verdict (default 0: the "
                        "selected trial judged on its held-out half)")
    p.add_argument("--margin", type=float, default=D.MARGIN, help=f"equivalence margin δ (default {D.MARGIN})")
    p.add_argument("--alpha", type=float, default=D.ALPHA, help=f"family-wise level (default {D.ALPHA})")
    p.add_argument("--seed", type=int, default=0, help="outer and inner search seed (default 0)")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (auto, ray://host:10001)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=None)
    p.add_argument("--max-concurrent", type=int, default=0, help="inner trials at once (default: what fits)")
    p.add_argument("--spaces-dir", default=None, help="folder of <method>.yaml search spaces")
    p.set_defaults(func=run, writes_store=True)


def run(args) -> int:
    methods = methods_of(args.methods)
    D.check_seed(args.seed)
    stealth = D.check_stealth(args.stealth)
    check_number("points", args.points, lo=1, hi=D.MAX_TRIALS, integer=True, what="outer points")
    check_number("seeds", args.seeds, lo=0, hi=D.MAX_SEEDS, integer=True)
    D.check_margin(args.margin)
    D.check_alpha(args.alpha)
    cfg = load_scenario(args.scenario, args.overrides)
    axes = parse_space(args.space, cfg.attack)
    plan = Plan(cfg.attack, axes, args.mode, args.points, stealth, args.seed, fixed=dict(cfg.attack_params))
    store = open_store(args.store)
    default_name = f"{cfg.name or 'scenario'}-{cfg.attack}-{args.mode}"
    name = check_name("name", default_name if args.name is None else args.name)
    root = Path(args.storage_path or store.root / "attack_search").expanduser().resolve() / name
    sweep = SweepConfig(methods=methods, trials=args.trials, budget=args.budget, name="p000",
                        storage_path=str(root / "sweeps"), address=args.address, cpus_per_trial=args.cpus_per_trial,
                        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                        tolerance=args.tolerance, seed=args.seed, checkpoint_every=args.checkpoint_every,
                        spaces_dir=args.spaces_dir, device=args.device).check()
    for m in methods:
        load_space(m, args.spaces_dir)
    inner = Inner(sweep, args.alpha, args.margin, args.seeds)
    record = search_record(plan, cfg, inner)
    open_search(root, record, write=False)  # a different search under this name: one line, before Ray
    device = setup_device(args, trains=False)
    check_plan(plan, cfg, args.data_dir)  # last of the checks: it loads the data for every corner of the space
    init_ray(args.address, None)
    resources(sweep)
    open_search(root, record)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    points, complete = run_search(root, plan, cfg, inner, store, str(device), args.data_dir, log)
    tables = write_tables(root, plan, points)
    report = attack_search_report(root)
    print(tables["attack_points"].to_string(index=False, na_rep="–"))
    if len(tables["attack_boundary"]):
        print(tables["attack_boundary"][["method", "reading"]].to_string(index=False))
    print(report)
    print(str(root))
    if not complete:
        log("[attack-search] interrupted: the same command continues the search")
    return 0 if complete else 130
