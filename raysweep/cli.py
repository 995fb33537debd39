"""The `raysweep` command line.

    raysweep prepare [--scenario default|tiny|FILE.yaml] [--set train.epochs=5] [--store DIR] [--json]
    raysweep unlearn [--scenario ...] --method gd [--budget 0.1] [--hp lr=1e-2 ...] [--json]

Bad input prints one line `raysweep: error: ...` naming the field and exits with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import RaysweepError

DEFAULT_STORE = os.environ.get("RAYSWEEP_STORE", "raysweep-out")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=DEFAULT_STORE,
                   help="artifact and results root (default: $RAYSWEEP_STORE or ./raysweep-out)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="default", help="a preset (default, tiny, paper-cifar10) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. train.epochs=5 or attack_params.k=250 (repeatable)")
    p.add_argument("--data-dir", default=None, help="folder holding an existing copy of the dataset")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="raysweep", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare", help="poison the data, train θ_initial and θ_retrain, evaluate both (once)")
    _scenario_args(p)
    _common(p)
    p.add_argument("--json", action="store_true", help="print the manifest's metrics as JSON on stdout")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("unlearn", help="run one unlearning method on a prepared scenario and evaluate it")
    _scenario_args(p)
    _common(p)
    p.add_argument("--method", required=True, help="gd, ngd, ga, euk, cfk, scrub, neggrad_plus, ssd")
    p.add_argument("--budget", type=float, default=0.1,
                   help="compute cap as a fraction of θ_initial's training compute, in (0, 1] (default 0.1)")
    p.add_argument("--hp", dest="hparams", action="append", default=[], metavar="NAME=VALUE",
                   help="a method hyperparameter, e.g. lr=1e-2 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="unlearning seed (batch order, noise, re-init)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(func=cmd_unlearn)
    return ap


def _setup(args):
    from .runtime import pick_device, set_threads

    set_threads(args.threads)
    return pick_device(args.device)


def cmd_prepare(args) -> int:
    from .artifacts import LocalStore
    from .config import load_scenario
    from .scenario import prepare, store_key

    cfg = load_scenario(args.scenario, args.overrides)
    device = _setup(args)
    store = LocalStore(args.store)
    manifest, _ = prepare(cfg, store, device, args.data_dir)
    if args.json:
        print(json.dumps({"hash": manifest["hash"], "path": str(store.path(store_key(manifest["hash"]))),
                          "metrics": manifest["metrics"], "compute": manifest["compute"],
                          "wall_s": manifest["wall_s"]}, indent=2))
    else:
        print(format_reference(manifest))
        print(f"artifacts: {store.path(store_key(manifest['hash']))}")
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
    from .artifacts import LocalStore
    from .config import load_scenario
    from .errors import ConfigError
    from .unlearn import METHODS
    from .unlearn.session import unlearn_and_evaluate

    METHODS.get(args.method, "method")
    if not 0 < args.budget <= 1:
        raise ConfigError("budget", args.budget, "a fraction of the training compute in (0, 1]")
    hparams = parse_hparams(args.hparams)
    METHODS.get(args.method)().hyper(hparams)  # validate before loading anything
    cfg = load_scenario(args.scenario, args.overrides)
    device = _setup(args)
    row = unlearn_and_evaluate(LocalStore(args.store), cfg, args.method, args.budget, hparams, args.seed,
                               device, args.data_dir)
    if args.json:
        print(json.dumps(row, indent=2, default=float))
    else:
        print(format_rows([row]))
    return 0


COLUMNS = [("method", "method", "{}"), ("test_acc", "test_acc", "{:.3f}"), ("gus", "GUS", "{:+.3f}"),
           ("z", "z", "{:+.2f}"), ("p", "p", "{:.2g}"), ("tpr_two", "TPR@1%", "{:.3f}"),
           ("mia_tpr", "MIA TPR", "{:.3f}"), ("budget_spent", "budget", "{:.4f}"), ("wall_s", "wall s", "{:.1f}")]


def format_rows(rows: list[dict]) -> str:
    """Result rows as an aligned text table (missing figures as '-')."""
    table = [[title for _, title, _ in COLUMNS]]
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            cells.append("-" if v is None or (isinstance(v, float) and v != v) else fmt.format(v))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in table)


def format_reference(manifest: dict) -> str:
    """θ_initial vs θ_retrain as a small text table."""
    rows = [("model", "test_acc", "GUS", "z", "p", "TPR@1%", "AUC", "ctrl z", "MIA TPR")]
    for which in ("initial", "retrain"):
        m = manifest["metrics"][which]
        rows.append((f"θ_{which}", f"{m['test_acc']:.3f}", f"{m.get('gus', float('nan')):+.3f}",
                     f"{m.get('z', float('nan')):+.2f}", f"{m.get('p', float('nan')):.2g}",
                     f"{m.get('tpr_two', float('nan')):.3f}", f"{m.get('auc', float('nan')):.3f}",
                     f"{m.get('control_z', float('nan')):+.2f}", f"{m['mia_tpr']:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


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


if __name__ == "__main__":
    sys.exit(main())
