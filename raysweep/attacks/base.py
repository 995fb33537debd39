"""The attack interface.

An attack is built once per scenario (`build`, may be expensive) into a dict of tensors that the
artifact store keeps; `apply` turns the clean dataset plus those tensors into the corrupted
training set S_corr cheaply, so every later trial rebuilds the same poisoned set bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from ..data.base import Dataset, Split
from ..defaults import ALPHA
from ..errors import ConfigError
from ..stats.evidence import Evidence, needed_normal

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class PoisonedSet:
    """S_corr and what unlearning and evaluation need to know about it.

    train: the corrupted training set as trained on (poisons included, perturbed).
    poison_idx: [k] rows of `train` that are poisons (the forget set).
    clean_x: [k, ...] the poisons' clean inputs (GUS takes gradients there), or None.
    noise: [k, ...] Gaussian noise in the model's input representation, or None.
    eps: the noise standard deviation (GUS normalisation), or None.
    """

    train: Split
    poison_idx: torch.Tensor
    clean_x: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    eps: float | None = None
    grad_scale: torch.Tensor | None = None  # multiplies input gradients (pixel-space noise)
    info: dict = field(default_factory=dict)
    # canaries (noise attacks): noised training rows that stay in the retain set and are never requested,
    # the positive control of the verdict (docs/verdict.md); their rows, clean inputs and noise
    canary_idx: torch.Tensor | None = None
    canary_clean_x: torch.Tensor | None = None
    canary_noise: torch.Tensor | None = None
    # partial discovery (Scenario.discovered): positions into the k poisons that are requested for unlearning;
    # None: all of them. The others stay in the retain set, as undiscovered poisons would.
    request: torch.Tensor | None = None

    @property
    def k(self) -> int:
        return int(self.poison_idx.numel())

    @property
    def requested_idx(self) -> torch.Tensor:
        """Rows of `train` requested for unlearning: every poison, or the discovered ones."""
        return self.poison_idx if self.request is None else self.poison_idx[self.request.long()]

    def retain_idx(self) -> torch.Tensor:
        keep = torch.ones(len(self.train), dtype=torch.bool)
        keep[self.requested_idx] = False
        return keep.nonzero().squeeze(1)

    def forget(self) -> Split:
        return self.train.subset(self.requested_idx)

    def retain(self) -> Split:
        return self.train.subset(self.retain_idx())


@dataclass(frozen=True)
class Searchable:
    """One parameter `raysweep attack-search` may search: its kind (int or float), the attack's hard bounds
    [lo, hi] (a searched range must lie inside them), whether it is searched on a log scale, and the range
    searched when none is given. Its value rises with the poison's strength (boundary mode bisects on
    that order). The name need not be a parameter of `check`: `Attack.searched_params` maps it there."""

    kind: str
    lo: float
    hi: float
    log: bool = False
    default: tuple[float, float] | None = None  # None: the hard bounds

    @property
    def default_range(self) -> tuple[float, float]:
        return self.default or (self.lo, self.hi)


@dataclass
class BuildEnv:
    """What an attack's `build` may use: fresh models of the scenario's architecture and the
    scenario's trainer (surrogates, clean reference models), on the scenario's device."""

    new_model: Callable[[], torch.nn.Module]
    train: Callable[[torch.nn.Module, Split], None]
    device: torch.device = torch.device("cpu")
    log: Callable[[str], None] = print
    base: Callable[[], torch.nn.Module] | None = None  # victim=head: a copy of the clean base model
    weight_decay: float = 0.0                           # the victim's L2 coefficient (train.weight_decay)


class Attack:
    """Subclass per attack and register it in ATTACKS. `params` were validated by `check`."""

    name: str = ""
    # the attack's own success metric (a key of `evaluate`'s output); lower means less poison effect
    metric: str = "holdout_z"
    # the kinds of data the attack works on (a dataset's registered `kind`): refused up front otherwise
    data_kinds: tuple[str, ...] = ("image", "text")

    def __init__(self, **params):
        self.params = self.check(params)

    @classmethod
    def check(cls, params: dict) -> dict:
        """Validate and complete the parameters; raise ConfigError naming the field."""
        return dict(params)

    @classmethod
    def only(cls, params: dict, allowed: set[str]) -> None:
        """Refuse a parameter this attack does not take, naming it and listing those it does."""
        for key in params:
            if key not in allowed:
                raise ConfigError(f"attack.{key}", params[key], f"{cls.name} takes {', '.join(sorted(allowed))}")

    def check_data(self, data: Dataset) -> None:
        """Validate the parameters against the dataset (e.g. k <= n) before any work starts."""

    def build(self, data: Dataset, seed: int, env: BuildEnv | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def apply(self, data: Dataset, stored: dict[str, torch.Tensor]) -> PoisonedSet:
        raise NotImplementedError

    @classmethod
    def effect(cls, metrics: dict, references: dict) -> float:
        """The poison effect left in a model, >= 0, lower is better: what the sweep minimises (under
        its accuracy constraint). `metrics`: a checkpoint evaluation (val accuracy, the tuning half's
        GUS figures, this attack's own metrics); `references`: θ_initial's and θ_retrain's metrics
        ("none", "retrain"). Default: |GUS| on the tuning half of the poisons."""
        return abs(metrics["tune_gus"])

    # the attack's figures a sweep's budget checkpoints report beside `effect` (keys of `evaluate`'s output)
    checkpoint_keys: tuple[str, ...] = ()
    curve_key, curve_label = "effect", ""  # the checkpoint figure the report draws against the budget

    def evaluate(self, model: torch.nn.Module, data: Dataset, poisoned: PoisonedSet) -> dict:
        """The attack's own metrics of `model` (e.g. target success); {} when GUS says it all. `model` is
        the evaluation copy (`Classifier.for_eval`): eval mode, BatchNorm possibly folded into the
        convolutions, no parameter gradients (input gradients work); do not read its state_dict."""
        return {}

    # ---- the verdict: what the report asks the attack (docs/verdict.md) ------------------------
    effect_label: str = "poison effect: |GUS| on the tuning half"  # the search's effect, as an axis label
    verdict_unit: str = "units"       # what the tests count (held-out poisons, targets, test images ...)
    effect_header: str = "effect"     # the verdict table's header of the effect column
    item_keys: tuple[str, ...] = ()   # per-item vectors in `evaluate`'s output that the tests pair
    verdict_columns: tuple[str, ...] = ()  # the attack's own columns shown in the verdict table
    column_headers: dict = {}         # their headers in the report (default: the column name)
    tpr_column: str | None = None     # a per-sample test's TPR at 1 % FPR, drawn beside the loss MIA's
    tpr_label: str = ""
    uses_tuned_scenario: bool = True  # False: the search saw this scenario's verdict evidence (one target)
    # `prepare --seeds`: θ_initial shows the poison when its own test against θ_retrain has p below this
    takes_level: float = ALPHA
    takes_rule: str = f"its own test against θ_retrain, p < {ALPHA:g}"
    # True: the verdict's units are fresh scenarios (one target each), so one seed's test cannot decide and
    # `prepare --seeds` also runs the test pooled over the seeds
    pools_seeds: bool = False
    spread_columns: tuple[str, ...] = ()  # the attack's figures shown per seed by `prepare --seeds`
    discoverable: bool = False  # its verdict units are poisons, each found or not (`raysweep discovery`)
    # parameters added after the first release, at the value that reproduces the earlier behaviour: left out
    # of the scenario hash at that value, so earlier scenarios keep their hash (and their artifacts)
    legacy: dict = {}
    # what `raysweep attack-search` may search (docs/attack_search.md): name -> Searchable; {}: refused there
    searchable: dict[str, Searchable] = {}

    @classmethod
    def seed_takes(cls, initial: "pd.DataFrame") -> "pd.Series":
        """`prepare --seeds`: per seed, whether θ_initial shows the poison (`takes_rule`); `initial` holds
        θ_initial's spread rows (`p`: its own test against θ_retrain, and the `spread_columns`)."""
        return initial["p"].astype(float).lt(cls.takes_level)

    @classmethod
    def searched_params(cls, base: dict, values: dict) -> dict:
        """The attack's parameters at a searched point: the scenario's own `base` with the searched `values`
        (names of `searchable`) put in. Default: the names are parameters of `check` themselves."""
        return {**base, **values}

    @classmethod
    def stored_params(cls, params: dict, stored: set[str]) -> dict:
        """The parameters an artifact was built with, from its stored config and the names of its
        poison tensors (a parameter added later is absent from an older config: its legacy value)."""
        return params

    @classmethod
    def verdict_evidence(cls, mine: "pd.DataFrame", refs: dict, margin_fraction: float, ctx: dict) -> Evidence:
        """The tests of one model: `mine` its runs, `refs` {"none", "retrain"} the reference runs
        (raysweep/attacks/evidence.py describes the tables), `margin_fraction` δ (the margin is
        δ × θ_initial's effect), `ctx` the sweep's facts (n_test, k_half, alpha)."""
        raise NotImplementedError(f"attack {cls.name} defines no verdict tests")

    @classmethod
    def needed(cls, ev: Evidence, level: float) -> int | None:
        """The number of units at which the observed effect would reach a decision at `level`."""
        return needed_normal(ev, level)

    @classmethod
    def advice(cls, ev: Evidence, n: int | None) -> str:
        """What an inconclusive verdict asks for."""
        if n is None:
            return "no sample size decides at this effect"
        return f"~{n} {cls.verdict_unit} would decide (now {ev.n})"

    @classmethod
    def verdict_text(cls, ctx: dict) -> str:
        """A paragraph: the tests, with the detection floor and the margin in the attack's units."""
        return ""

    @classmethod
    def power(cls, evidence: dict, ctx: dict) -> dict | None:
        """The power line's figures at the report's own sample: {"removes": P(a model as good as
        θ_retrain is judged removes), "fails": P(one keeping half of θ_initial's effect is judged
        fails), "n", "unit", ...}; None where this attack's tests are not simulated."""
        return None

    @classmethod
    def caution(cls, initial: Evidence, ctx: dict) -> list[str]:
        """Warnings: θ_initial tested against θ_retrain the same way as the methods (uncorrected, at
        α): when that does not reject, the attack did not take and "removes" means nothing."""
        if initial.p_fails is None:
            return [f"Caution: θ_initial's poison effect could not be tested against θ_retrain "
                    f"({initial.note or 'missing figures'}), so no verdict here is evidence about unlearning."]
        if initial.p_fails <= ctx["alpha"]:
            return []
        return [f"Caution: θ_initial itself shows no significant poison effect against θ_retrain by this "
                f"attack's own test (effect {_fmt(initial.effect)}, p = {_fmt(initial.p_fails)} > α = "
                f"{ctx['alpha']:g}): the attack did not take, so no verdict here says anything about "
                "unlearning. Use a scenario where θ_initial shows the poison."]


def _fmt(v) -> str:
    return "–" if v is None or v != v else f"{float(v):.3g}"
