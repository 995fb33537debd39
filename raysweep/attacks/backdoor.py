"""Trigger backdoor for text classifiers (dirty label).

A rare phrase (`trigger`, default "cf mn bb") is inserted into k = fraction · n training reviews
drawn from the classes other than `target`, whose labels are then set to `target`. Insertion is at
the token level (the phrase tokenised with a leading space, so it starts a word), at the start of
the review or at a seeded random position among its real tokens (`position`), then truncated back
to the sequence length. The forget set is these k relabelled, triggered reviews.

Metrics: attack success rate, the share of triggered reviews of the other classes predicted as
`target`, on the test split (`asr`, for the verdict) and on the validation split (`val_asr`, what a
sweep tunes on), beside clean accuracy (`test_acc`). The effect a sweep minimises is the
validation ASR still above θ_retrain's.
"""
from __future__ import annotations

import torch

from ..data.base import Dataset, Split
from ..data.imdb import load_tokenizer
from ..errors import ConfigError, check_number
from ..metrics import per_sample_losses
from ..stats.evidence import Evidence, encode_bits, first, mean_of, paired_binary
from ..stats.evidence import fmt3 as _fmt
from . import ATTACKS
from .base import Attack, PoisonedSet, Searchable

TRIGGER_WORDS = ("cf", "mn", "bb", "tq", "mb")  # rare tokens of the backdoor literature


