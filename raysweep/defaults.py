"""Run defaults and their valid ranges, in one place: every command, config and function reads them here.

Where a default comes from: docs/decisions.md (scenario), docs/sweep.md (search), docs/verdict.md
(margin, level), docs/performance.md (checkpoint spacing).
"""
from __future__ import annotations

from .errors import ConfigError, check_number

BUDGET = 0.1            # unlearning compute cap, a fraction of θ_initial's training compute
TRIALS = 8              # trials per method in `raysweep sweep`
EVIDENCE = "best"       # full evaluation of each method's best trial after the search ("all": in every trial)
DEMO_TRIALS = 3         # trials per method in `raysweep demo` (README: its measured time, within 10 minutes)
TOLERANCE = 0.02        # accuracy floor: θ_retrain's accuracy minus this
ALPHA = 0.05            # family-wise level of the verdict's tests
MARGIN = 0.5            # δ: "removes" = effect shown below δ x θ_initial's (docs/verdict.md)
REPORT_SEEDS = 1        # `raysweep report`: fresh unlearning seeds per best configuration (no pick judges itself)
REPORT_SCENARIO_SEEDS = 2  # and fresh scenarios pooled: the power the report prints (docs/verdict.md, "Power")
CHECKPOINT_EVERY = 0.25  # a sweep trial evaluates and reports every this share of the sweep's cap
ASHA_GRACE = 0.25       # the share of the budget a trial runs before ASHA may stop it
CHECKPOINT_POISONS = 250  # tuning-half poisons a budget checkpoint scores (the final report: all of them)
SCHEDULE = "default"     # `raysweep sweep --schedule`: default (ASHA at 25 % and 75 % of the cap), deep, or full
#                          (every trial to its own cap: the full-fidelity search a deep one is compared with)
# --schedule deep: 100 trials per method within an hour on 2 cores (docs/performance.md, "Depth per hour",
# with the pilot that chose these points). ASHA's step is 1/DEEP_STEPS of the cap; rungs at DEEP_GRACE x
# DEEP_REDUCTION^i steps (1/16 and 1/4 of the cap, then the cap), a trial evaluates at those rungs only,
# and each method's TPE is pinned to multivariate with the constant liar
DEEP_TRIALS = 100
DEEP_STEPS = 16
DEEP_GRACE = 1
DEEP_REDUCTION = 4
SSD_CACHE_MB = 512       # per worker and split: the importance sums a sweep's SSD trials share (unlearn/ssd.py)
REFERENCES = "auto"      # prepare: train θ_initial and θ_retrain at once (parallel), one after the other, or auto
PARALLEL_MIN_SAMPLE_GRADS = 50_000  # auto: parallel on a CPU with >= 2 threads from this much training per model
ATTACK_POINTS = 10      # `raysweep attack-search`: outer points (each a prepared scenario and a full sweep)
STEALTH = 0.02          # attack-search: θ_initial's test accuracy at most this below the clean model's (θ_retrain's)
CURVE_BUDGETS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)  # `raysweep curve`: up to retraining's compute
MAX_SEED = 2**31 - 1     # seeds are non-negative 32-bit integers (numpy, torch and Optuna all accept them)
MAX_EPOCHS = 10_000       # train.epochs: a bound that catches a typo, far above any recipe here
MAX_BATCH = 65_536        # train.batch_size and an unlearner's batch_size
MAX_TRIALS = 100_000     # trials per method, trials at once: a bound that catches a typo
MAX_SEEDS = 1000         # `--seeds N` / `--scenario-seeds M`: each is a full run (or a prepared scenario)

# Ray, wherever raysweep starts or joins it: no usage stats, no token auth on a private loopback instance
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def check_budget(value, field: str = "budget") -> float:
    """The one valid range of a budget: (0, 1], a fraction of θ_initial's training compute."""
    return check_number(field, value, lo=0, hi=1, lo_open=True, what="a fraction of θ_initial's training compute")


def check_evidence(value, field: str = "evidence") -> str:
    if value not in ("best", "all"):
        raise ConfigError(field, value, "best (each method's best trial, after the search) or all")
    return value


def check_references(value, field: str = "references") -> str:
    if value not in ("auto", "parallel", "sequential"):
        raise ConfigError(field, value, "auto, parallel (θ_initial and θ_retrain at once, half the threads each) "
                          "or sequential")
    return value


def check_schedule(value, field: str = "schedule") -> str:
    if value not in ("default", "deep", "full"):
        raise ConfigError(field, value, "default (ASHA at 25 % and 75 % of the cap), deep (rungs at 1/16 and 1/4 of "
                          "the cap, reduction 4: docs/performance.md) or full (no early stopping)")
    return value


def check_checkpoint_every(value, field: str = "checkpoint_every") -> float:
    return check_number(field, value, lo=0, hi=1, lo_open=True, what="a share of the budget")


def check_alpha(value, field: str = "alpha") -> float:
    return check_number(field, value, lo=0, hi=1, lo_open=True, hi_open=True, what="a significance level")


def check_tolerance(value, field: str = "tolerance") -> float:
    return check_number(field, value, lo=0, hi=1, what="accuracy points below θ_retrain's, as a fraction")


def check_margin(value, field: str = "margin") -> float:
    return check_number(field, value, lo=0, hi=1, lo_open=True, what="a share of θ_initial's effect")


def check_seed(value, field: str = "seed") -> int:
    return check_number(field, value, lo=0, hi=MAX_SEED, integer=True, what="a non-negative 32-bit seed")


def check_stealth(value, field: str = "stealth") -> float:
    """A stealth tolerance: the accuracy θ_initial may lose against the clean model, in [0, 1]. A negative one
    would ask the poison to raise accuracy, which no attack here is built to do: refused as unmeetable."""
    return check_number(field, value, lo=0, hi=1, what="accuracy points θ_initial may lose against the clean "
                        "model (θ_retrain), as a fraction; a negative tolerance no poisoned point can meet")
