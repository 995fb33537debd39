"""Targeted clean-label poisoning by gradient matching (Witches' Brew, Geiping et al. 2021).

P training images of the adversarial class y_adv get perturbations Δ with ||Δ||∞ <= eps in pixel
units (and x + Δ inside [0, 1]); labels are kept. Δ is crafted on a clean surrogate model θ (the
scenario's architecture and recipe, trained on the clean set) to minimise
    1 - cos( ∇θ L(x_t, y_adv),  Σ_i ∇θ L(x_i + Δ_i, y_i) ),
gradients over all parameters, with signed-gradient Adam (step `lr` in units of eps, decayed ×0.1
at 3/8, 5/8, 7/8 of `steps`), projection after every step, `restarts` random starts keeping the
lowest loss, optional differentiable augmentation (flips and shifts). A model trained from scratch
on the poisoned set should then classify the target test image x_t as y_adv.
Published defaults: eps = 16/255, P = 1 % of the training set, restarts = 8, steps = 240.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..data.base import Dataset
from ..errors import ConfigError
from . import ATTACKS
from .base import Attack, BuildEnv, PoisonedSet
from .pixels import channel_view, to_normalised, to_pixels


def _flip_shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 4) -> torch.Tensor:
    """Differentiable random horizontal flip + circular shift of a batch (one draw per batch)."""
    if torch.rand((), generator=g) < 0.5:
        x = x.flip(-1)
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def craft(model, x_pix: torch.Tensor, y: torch.Tensor, x_target: torch.Tensor, adv_class: int, eps: float,
          mean: torch.Tensor, std: torch.Tensor, steps: int, restarts: int, lr: float, augment: bool,
          gen: torch.Generator) -> tuple[torch.Tensor, list[float]]:
    """Returns (Δ in pixel units [P, C, H, W], the kept restart's loss per step)."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    tgt = F.cross_entropy(model(model.prepare_input(x_target)), torch.tensor([adv_class], device=x_target.device))
    g_t = [g.detach() for g in torch.autograd.grad(tgt, params)]
    g_t_norm = torch.sqrt(sum((g * g).sum() for g in g_t))
    lo, hi = -x_pix / eps, (1 - x_pix) / eps  # z bounds that keep x + eps z inside [0, 1]
    best, best_loss, best_trace = None, math.inf, []
    milestones = [int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    for _ in range(restarts):
        z = (torch.rand(x_pix.shape, generator=gen) * 2 - 1).to(x_pix.device)
        z = torch.max(torch.min(z, hi), lo).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, 0.1)
        trace = []
        for _ in range(steps):
            x_in = to_normalised(x_pix + eps * z, mean, std)
            if augment:
                x_in = _flip_shift(x_in, gen)
            loss_p = F.cross_entropy(model(model.prepare_input(x_in)), y, reduction="sum")
            g_p = torch.autograd.grad(loss_p, params, create_graph=True)
            dot = sum((a * b).sum() for a, b in zip(g_p, g_t))
            g_p_norm = torch.sqrt(sum((a * a).sum() for a in g_p))
            loss = 1 - dot / (g_p_norm * g_t_norm + 1e-12)
            (gz,) = torch.autograd.grad(loss, z)
            opt.zero_grad(set_to_none=True)
            z.grad = gz.sign()
            opt.step()
            sched.step()
            with torch.no_grad():
                z.copy_(torch.max(torch.min(z.clamp(-1, 1), hi), lo))
            trace.append(float(loss.detach()))
        final = trace[-1]
        if final < best_loss:
            best, best_loss, best_trace = (eps * z.detach()).clone(), final, trace
    return best, best_trace


@ATTACKS.register("gradient_matching")
class GradientMatching(Attack):
    name = "gradient_matching"
    metric = "target_success"

    @classmethod
    def check(cls, params: dict) -> dict:
        allowed = {"eps", "fraction", "count", "restarts", "steps", "lr", "target", "adv_class", "augment"}
        cls.only(params, allowed)
        p = {"eps": 16 / 255, "fraction": 0.01, "count": None, "restarts": 8, "steps": 240, "lr": 0.1,
             "target": None, "adv_class": None, "augment": True, **params}
        if not (isinstance(p["eps"], (int, float)) and 0 < p["eps"] <= 1):
            raise ConfigError("attack.eps", p["eps"], "an l-inf bound in pixel units in (0, 1], e.g. 0.0627 (16/255)")
        if p["count"] is None and not 0 < float(p["fraction"]) < 1:
            raise ConfigError("attack.fraction", p["fraction"], "a number in (0, 1)")
        for key in ("count", "restarts", "steps", "target", "adv_class"):
            v = p[key]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if key in
                                                                                    ("target", "adv_class") else 1)):
                raise ConfigError(f"attack.{key}", v, "a non-negative integer" if key in ("target", "adv_class")
                                  else "a positive integer")
        if not p["lr"] > 0:
            raise ConfigError("attack.lr", p["lr"], "a step > 0 (units of eps)")
        p["eps"] = float(p["eps"])
        return {k: v for k, v in p.items() if v is not None}

    def _setup(self, data: Dataset, seed: int) -> tuple[int, int, torch.Tensor]:
        """(target row in data.test, adversarial class, candidate rows of that class in data.train)."""
        if data.kind != "image" or data.std is None:
            raise ConfigError("attack.name", self.name, "an image dataset (pixel-space bound)")
        g = torch.Generator().manual_seed(seed)
        t = self.params.get("target")
        if t is None:
            t = int(torch.randint(len(data.test), (1,), generator=g))
        if t >= len(data.test):
            raise ConfigError("attack.target", t, f"a row of the test split (< {len(data.test)})")
        y_t = int(data.test.y[t])
        adv = self.params.get("adv_class")
        if adv is None:
            adv = int(torch.randint(data.num_classes - 1, (1,), generator=g))
            adv += int(adv >= y_t)
        if adv >= data.num_classes or adv == y_t:
            raise ConfigError("attack.adv_class", adv, f"a class other than the target's ({y_t}), < "
                              f"{data.num_classes}")
        return t, adv, (data.train.y.cpu() == adv).nonzero().squeeze(1)

    def count(self, n: int) -> int:
        return int(self.params.get("count") or max(1, round(self.params["fraction"] * n)))

    def check_data(self, data: Dataset) -> None:
        _, adv, cand = self._setup(data, 0)
        if self.count(len(data.train)) > len(cand):
            raise ConfigError("attack.count", self.count(len(data.train)),
                              f"at most the {len(cand)} training images of class {adv}")

    def build(self, data: Dataset, seed: int, env: BuildEnv | None = None) -> dict[str, torch.Tensor]:
        if env is None:
            raise ConfigError("attack.name", self.name, "a scenario build (it trains a surrogate model)")
        t, adv, cand = self._setup(data, seed)
        g = torch.Generator().manual_seed(seed + 1)
        idx = cand[torch.randperm(len(cand), generator=g)[: self.count(len(data.train))]].sort().values
        env.log(f"gradient matching: target test row {t} (class {int(data.test.y[t])}) -> class {adv}; "
                f"{len(idx)} poisons; training the clean surrogate")
        surrogate = env.new_model()
        env.train(surrogate, data.train)
        dev = env.device
        x_pix = to_pixels(data.train.x[idx], data.mean, data.std).to(dev)
        p = self.params
        delta, trace = craft(surrogate, x_pix, data.train.y[idx].to(dev), data.test.x[t:t + 1].to(dev), adv,
                             p["eps"], data.mean.to(dev), data.std.to(dev), p["steps"], p["restarts"], p["lr"],
                             p["augment"], g)
        env.log(f"gradient matching: loss {trace[0]:.3f} -> {trace[-1]:.3f} over {len(trace)} steps")
        return {"poison_idx": idx, "delta": delta.cpu(), "target_row": torch.tensor([t]),
                "adv_class": torch.tensor([adv]), "loss_trace": torch.tensor(trace)}

    def apply(self, data: Dataset, stored: dict[str, torch.Tensor]) -> PoisonedSet:
        idx, delta = stored["poison_idx"].long(), stored["delta"]
        x = data.train.x.clone()
        x[idx] = x[idx] + delta / channel_view(data.std, delta)
        return PoisonedSet(replace(data.train, x=x), idx, data.train.x[idx], None, None, None,
                           {"target_row": int(stored["target_row"][0]), "adv_class": int(stored["adv_class"][0])})

    @classmethod
    def effect(cls, metrics: dict, references: dict) -> float:
        """The model's probability of the adversarial class on the target (a smooth target success)."""
        return float(metrics["target_adv_prob"])

    @torch.no_grad()
    def evaluate(self, model, data: Dataset, poisoned: PoisonedSet) -> dict:
        t, adv = poisoned.info["target_row"], poisoned.info["adv_class"]
        was = model.training
        model.eval()
        dev = next(model.parameters()).device
        logits = model(model.prepare_input(data.test.x[t:t + 1].to(dev))).float()
        model.train(was)
        prob = torch.softmax(logits, 1)[0]
        return {"target_success": float(int(logits.argmax(1)) == adv), "target_adv_prob": float(prob[adv])}
