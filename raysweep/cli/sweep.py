"""`raysweep sweep`: tune each unlearner with Optuna inside one Ray Tune experiment, under a budget cap.

    raysweep sweep [--scenario ...] --methods gd,ngd,... [--trials 8] [--budget 0.1] [--address auto] ...

Everything is checked before Ray starts or anything trains: the options, the search spaces, the
sweep name (and on --resume, that the options match the sweep's own), the Ray address and resources.
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import defaults
from ..artifacts import open_store
from ..attacks import ATTACKS
from ..config import load_scenario
from ..errors import ConfigError
from ..prepare.scenario import Scenario, checked_data, prepare, store_key
from ..results.tables import export
from ..sweep.search import run_sweep
from ..sweep.setup import SweepConfig, check_resume, check_sweep_name_free, init_ray, resources
from ..sweep.spaces import load_space
from ..sweep.trackers import check_mlflow_uri, check_optuna_storage
from ..unlearn import METHODS
from .common import add_common, add_scenario_args, setup_device


def add_parser(sub) -> None:
    D = SweepConfig(methods=[])  # SweepConfig's fields default to raysweep/defaults.py
    p = sub.add_parser("sweep", help="tune each unlearner with Optuna inside Ray Tune, under a budget cap")
    add_scenario_args(p)
    add_common(p)
    p.add_argument("--methods", default="all", help="comma-separated methods, or all (default)")
    p.add_argument("--trials", type=int, default=None,
                   help=f"trials per method (default {D.trials}; {defaults.DEEP_TRIALS} with --schedule deep)")
    p.add_argument("--schedule", default=D.schedule, metavar="default|deep|full",
                   help="default: ASHA at 25 %% and 75 %% of the cap; deep: rungs at 1/16 and 1/4 of the cap "
                        "(reduction 4), checkpoints at the rungs only, the constant liar, for 100 trials per method "
                        "within an hour on 2 cores (docs/performance.md, 'Depth per hour'); full: no early stopping")
    p.add_argument("--budget", type=float, default=D.budget,
                   help=f"budget cap per trial, fraction of training compute (default {D.budget})")
    p.add_argument("--address", default=None, help="join an existing Ray cluster (auto, ray://host:10001)")
    p.add_argument("--storage-path", default=None, help="sweeps root, shared on a cluster (default STORE/sweeps)")
    p.add_argument("--name", default=None, help="sweep name (default: scenario-hash-time); reuse with --resume")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial; fractions pack trials on one card (default: 0.25 with GPUs, else 0)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once (default: what resources allow)")
    p.add_argument("--multi-objective", action="store_true", help="search (|GUS_tune|, val_acc); mark Pareto set")
    p.add_argument("--tolerance", type=float, default=D.tolerance,
                   help=f"accuracy floor below θ_retrain (default {D.tolerance})")
    p.add_argument("--seed", type=int, default=0, help="searcher and unlearning seed")
    p.add_argument("--checkpoint-every", type=float, default=D.checkpoint_every,
                   help=f"evaluate and report every this share of the budget cap (default {D.checkpoint_every})")
    p.add_argument("--evidence", default=D.evidence, metavar="best|all",
                   help="full evaluation (test set, MIA, held-out poisons) of each method's best trial after the "
                        "search (best, default), or inside every trial (all)")
    p.add_argument("--discovery", type=float, default=D.discovery, metavar="F",
                   help="share of the poisons the defender found and requests, in (0, 1] (default 1: all); the "
                        "rest stays in the retain set and the search tunes on the found tuning half")
    p.add_argument("--optuna-storage", default=None, metavar="URL",
                   help="keep each method's Optuna study there (sqlite:///sweeps.db, postgresql://..., "
                        "journal:///PATH); open it with optuna-dashboard URL (docs/observe.md)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="log every trial to MLflow (a folder such as ./mlruns, or http(s)://server)")
    p.add_argument("--spaces-dir", default=None, help="folder of <method>.yaml search spaces")
    p.add_argument("--resume", action="store_true", help="continue the sweep --name where it stopped")
    p.set_defaults(func=run, writes_store=True)


def methods_of(text: str) -> list[str]:
    """'all' (every unlearner, the sanity control `scratch` left out) or 'gd,ngd' -> registered method
    names (an unknown one: a ConfigError naming `methods`)."""
    names = [m for m in METHODS.names() if not METHODS.get(m).control] if text == "all" else \
        [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ConfigError("methods", text, "all, or comma-separated method names: " + ", ".join(METHODS.names()))
    for m in names:
        METHODS.get(m, "methods")
    return names


def run(args) -> int:
    methods = methods_of(args.methods)
    defaults.check_seed(args.seed)
    defaults.check_schedule(args.schedule)
    trials = args.trials if args.trials is not None else \
        defaults.DEEP_TRIALS if args.schedule == "deep" else defaults.TRIALS
    cfg = load_scenario(args.scenario, args.overrides)
    if args.discovery != 1.0 and not ATTACKS.get(cfg.attack, "attack").discoverable:
        raise ConfigError("discovery", args.discovery, f"1 for attack {cfg.attack} (a partial request needs an attack "
                          "that judges each poison: gaussian)")
    if args.resume and not args.name:
        raise ConfigError("name", None, "the --name of the sweep to resume")
    name = args.name if args.name is not None else \
        f"{cfg.name or 'scenario'}-{cfg.hash()[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    store = open_store(args.store)
    optuna_storage = None if args.optuna_storage is None else check_optuna_storage(args.optuna_storage)
    sweep_cfg = SweepConfig(methods=methods, trials=trials, schedule=args.schedule, budget=args.budget, name=name,
                            storage_path=args.storage_path or str(store.root / "sweeps"), address=args.address,
                            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                            max_concurrent=args.max_concurrent, multi_objective=args.multi_objective,
                            tolerance=args.tolerance, seed=args.seed, checkpoint_every=args.checkpoint_every,
                            spaces_dir=args.spaces_dir, device=args.device, evidence=args.evidence,
                            discovery=args.discovery,
                            optuna_storage=optuna_storage,
                            mlflow=None if args.mlflow is None else check_mlflow_uri(args.mlflow)).check()
    for m in methods:
        load_space(m, args.spaces_dir)  # bad YAML fails here, before Ray or training starts
    device = setup_device(args, trains=False)
    if args.name or args.resume:
        check_sweep_name_free(sweep_cfg, args.resume)
    if args.resume:  # options that differ from the sweep's own: one line, before Ray starts
        check_resume(sweep_cfg, cfg.hash())
    if not store.has(store_key(cfg.hash())):
        checked_data(cfg, args.data_dir)  # val_size, train_size, attack_params against the data, before Ray
    init_ray(args.address, None)  # an unreachable --address fails here, in seconds
    resources(sweep_cfg)          # a GPU or CPU request the cluster cannot meet fails here
    prepare(cfg, store, device, args.data_dir)
    scen = Scenario.load(store, cfg, "cpu", args.data_dir)
    t0 = time.perf_counter()
    root, complete = run_sweep(scen, sweep_cfg, store, resume=args.resume, device=str(device),
                               data_dir=args.data_dir, auto_name=not args.name)
    name, args.sweep_root = sweep_cfg.name, root  # demo reads the root (a generated name may get a suffix)
    paths = export(root)
    print(f"sweep {name}: {time.perf_counter() - t0:.0f}s; tables: {', '.join(str(p) for p in paths)}")
    print(str(Path(root)))
    return 0 if complete else 130
