"""The `raysweep` command line.

    raysweep prepare [--scenario default|tiny|FILE.yaml] [--set train.epochs=5] [--store DIR] [--json]
    raysweep unlearn [--scenario ...] --method gd [--budget 0.1] [--hp lr=1e-2 ...] [--json]
    raysweep sweep   [--scenario ...] --methods gd,ngd,... [--trials 8] [--budget 0.1] [--address auto] ...
    raysweep export  SWEEP [--format parquet|csv] [--out DIR]
    raysweep report  SWEEP [--out DIR] [--seeds N]
    raysweep curve   SWEEP [--budgets 0.02,...,1.0] [--seeds N]     the budget axis up to retraining's compute
    raysweep explain SWEEP [--draws 3] [--m 32]                  H1 / H2: why unlearning fails
    raysweep demo    [--trials 3] [--budget 0.1]     prepare + sweep every method + report, on the bundled data

Bad input prints one line `raysweep: error: ...` naming the field and exits with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import defaults
from .config import PRESETS
from .errors import RaysweepError

DEFAULT_STORE = os.environ.get("RAYSWEEP_STORE", "raysweep-out")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=DEFAULT_STORE,
                   help="artifact and results root (default: $RAYSWEEP_STORE or ./raysweep-out)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="default", help="a preset (" + ", ".join(PRESETS) + ") or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. train.epochs=5 or attack_params.k=250 (repeatable)")
    p.add_argument("--data-dir", default=None, help="folder holding an existing copy of the dataset")


def build_parser() -> argparse.ArgumentParser:
    from .sweep.setup import SweepConfig

    D = SweepConfig(methods=[])  # SweepConfig's fields default to raysweep/defaults.py
    ap = argparse.ArgumentParser(prog="raysweep", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare", help="poison the data, train θ_initial and θ_retrain, evaluate both (once)")
    _scenario_args(p)
    _common(p)
    p.add_argument("--json", action="store_true", help="print the manifest's metrics as JSON on stdout")
    p.add_argument("--seeds", type=int, default=1, help="prepare scenario seeds seed..seed+N-1 (each cached) and "
                   "print the spread of θ_initial's and θ_retrain's figures (default 1)")
    p.add_argument("--references", default=defaults.REFERENCES,
                   help="train θ_initial and θ_retrain at once on half the threads each (parallel), one after "
                   "the other on all (sequential), or auto: parallel for a large enough CPU job (default auto; "
                   "docs/performance.md). Thread counts change a model's last bits: docs/decisions.md")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("unlearn", help="run one unlearning method on a prepared scenario and evaluate it")
    _scenario_args(p)
    _common(p)
    p.add_argument("--method", required=True, help="a registered unlearning method (raysweep/unlearn/, plug-ins)")
    p.add_argument("--budget", type=float, default=defaults.BUDGET,
                   help=f"compute cap, a fraction of θ_initial's training compute (default {defaults.BUDGET})")
    p.add_argument("--hp", dest="hparams", action="append", default=[], metavar="NAME=VALUE",
                   help="a method hyperparameter, e.g. lr=1e-2 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="unlearning seed (batch order, noise, re-init)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("sweep", help="tune each unlearner with Optuna inside Ray Tune, under a budget cap")
    _scenario_args(p)
    _common(p)
    p.add_argument("--methods", default="all", help="comma-separated methods, or all (default)")
    p.add_argument("--trials", type=int, default=D.trials, help=f"trials per method (default {D.trials})")
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
    p.add_argument("--optuna-storage", default=None, metavar="URL",
                   help="keep each method's Optuna study there (sqlite:///sweeps.db, postgresql://..., "
                        "journal:///PATH); open it with optuna-dashboard URL (docs/observe.md)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="log every trial to MLflow (a folder such as ./mlruns, or http(s)://server)")
    p.add_argument("--spaces-dir", default=None, help="folder of <method>.yaml search spaces")
    p.add_argument("--resume", action="store_true", help="continue the sweep --name where it stopped")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("export", help="write a sweep's trials and history as Parquet or CSV tables")
    p.add_argument("sweep", help="a sweep directory (or a name under --storage-path)")
    p.add_argument("--format", default="parquet", help="parquet (default) or csv")
    p.add_argument("--out", default=None, help="output folder (default: the sweep directory)")
    p.add_argument("--store", default=DEFAULT_STORE)
    p.add_argument("--storage-path", default=None)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="verdict table, figures, Markdown + HTML, from a sweep's tables")
    p.add_argument("sweep", help="a sweep directory, an export folder, or a sweep name under --storage-path")
    p.add_argument("--out", default=None, help="output folder (default: SWEEP/report)")
    p.add_argument("--seeds", type=int, default=0,
                   help="re-run each best configuration on N fresh unlearning seeds; the verdict pools them")
    p.add_argument("--scenario-seeds", type=int, default=0,
                   help="also on M fresh scenario seeds (new poisons, θ_initial, θ_retrain: prepared once, cached)")
    p.add_argument("--margin", type=float, default=None,
                   help=f"equivalence margin of 'removes', a share of θ_initial's effect (default {defaults.MARGIN}; "
                        "docs/verdict.md)")
    p.add_argument("--alpha", type=float, default=defaults.ALPHA,
                   help=f"family-wise level of the poison test (default {defaults.ALPHA})")
    p.add_argument("--tolerance", type=float, default=None, help="accuracy tolerance vs retrain (default: sweep's)")
    p.add_argument("--store", default=DEFAULT_STORE)
    p.add_argument("--storage-path", default=None)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the main job on the bundled data: prepare, sweep every method, report")
    _common(p)
    p.add_argument("--trials", type=int, default=defaults.DEMO_TRIALS,
                   help=f"trials per method (default {defaults.DEMO_TRIALS}: the paper's grid points first, then TPE)")
    p.add_argument("--budget", type=float, default=D.budget, help=f"budget cap (default {D.budget})")
    p.add_argument("--scenario", default="default", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)
    from .curve import add_parser as add_curve  # raysweep curve SWEEP --budgets ... (raysweep/curve/)

    add_curve(sub)
    from .explain import add_parser as add_explain  # raysweep explain SWEEP: H1 and H2 (raysweep/explain/)

    add_explain(sub)
    return ap


def _setup(args, trains: bool = True):
    """Threads and device; torch's deterministic algorithms where the command trains (`trains`: a sweep's
    driver does not, and its `prepare` sets them itself when it must train; the setting imports torch's
    compiler, 3 s: docs/performance.md)."""
    from .runtime import deterministic, pick_device, set_threads

    set_threads(args.threads)
    device = pick_device(args.device)
    if trains:
        deterministic(device)
    return device


def cmd_prepare(args) -> int:
    from .artifacts import open_store
    from .config import load_scenario
    from .scenario import prepare, store_key

    cfg = load_scenario(args.scenario, args.overrides)
    defaults.check_references(args.references)
    if args.seeds != 1:
        return _prepare_seeds(cfg, args)
    device = _setup(args)
    store = open_store(args.store)
    manifest, _ = prepare(cfg, store, device, args.data_dir, references=args.references)
    if args.json:
        print(json.dumps({"hash": manifest["hash"], "path": str(store.path(store_key(manifest["hash"]))),
                          "metrics": manifest["metrics"], "compute": manifest["compute"],
                          "wall_s": manifest["wall_s"]}, indent=2))
    else:
        import pandas as pd

        from .spread import per_seed_table, reference_rows, takes_line

        rows = pd.DataFrame(reference_rows(manifest))
        print(per_seed_table(rows) + "\n" + takes_line(rows, cfg.attack))
        print(f"artifacts: {store.path(store_key(manifest['hash']))}")
    return 0


def _prepare_seeds(cfg, args) -> int:
    from .artifacts import open_store
    from .spread import describe, prepare_seeds, seed_configs

    seed_configs(cfg, args.seeds)  # a bad --seeds fails before any training
    rows = prepare_seeds(cfg, args.seeds, open_store(args.store), _setup(args), args.data_dir,
                         references=args.references)
    print(rows.to_json(orient="records", indent=2) if args.json else describe(rows, cfg.attack))
    return 0


def parse_hparams(items: list[str]) -> dict:
    from .config import parse_value
    from .errors import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError("--hp", item, "NAME=VALUE, e.g. lr=1e-3")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


def cmd_unlearn(args) -> int:
    from .artifacts import open_store
    from .config import load_scenario
    from .unlearn import METHODS
    from .unlearn.session import unlearn_and_evaluate

    METHODS.get(args.method, "method")
    defaults.check_budget(args.budget)
    hparams = parse_hparams(args.hparams)
    METHODS.get(args.method)().hyper(hparams)  # validate before loading anything
    cfg = load_scenario(args.scenario, args.overrides)
    device = _setup(args)
    row = unlearn_and_evaluate(open_store(args.store), cfg, args.method, args.budget, hparams, args.seed,
                               device, args.data_dir)
    if args.json:
        print(json.dumps(row, indent=2, default=float))
    else:
        print(format_rows([row], cfg.attack))
    return 0


def format_rows(rows: list[dict], attack: str) -> str:
    """Result rows as an aligned text table: the generic figures and the attack's own
    (`Attack.spread_columns`); missing figures as '-'."""
    import pandas as pd

    from .attacks import ATTACKS

    own = ATTACKS.get(attack, "attack").spread_columns
    cols = ["method", "test_acc", *own, "mia_tpr", "budget_spent", "wall_s"]
    return pd.DataFrame(rows).reindex(columns=cols).to_string(index=False, na_rep="-",
                                                               float_format=lambda v: f"{v:+.3g}")


def _methods(text: str) -> list[str]:
    from .unlearn import METHODS

    names = METHODS.names() if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        METHODS.get(m, "methods")
    return names


def cmd_sweep(args) -> int:
    import time
    from pathlib import Path

    from .artifacts import open_store
    from .config import load_scenario
    from .errors import ConfigError
    from .sweep.setup import SweepConfig, check_resume, check_sweep_name_free, init_ray, resources
    from .sweep.spaces import load_space

    if args.optuna_storage or args.mlflow:  # Ray Tune's tracker integrations: imported only when asked for
        from .sweep.trackers import check_mlflow_uri, check_optuna_storage
    methods = _methods(args.methods)
    cfg = load_scenario(args.scenario, args.overrides)
    if args.resume and not args.name:
        raise ConfigError("name", None, "the --name of the sweep to resume")
    name = args.name or f"{cfg.name or 'scenario'}-{cfg.hash()[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    store = open_store(args.store)
    sweep_cfg = SweepConfig(methods=methods, trials=args.trials, budget=args.budget, name=name,
                            storage_path=args.storage_path or str(store.root / "sweeps"), address=args.address,
                            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                            max_concurrent=args.max_concurrent, multi_objective=args.multi_objective,
                            tolerance=args.tolerance, seed=args.seed, checkpoint_every=args.checkpoint_every,
                            spaces_dir=args.spaces_dir, device=args.device, evidence=args.evidence,
                            optuna_storage=check_optuna_storage(args.optuna_storage) if args.optuna_storage else None,
                            mlflow=check_mlflow_uri(args.mlflow) if args.mlflow else None).check()
    for m in methods:
        load_space(m, args.spaces_dir)  # bad YAML fails here, before Ray or training starts
    device = _setup(args, trains=False)
    if args.name or args.resume:
        check_sweep_name_free(sweep_cfg, args.resume)
    if args.resume:  # options that differ from the sweep's own: one line, before Ray starts
        check_resume(sweep_cfg, cfg.hash())
    init_ray(args.address, None)  # an unreachable --address fails here, in seconds
    resources(sweep_cfg)          # a GPU or CPU request the cluster cannot meet fails here
    from .scenario import Scenario, prepare
    from .sweep.search import run_sweep

    prepare(cfg, store, device, args.data_dir)
    scen = Scenario.load(store, cfg, "cpu", args.data_dir)
    t0 = time.perf_counter()
    root, complete = run_sweep(scen, sweep_cfg, store, resume=args.resume, device=str(device),
                               data_dir=args.data_dir, auto_name=not args.name)
    name, args.sweep_root = sweep_cfg.name, root  # demo reads the root (a generated name may get a suffix)
    from .results import export

    paths = export(root)
    print(f"sweep {name}: {time.perf_counter() - t0:.0f}s; tables: {', '.join(str(p) for p in paths)}")
    print(str(Path(root)))
    return 0 if complete else 130


def _sweep_path(args):
    from pathlib import Path

    p = Path(args.sweep)
    if (p / "sweep.json").is_file():
        return p
    root = Path(args.storage_path or Path(args.store) / "sweeps")
    if (root / args.sweep / "sweep.json").is_file():
        return root / args.sweep
    from .errors import ConfigError

    raise ConfigError("sweep", args.sweep, f"a sweep directory or a sweep name under {root.resolve()}")


def cmd_export(args) -> int:
    from .results import export

    for p in export(_sweep_path(args), args.format, args.out):
        print(p)
    return 0


def cmd_report(args) -> int:
    from .errors import check_number
    from .report.build import build_report

    defaults.check_alpha(args.alpha)
    check_number("seeds", args.seeds, lo=0, integer=True)
    check_number("scenario_seeds", args.scenario_seeds, lo=0, integer=True)
    margin = defaults.check_margin(defaults.MARGIN if args.margin is None else args.margin)
    if args.tolerance is not None:
        defaults.check_tolerance(args.tolerance)
    path = build_report(_sweep_path(args), args.out, args.alpha, args.tolerance, args.seeds, margin=margin,
                        scenario_seeds=args.scenario_seeds)
    print(path)
    return 0


def cmd_demo(args) -> int:
    """prepare the default scenario, sweep every registered method, build the report, print the verdict."""
    import time

    from .report.build import build_report

    t0 = time.perf_counter()
    sweep_args = build_parser().parse_args(
        ["sweep", "--scenario", args.scenario, "--methods", "all", "--trials", str(args.trials), "--budget",
         str(args.budget), "--store", args.store, "--device", args.device,
         *(["--threads", str(args.threads)] if args.threads else [])])
    code = cmd_sweep(sweep_args)
    if code != 0:
        return code
    from pathlib import Path

    report = build_report(sweep_args.sweep_root)
    verdict = (Path(report).parent / "verdict.csv").read_text()
    from io import StringIO

    import pandas as pd

    v = pd.read_csv(StringIO(verdict))
    print()
    print(v[["method", "effect", "p_fails", "p_removes", "test_acc", "budget_spent",
             "outcome", "verdict"]].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s; report: {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RaysweepError as e:
        print(f"raysweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raysweep: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The console script (and `python -m raysweep.cli`): `main`, then `runtime.quick_exit`."""
    from .runtime import quick_exit

    quick_exit(main())


if __name__ == "__main__":
    run()
