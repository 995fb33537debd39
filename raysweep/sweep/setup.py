"""What a sweep is asked to do, checked before anything runs: options, resources, name, address.

Every check here runs before `prepare` trains anything and before the sweep directory exists, so bad
input is one line (exit code 2) and leaves nothing behind (docs/reliability.md).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import defaults as D
from ..config import check_name
from ..defaults import RAY_ENV
from ..errors import ConfigError, check_number
from ..results.layout import read_sweep_meta
from ..unlearn import METHODS
from .schedule import resolve


@dataclass
class SweepConfig:
    methods: list[str]
    trials: int = D.TRIALS           # trials per method
    budget: float = D.BUDGET         # cap per trial, fraction of θ_initial's training compute
    name: str = ""
    storage_path: str = ""           # where sweeps live (absolute path or URI); default <store>/sweeps
    address: str | None = None       # an existing Ray cluster ("auto", "ray://..."); None: start a local one
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None   # None: 0 without GPUs; 1/4 of a card with GPUs (4 trials per card)
    max_concurrent: int = 0          # 0: as many as the resources allow
    multi_objective: bool = False    # search (|GUS_tune|, val_acc) and mark the Pareto set
    tolerance: float = D.TOLERANCE   # accuracy floor = θ_retrain val_acc - tolerance
    seed: int = 0
    checkpoint_every: float = D.CHECKPOINT_EVERY  # evaluate and report (ASHA judges) every this share of the budget
    asha_grace: float = D.ASHA_GRACE  # ASHA: the share of the budget a trial runs before it may be stopped
    max_failures: int = 1            # retries of a trial that raises
    spaces_dir: str | None = None
    reuse_actors: bool = True
    device: str = "auto"             # cpu: trials never take a GPU, whatever the cluster has
    optuna_storage: str | None = None  # keep each method's Optuna study there (sqlite:///sweeps.db, ...)
    mlflow: str | None = None        # log every trial to this MLflow tracking URI (a folder or a server)
    evidence: str = D.EVIDENCE       # full evaluation: of each method's best trial after the search, or of "all"
    discovery: float = 1.0           # share of the poisons requested (found); the rest stays in the retain set
    schedule: str = D.SCHEDULE       # default, or deep: earlier rungs, cheaper checkpoints, constant liar (schedule.py)

    def check(self) -> "SweepConfig":

        check_name("name", self.name)
        if not self.methods:
            raise ConfigError("methods", self.methods, f"one or more of {', '.join(METHODS.names())}")
        for m in self.methods:
            METHODS.get(m, "methods")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError("methods", ",".join(self.methods), "each method once")
        check_number("trials", self.trials, lo=1, hi=D.MAX_TRIALS, integer=True)
        D.check_budget(self.budget)
        check_number("discovery", self.discovery, lo=0, hi=1, lo_open=True,
                     what="the share of the poisons found and requested (docs/discovery.md)")
        check_number("cpus_per_trial", self.cpus_per_trial, lo=0, lo_open=True)
        if self.gpus_per_trial is not None:
            check_number("gpus_per_trial", self.gpus_per_trial, lo=0)
            if self.device == "cpu" and self.gpus_per_trial > 0:
                raise ConfigError("gpus_per_trial", self.gpus_per_trial, "0 with --device cpu")
        check_number("max_concurrent", self.max_concurrent, lo=0, hi=D.MAX_TRIALS, integer=True,
                     what="0: as many as resources allow")
        check_number("max_failures", self.max_failures, lo=0, integer=True)
        D.check_schedule(self.schedule)
        if self.schedule == "deep" and self.multi_objective:
            raise ConfigError("schedule", self.schedule, "default with --multi-objective (it has no early stopping)")
        resolve(self)  # deep: its own checkpoint spacing and grace, or an error naming the option
        D.check_checkpoint_every(self.checkpoint_every)
        D.check_tolerance(self.tolerance)
        check_number("seed", self.seed, lo=0, integer=True)
        check_number("asha_grace", self.asha_grace, lo=0, hi=1, lo_open=True, what="a share of the budget")
        D.check_evidence(self.evidence)
        return self

    def slots(self, have: dict) -> int:
        """Trials the cluster `have` can run at once with these per-trial resources."""
        res = trial_resources(self, have)
        n = int(have.get("CPU", 1) // res["cpu"]) if res["cpu"] else 10**6
        if res["gpu"]:
            n = min(n, int(have.get("GPU", 0) // res["gpu"]))
        return max(1, min(n, self.max_concurrent or n))


RESUME_FIELDS = ("methods", "trials", "budget", "multi_objective", "tolerance", "seed", "schedule", "checkpoint_every",
                 "asha_grace", "optuna_storage", "evidence")  # schedule before the spacing it sets: the error names it


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when `address` names a host:port nobody listens on (Ray itself
    waits for a GCS for minutes)."""
    if not address or address in ("auto", "local"):
        return
    import socket

    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("address", address, "auto, HOST:PORT (a Ray head's GCS, e.g. 10.0.0.5:6379; port 1-65535) or "
                          "ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError("address", address, f"a reachable Ray cluster (connecting failed: {e})") from e


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join `address`, or start a private local instance (loopback only, no usage reporting)."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: our one line per trial, no tables
    # Tune snapshots its experiment state at most this often (default: every >= 10 s): a driver killed
    # outright (SIGKILL) then resumes from a snapshot at most 1 s old (docs/reliability.md)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    import logging

    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)

    check_address(address)  # before anything else: also when this process already runs a Ray
    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            raise ConfigError("address", address, f"a running Ray cluster ({e})".replace("\n", " ")) from e
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def resources(cfg: SweepConfig) -> dict:
    """Per-trial resources from what the Ray cluster has (see `trial_resources`)."""
    import ray

    return trial_resources(cfg, ray.cluster_resources())