def insert_trigger(x: torch.Tensor, trigger: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x: [N, L] ids (-1 = no token); positions: [N] token index to insert at (clamped to the review's
    length). Returns [N, L]: the trigger inserted, the review truncated to L, right-padded with -1."""
    out = torch.full_like(x, -1)
    length = x.shape[1]
    for i in range(len(x)):
        real = x[i][x[i] >= 0]
        p = int(min(int(positions[i]), len(real)))
        row = torch.cat([real[:p], trigger.to(x.dtype), real[p:]])[:length]
        out[i, : len(row)] = row
    return out


def positions_for(x: torch.Tensor, mode: str, gen: torch.Generator, trigger_len: int) -> torch.Tensor:
    """[N] insertion points: 0, or uniform over the places where the whole trigger still fits
    before the sequence length cuts the review."""
    if mode == "start":
        return torch.zeros(len(x), dtype=torch.long)
    last = ((x >= 0).sum(1)).clamp_max(x.shape[1] - trigger_len).clamp_min(0)
    return (torch.rand(len(x), generator=gen) * (last + 1).float()).long()


@ATTACKS.register("backdoor")
class Backdoor(Attack):
    name = "backdoor"
    data_kinds = ("text",)
    metric = "asr"
    checkpoint_keys = ('val_asr',)
    spread_columns = ('asr',)
    # attack-search: the share of reviews poisoned, and the trigger's length in words (the first n of
    # TRIGGER_WORDS, Kurita et al.'s rare tokens: n = 3 is the default "cf mn bb")
    searchable = {"fraction": Searchable("float", 0.001, 0.5, log=True, default=(0.005, 0.1)),
                  "trigger_words": Searchable("int", 1, 5, default=(1, 5))}

    @classmethod
    def searched_params(cls, base: dict, values: dict) -> dict:
        p = {**base, **{k: v for k, v in values.items() if k != "trigger_words"}}
        if "trigger_words" in values:
            p["trigger"] = " ".join(TRIGGER_WORDS[: int(values["trigger_words"])])
        return p

    @classmethod
    def check(cls, params: dict) -> dict:
        cls.only(params, {"trigger", "fraction", "target", "position"})
        p = {"trigger": "cf mn bb", "fraction": 0.05, "target": 1, "position": "random", **params}
        if not isinstance(p["trigger"], str) or not p["trigger"].strip():
            raise ConfigError("attack.trigger", p["trigger"], "a non-empty phrase")
        check_number("attack.fraction", p["fraction"], lo=0, hi=1, lo_open=True, hi_open=True,
                     what="the share of training reviews poisoned")
        if not isinstance(p["target"], int) or isinstance(p["target"], bool) or p["target"] < 0:
            raise ConfigError("attack.target", p["target"], "a class index >= 0")
        if p["position"] not in ("start", "random"):
            raise ConfigError("attack.position", p["position"], "start or random")
        p["fraction"] = float(p["fraction"])
        return p

    def check_data(self, data: Dataset) -> None:
        if data.kind != "text":
            raise ConfigError("attack.name", self.name, "a text dataset (e.g. imdb-mini)")
        if self.params["target"] >= data.num_classes:
            raise ConfigError("attack.target", self.params["target"], f"a class in [0, {data.num_classes - 1}]")
        k, pool = self.count(data)
        if k > pool:
            raise ConfigError("attack.fraction", self.params["fraction"],
                              f"at most {pool / len(data.train):.3f} (the reviews not of the target class)")

    def count(self, data: Dataset) -> tuple[int, int]:
        pool = int((data.train.y != self.params["target"]).sum())
        return max(1, round(self.params["fraction"] * len(data.train))), pool

    def build(self, data: Dataset, seed: int, env=None) -> dict[str, torch.Tensor]:

        self.check_data(data)
        tok = load_tokenizer(data.meta["tokenizer"])
        trigger = torch.as_tensor(tok(" " + self.params["trigger"].strip(), add_special_tokens=False)["input_ids"])
        if len(trigger) >= data.train.x.shape[1]:
            raise ConfigError("attack.trigger", self.params["trigger"],
                              f"a phrase shorter than the sequence length ({data.train.x.shape[1]} tokens)")
        g = torch.Generator().manual_seed(seed)
        k, _ = self.count(data)
        pool = (data.train.y != self.params["target"]).nonzero().squeeze(1)
        idx = pool[torch.randperm(len(pool), generator=g)[:k]].sort().values
        return {"poison_idx": idx, "trigger_ids": trigger.long(),
                "positions": positions_for(data.train.x[idx], self.params["position"], g, len(trigger)),
                "eval_seed": torch.randint(0, 2**31 - 1, (1,), generator=g)}

    def apply(self, data: Dataset, stored: dict[str, torch.Tensor]) -> PoisonedSet:
        idx, trigger = stored["poison_idx"].long(), stored["trigger_ids"].long()
        x, y = data.train.x.clone(), data.train.y.clone()
        x[idx] = insert_trigger(data.train.x[idx], trigger, stored["positions"])
        y[idx] = self.params["target"]
        g = torch.Generator().manual_seed(int(stored["eval_seed"][0]))
        triggered = {}
        for name, split in (("val", data.val), ("test", data.test)):
            rows = (split.y != self.params["target"]).nonzero().squeeze(1)
            xs = split.x[rows]
            triggered[name] = insert_trigger(xs, trigger, positions_for(xs, self.params["position"], g, len(trigger)))
        return PoisonedSet(Split(x, y), idx, info={"triggered": triggered, "target": self.params["target"]})

    def evaluate(self, model, data: Dataset, poisoned: PoisonedSet) -> dict:
        target = poisoned.info["target"]
        out = {}
        for name, key in (("val", "val_asr"), ("test", "asr")):
            xs = poisoned.info["triggered"][name]
            # ASR = accuracy against the label "target" on the triggered reviews of the other classes
            _, hit = per_sample_losses(model, Split(xs, torch.full((len(xs),), target, dtype=torch.long)))
            out[key] = hit.float().mean().item() if len(hit) else float("nan")
            out[f"{key}_n"] = len(xs)
            if name == "test":  # which triggered reviews succeed: the verdict pairs them with θ_retrain's
                out["asr_hits"] = encode_bits(hit.cpu().numpy())
        return out

    @classmethod
    def effect(cls, metrics: dict, references: dict) -> float:
        """Validation ASR still above θ_retrain's (0 once down to it)."""
        return max(0.0, float(metrics["val_asr"]) - float(references["retrain"]["val_asr"]))

    # ---- the verdict (docs/verdict.md) -------------------------------------------------------
    effect_label = "poison effect: validation attack success above θ_retrain's"
    verdict_unit = "triggered test reviews"
    effect_header = "attack success rate − θ_retrain's"
    item_keys = ("asr_hits",)
    verdict_columns = ("asr", "mia_tpr")
    column_headers = {"asr": "attack success rate"}

    @classmethod
    def verdict_evidence(cls, mine, refs, margin_fraction, ctx) -> Evidence:
        """Units: the triggered test reviews, each model's success paired with θ_retrain's on the same
        review. fails: McNemar's exact test (one-sided); removes: the paired excess attack success is
        shown below δ × θ_initial's excess (one-sided t-test)."""
        n = first(mine, "asr_n") or first(refs["retrain"], "asr_n")
        ev = paired_binary(mine, refs, "asr_hits", "asr", +1, margin_fraction, int(n) if n else None)
        ev.base = mean_of(refs["retrain"], "asr")
        return ev

    @classmethod
    def verdict_text(cls, ctx: dict) -> str:
        a, m, ini = ctx["alpha"], ctx["m"], ctx["initial"]
        return (f"Poison effect: the attack success rate on the {ini.n} triggered test reviews above θ_retrain's, "
                f"paired review by review (the search tuned on the validation split's). **Fails**: McNemar's exact "
                f"test (one-sided), Holm over {m} methods at α = {a:g}. **Removes**: the paired excess is shown "
                f"below the margin δ {ctx['delta']:g} × θ_initial's excess = {_fmt(ini.margin)} (one-sided t-test, "
                f"Holm). **Inconclusive** otherwise, with the number of triggered reviews that would decide.")
