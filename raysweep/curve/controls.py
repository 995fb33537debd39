"""The curve's sanity rows: configurations that must remove the poison, so that "none removes" can be
told apart from "the verdict cannot tell at this size" (docs/curve.md, "Sanity rows").

    scratch   retraining from scratch within each budget, with θ_retrain's own recipe
              (unlearn/scratch.py): at 1.0 it is θ_retrain again on another seed
    euk_all   EU-k with every layer group re-initialised, at budget 1.0, at the recipe's peak rate and
              schedule (EU-k's cosine option; at its constant rate it is an under-trained network)

Both never see a poison after re-initialisation, so their held-out effect is θ_retrain's up to
run-to-run spread: if the referee does not call them "removes" at budget 1.0, no method's "fails"
or "inconclusive" there says that unlearning is worse than retraining, only that the test cannot
decide at this size. They are judged in a Holm family of their own (table.py `budget_verdicts`).
"""
from __future__ import annotations

from ..errors import ConfigError
from ..unlearn.scratch import recipe
from .run import Config, config_id
from .table import SANITY_BUDGET

LABELS = {"scratch": "retraining from scratch within the budget (θ_retrain's recipe)",
          "euk_all": "EU-k, every layer group re-initialised, the recipe's schedule"}


def check_labels(methods: list[str]) -> None:
    """A row label is one row: a swept method named like a sanity row (`raysweep sweep --methods scratch`)
    would share its cells with the control's, so it is refused in one line while the controls run."""
    for m in methods:
        if m in LABELS:
            raise ConfigError("methods", m, f"methods other than the sanity row {m!r}, which the curve runs "
                              "itself (or pass --no-controls to re-run the sweep's own pick of it)")


def control_configs(train, layers: int, budgets: list[float], scenario: str) -> dict:
    """label -> (Config, the budgets it runs at): scratch at every budget, euk_all at 1.0 when asked."""
    hp = recipe(train)
    euk = {"k": int(layers), "lr": hp["lr"], "momentum": hp["momentum"], "weight_decay": hp["weight_decay"],
           "batch_size": hp["batch_size"], "schedule": "cosine", "warmup": hp["warmup"]}
    out = {"scratch": (Config("scratch", hp, 1.0, True, config_id("scratch", hp, scenario, {"control": 1})),
                       list(budgets))}
    if SANITY_BUDGET in budgets:
        out["euk_all"] = (Config("euk", euk, 1.0, True, config_id("euk", euk, scenario, {"control": 1})),
                          [SANITY_BUDGET])
    return out