def trial_resources(cfg: SweepConfig, have: dict) -> dict:
    """Per-trial resources given the cluster's: never a GPU that does not exist, none with --device cpu."""
    gpus = have.get("GPU", 0)
    g = cfg.gpus_per_trial
    if g is None:
        g = 0.25 if gpus >= 1 and cfg.device != "cpu" else 0.0
    if g > 0 and gpus <= 0:
        raise ConfigError("gpus_per_trial", g, "0: the Ray cluster has no GPU")
    if g > gpus:
        raise ConfigError("gpus_per_trial", g, f"at most the cluster's {gpus:g} GPUs")
    cpus = have.get("CPU", 1)
    if cfg.cpus_per_trial > cpus:
        raise ConfigError("cpus_per_trial", cfg.cpus_per_trial, f"at most the cluster's {cpus:g} CPUs")
    return {"cpu": cfg.cpus_per_trial, "gpu": g}


def sweep_dir(cfg: SweepConfig) -> Path:
    return Path(cfg.storage_path).expanduser().resolve() / cfg.name


def claim_sweep_dir(cfg: SweepConfig, auto_name: bool = False) -> Path:
    """Create the sweep's directory exclusively: a name already taken is refused, or, for a generated
    name (`auto_name`), suffixed -2, -3, ... so two sweeps started in the same second never share one."""
    base = cfg.name
    Path(cfg.storage_path).expanduser().resolve().mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        cfg.name = base if n == 1 else f"{base}-{n}"
        try:
            sweep_dir(cfg).mkdir()
            return sweep_dir(cfg)
        except FileExistsError:
            if not auto_name:
                raise ConfigError("name", base, f"a new name: {sweep_dir(cfg)} exists (or pass --resume)") from None
    raise ConfigError("name", base, "a name not yet taken")


def check_sweep_name_free(cfg: SweepConfig, resume: bool) -> None:
    """Before any training: a new sweep's --name must be free, a resumed one must exist."""
    meta = sweep_dir(cfg) / "sweep.json"
    if resume and not meta.is_file():
        raise ConfigError("name", cfg.name, f"an existing sweep under {sweep_dir(cfg).parent} to resume")
    if not resume and sweep_dir(cfg).exists():
        raise ConfigError("name", cfg.name, f"a new name: {sweep_dir(cfg)} exists (or pass --resume)")


def check_resume(cfg: SweepConfig, scen_hash: str, hint: str = "drop the option or start a new --name") -> None:
    """A resumed sweep must be the same sweep: its scenario and the options in RESUME_FIELDS as saved in
    its sweep.json, else one line naming the field (exit code 2), before Ray starts or anything trains.
    hint: what the caller's user can do about an option that differs (a curve's searches have no --name)."""
    saved = read_sweep_meta(sweep_dir(cfg))
    if saved["scenario"] != scen_hash:
        raise ConfigError("scenario", scen_hash, f"{saved['scenario']}, the scenario the sweep {cfg.name} was run on "
                          "(pass the same --scenario and --set, or start a new --name)")
    for f in RESUME_FIELDS:
        was = saved["config"].get(f, getattr(SweepConfig, f, None))  # a field added later: its default
        if was != getattr(cfg, f):
            raise ConfigError(f, getattr(cfg, f), f"{was!r} as when the sweep {cfg.name} started ({hint})")
