"""A test-only attack, complete in this one file: label flipping toward one class.

k training images of class `source` get the label `target`. Its own metric: the share of the
test (and validation) images of class `source` predicted as `target` (`flip_rate`, `val_flip_rate`),
with the per-image hits for a paired test against θ_retrain. Registered by loading this file as a
plug-in (RAYSWEEP_PLUGINS=tests/plugins/toy_attack.py); nothing else in raysweep names it. It declares
its one searchable parameter, k, so `raysweep attack-search` can search it (tests/test_attack_search.py).
"""
from __future__ import annotations

import torch

from raysweep.attacks import ATTACKS
from raysweep.attacks.base import Attack, PoisonedSet, Searchable
from raysweep.data.base import Split
from raysweep.errors import ConfigError, check_number
from raysweep.metrics import per_sample_losses
from raysweep.stats.evidence import encode_bits, first, mean_of, paired_binary


@ATTACKS.register("toy_flip")
class ToyFlip(Attack):
    name = "toy_flip"
    metric = "flip_rate"
    checkpoint_keys = ("val_flip_rate",)
    spread_columns = ("flip_rate",)
    effect_label = "poison effect: validation flip rate above θ_retrain's"
    verdict_unit = "test images of the source class"
    effect_header = "flip rate − θ_retrain's"
    item_keys = ("flip_hits",)
    verdict_columns = ("flip_rate",)
    searchable = {"k": Searchable("int", 1, 5000, default=(20, 200))}  # `raysweep attack-search` may search it

    @classmethod
    def check(cls, params: dict) -> dict:
        cls.only(params, {"k", "source", "target"})
        p = {"k": 100, "source": 0, "target": 1, **params}
        check_number("attack.k", p["k"], lo=1, integer=True)
        if p["source"] == p["target"]:
            raise ConfigError("attack.target", p["target"], "a class other than the source")
        return p

    def build(self, data, seed, env=None):
        rows = (data.train.y == self.params["source"]).nonzero().squeeze(1)
        if self.params["k"] > len(rows):
            raise ConfigError("attack.k", self.params["k"], f"at most {len(rows)} (images of the source class)")
        g = torch.Generator().manual_seed(seed)
        return {"poison_idx": rows[torch.randperm(len(rows), generator=g)[: self.params["k"]]].sort().values}

    def apply(self, data, stored):
        idx = stored["poison_idx"].long()
        y = data.train.y.clone()
        y[idx] = self.params["target"]
        return PoisonedSet(Split(data.train.x, y), idx)

    def evaluate(self, model, data, poisoned):
        out = {}
        for split, key in ((data.val, "val_flip_rate"), (data.test, "flip_rate")):
            rows = (split.y == self.params["source"]).nonzero().squeeze(1)
            target = torch.full((len(rows),), self.params["target"], dtype=torch.long, device=split.y.device)
            _, hit = per_sample_losses(model, Split(split.x[rows], target))
            out[key] = hit.float().mean().item()
            if key == "flip_rate":
                out["flip_n"], out["flip_hits"] = len(rows), encode_bits(hit.cpu().numpy())
        return out

    @classmethod
    def effect(cls, metrics, references):
        return max(0.0, float(metrics["val_flip_rate"]) - float(references["retrain"]["val_flip_rate"]))

    @classmethod
    def verdict_evidence(cls, mine, refs, margin_fraction, ctx):
        n = first(mine, "flip_n") or first(refs["retrain"], "flip_n")
        ev = paired_binary(mine, refs, "flip_hits", "flip_rate", +1, margin_fraction, int(n) if n else None)
        ev.base = mean_of(refs["retrain"], "flip_rate")
        return ev

    @classmethod
    def verdict_text(cls, ctx):
        return "Poison effect: the toy attack's flip rate on the source class's test images above θ_retrain's."

    @classmethod
    def caution(cls, initial, ctx):
        return ["Caution (toy attack): " + " ".join(super().caution(initial, ctx) or ["the attack took."])]
