"""What every verb of the command line shares: the default store, the options most verbs take, the
device set-up before a command trains, finding a sweep by folder or name, and `--hp` parsing."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..artifacts import check_writable_dir
from ..config import PRESETS, parse_value
from ..errors import ConfigError, check_number
from ..runtime import deterministic, pick_device, set_threads

DEFAULT_STORE = os.environ.get("RAYSWEEP_STORE", "raysweep-out")


def add_common(p: argparse.ArgumentParser) -> None:
    """--store, --device, --threads."""
    p.add_argument("--store", default=DEFAULT_STORE,
                   help="artifact and results root (default: $RAYSWEEP_STORE or ./raysweep-out)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")


def add_scenario_args(p: argparse.ArgumentParser) -> None:
    """--scenario, --set, --data-dir."""
    p.add_argument("--scenario", default="default", help="a preset (" + ", ".join(PRESETS) + ") or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. train.epochs=5 or attack_params.k=250 (repeatable)")
    p.add_argument("--data-dir", default=None, help="folder holding an existing copy of the dataset")


def add_sweep_arg(p: argparse.ArgumentParser, what: str = "a sweep directory, or a sweep name under --storage-path"):
    """The positional SWEEP with --store and --storage-path, which find a sweep given by name."""
    p.add_argument("sweep", help=what)
    p.add_argument("--store", default=DEFAULT_STORE, help="store root (default: $RAYSWEEP_STORE or ./raysweep-out)")
    p.add_argument("--storage-path", default=None, help="sweeps root for a sweep given by name (default STORE/sweeps)")


def setup_device(args, trains: bool = True):
    """Threads and device; torch's deterministic algorithms where the command trains (`trains`: a sweep's
    driver does not, and its `prepare` sets them itself when it must train)."""
    set_threads(args.threads)
    device = pick_device(args.device)
    if trains:
        deterministic(device)
    return device


def sweep_path(args) -> Path:
    """args.sweep as a sweep directory (or an export folder), else as a name under --storage-path."""
    p = Path(args.sweep)
    if (p / "sweep.json").is_file():
        return p
    root = Path(args.storage_path or Path(args.store) / "sweeps")
    if (root / args.sweep / "sweep.json").is_file():
        return root / args.sweep
    raise ConfigError("sweep", args.sweep, f"a sweep directory or a sweep name under {root.resolve()}")


def parse_hparams(items: list[str]) -> dict:
    """['lr=1e-3', ...] -> {'lr': 0.001, ...}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError("--hp", item, "NAME=VALUE, e.g. lr=1e-3")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


class Parser(argparse.ArgumentParser):
    """argparse with raysweep's error form: one line naming the option, exit code 2, no usage block."""

    def error(self, message: str):
        self.exit(2, f"raysweep: error: {message} (raysweep {self.prog.split(' ', 1)[-1]} --help lists the options)\n"
                  if " " in self.prog else f"raysweep: error: {message} (raysweep --help lists the verbs)\n")


def check_targets(args) -> None:
    """Before any verb runs: every folder it will write can be written (--store where the verb writes
    there, --storage-path, --out, else the sweep folder an analysis writes into), and the option values
    argparse cannot check by type."""
    if getattr(args, "threads", None) is not None:
        check_number("threads", args.threads, lo=1, hi=4096, integer=True, what="torch CPU threads")
    if getattr(args, "writes_store", False):
        check_writable_dir("store", args.store, "a folder raysweep can create and write (--store or $RAYSWEEP_STORE)")
    if getattr(args, "writes_store", False) and getattr(args, "storage_path", None):
        check_writable_dir("storage_path", args.storage_path)
    if getattr(args, "out", None):
        check_writable_dir("out", args.out)
    elif getattr(args, "writes_sweep", False) and Path(args.sweep).is_dir():  # SWEEP/report, SWEEP/curve, ...
        check_writable_dir("sweep", args.sweep, "a sweep folder raysweep can write into (or pass --out)")
