"""`raysweep prepare`: poison the data, train θ_initial and θ_retrain, evaluate both (built once, cached).

    raysweep prepare [--scenario default|tiny|FILE.yaml] [--set train.epochs=5] [--seeds N] [--json]
"""
from __future__ import annotations

import json

import pandas as pd

from .. import defaults
from ..artifacts import open_store
from ..config import load_scenario
from ..prepare.scenario import prepare, store_key
from ..prepare.spread import describe, per_seed_table, prepare_seeds, reference_rows, seed_configs, takes_line
from .common import add_common, add_scenario_args, setup_device


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="poison the data, train θ_initial and θ_retrain, evaluate both (once)")
    add_scenario_args(p)
    add_common(p)
    p.add_argument("--json", action="store_true", help="print the manifest's metrics as JSON on stdout")
    p.add_argument("--seeds", type=int, default=1, help="prepare scenario seeds seed..seed+N-1 (each cached) and "
                   "print the spread of θ_initial's and θ_retrain's figures (default 1)")
    p.add_argument("--references", default=defaults.REFERENCES,
                   help="train θ_initial and θ_retrain at once on half the threads each (parallel), one after "
                   "the other on all (sequential), or auto: parallel for a large enough CPU job (default auto; "
                   "docs/performance.md). Thread counts change a model's last bits: docs/decisions.md")
    p.set_defaults(func=run, writes_store=True)


def run(args) -> int:
    cfg = load_scenario(args.scenario, args.overrides)
    defaults.check_references(args.references)
    if args.seeds != 1:
        seed_configs(cfg, args.seeds)  # a bad --seeds fails before any training
        rows = prepare_seeds(cfg, args.seeds, open_store(args.store), setup_device(args), args.data_dir,
                             references=args.references)
        print(rows.to_json(orient="records", indent=2) if args.json else describe(rows, cfg.attack))
        return 0
    device = setup_device(args)
    store = open_store(args.store)
    manifest, _ = prepare(cfg, store, device, args.data_dir, references=args.references)
    if args.json:
        print(json.dumps({"hash": manifest["hash"], "path": str(store.path(store_key(manifest["hash"]))),
                          "metrics": manifest["metrics"], "compute": manifest["compute"],
                          "wall_s": manifest["wall_s"]}, indent=2))
    else:
        rows = pd.DataFrame(reference_rows(manifest))
        print(per_seed_table(rows) + "\n" + takes_line(rows, cfg.attack))
        print(f"artifacts: {store.path(store_key(manifest['hash']))}")
    return 0
