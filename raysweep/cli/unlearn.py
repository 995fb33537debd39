"""`raysweep unlearn`: one unlearning method on a prepared scenario, evaluated beside the references.

    raysweep unlearn [--scenario ...] --method gd [--budget 0.1] [--hp lr=1e-2 ...] [--seed 0] [--json]
"""
from __future__ import annotations

import json

import pandas as pd

from .. import defaults
from ..artifacts import open_store
from ..attacks import ATTACKS
from ..config import load_scenario
from ..runs import unlearn_and_evaluate
from ..unlearn import METHODS
from .common import add_common, add_scenario_args, parse_hparams, setup_device


def add_parser(sub) -> None:
    p = sub.add_parser("unlearn", help="run one unlearning method on a prepared scenario and evaluate it")
    add_scenario_args(p)
    add_common(p)
    p.add_argument("--method", required=True, help="a registered unlearning method (raysweep/unlearn/, plug-ins)")
    p.add_argument("--budget", type=float, default=defaults.BUDGET,
                   help=f"compute cap, a fraction of θ_initial's training compute (default {defaults.BUDGET})")
    p.add_argument("--hp", dest="hparams", action="append", default=[], metavar="NAME=VALUE",
                   help="a method hyperparameter, e.g. lr=1e-2 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="unlearning seed (batch order, noise, re-init)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(func=run, writes_store=True)


def run(args) -> int:
    METHODS.get(args.method, "method")
    defaults.check_budget(args.budget)
    defaults.check_seed(args.seed)
    hparams = parse_hparams(args.hparams)
    METHODS.get(args.method)().hyper(hparams)  # validate before loading anything
    cfg = load_scenario(args.scenario, args.overrides)
    device = setup_device(args)
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
    own = ATTACKS.get(attack, "attack").spread_columns
    cols = ["method", "test_acc", *own, "mia_tpr", "budget_spent", "wall_s"]
    return pd.DataFrame(rows).reindex(columns=cols).to_string(index=False, na_rep="-",
                                                               float_format=lambda v: f"{v:+.3g}")
