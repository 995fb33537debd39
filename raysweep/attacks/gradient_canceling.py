"""Indiscriminate poisoning by Gradient Canceling (Lu, Kamath & Yu 2023).

1. Train a clean model θ on the clean set, then corrupt its classifier head (the last layer group)
   by gradient ascent on the training loss until its training accuracy falls to `target_acc`
   (or `corrupt_steps` run out): the low-accuracy target parameter θ_p.
2. Optimise n_p = fraction × n poison inputs X_p (initialised from random clean training images,
   labels kept, pixels clamped to [0, 1]) so that θ_p becomes a stationary point of the training
   loss over clean + poison data, on the attacked parameters (the head):
       minimise || n_c · G_clean(θ_p) + Σ_p ∇_head L(θ_p; x_p, y_p) ||² / (n_c + n_p)²
   where G_clean is the mean clean gradient at θ_p (fixed).
With λ = the victim's weight decay, n_all·λ·θ_p joins the fixed clean term. The attack takes hold
where the victim's objective is convex in the attacked parameters: `victim: head` in the scenario
(θ_initial fine-tunes only the head of the clean base model, which is also the attacker's model).
The poisons are appended to the training set. Metric: test accuracy, whose drop versus θ_retrain
is the attack's effect. Default poison fraction eps_d = 3 %.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.base import Dataset, Split
from ..errors import ConfigError, check_number
from ..metrics import per_sample_losses
from ..stats.evidence import Evidence, encode_bits, mean_of, paired_binary
from ..stats.evidence import fmt3 as _fmt
from ..stats.exact import norm_ppf
from . import ATTACKS
from .base import Attack, BuildEnv, PoisonedSet
from .heads import head, head_inputs, head_params
from .pixels import to_normalised, to_pixels


def corrupt_head(model, data: Split, target_acc: float, steps: int, lr: float, batch: int,
                 gen: torch.Generator) -> float:
    """Gradient ascent on the head only, on the (fixed) features of the clean data, until the
    training accuracy is at most `target_acc` (checked after every step); returns the accuracy."""
    last = head(model)
    feats, y = head_inputs(model, data), data.y
    opt = torch.optim.SGD(last.parameters(), lr=lr)
    acc = lambda: float((last(feats).argmax(1) == y).float().mean())  # noqa: E731
    now = acc()
    for _ in range(steps):
        if now <= target_acc:
            break
        idx = torch.randint(len(data), (batch,), generator=gen).to(y.device)
        loss = -F.cross_entropy(last(feats[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            now = acc()
    return now


def mean_head_gradient(model, data: Split, batch: int = 1000) -> list[torch.Tensor]:
    params = head_params(model)
    acc = [torch.zeros_like(p) for p in params]
    for start in range(0, len(data), batch):
        idx = torch.arange(start, min(len(data), start + batch), device=data.y.device)
        x, y, _ = data.batch(idx)
        loss = F.cross_entropy(model(model.prepare_input(x)), y, reduction="sum")
        for a, g in zip(acc, torch.autograd.grad(loss, params)):
            a += g
    return [a / len(data) for a in acc]


def cancel(model, x_pix: torch.Tensor, y: torch.Tensor, g_clean: list[torch.Tensor], n_clean: int,
           mean: torch.Tensor, std: torch.Tensor, steps: int, lr: float,
           weight_decay: float = 0.0) -> tuple[torch.Tensor, list[float]]:
    """Optimise poison pixels [n_p, C, H, W] in [0, 1]; returns (pixels, objective per step).

    weight_decay: the victim's L2 coefficient λ; θ_p is then made stationary for the regularised
    objective mean loss + λ/2·||θ||² (mean over n_clean + n_p samples), as its SGD sees it.
    """
    model.eval()
    params = head_params(model)
    n_all = n_clean + len(x_pix)
    g_clean = [n_clean * gc + n_all * weight_decay * p.detach() for gc, p in zip(g_clean, params)]
    x = x_pix.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    n_p, trace = len(x), []
    for _ in range(steps):
        loss_p = F.cross_entropy(model(model.prepare_input(to_normalised(x, mean, std))), y, reduction="sum")
        g_p = torch.autograd.grad(loss_p, params, create_graph=True)
        total = sum(((gc + gp) ** 2).sum() for gc, gp in zip(g_clean, g_p)) / (n_clean + n_p) ** 2
        opt.zero_grad(set_to_none=True)
        (gx,) = torch.autograd.grad(total, x)
        x.grad = gx
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        trace.append(float(total.detach()))
    return x.detach(), trace


@ATTACKS.register("gradient_canceling")
class GradientCanceling(Attack):
    name = "gradient_canceling"
    data_kinds = ("image",)
    metric = "test_acc"

    @classmethod
    def check(cls, params: dict) -> dict:
        allowed = {"fraction", "steps", "lr", "target_acc", "corrupt_steps", "corrupt_lr"}
        cls.only(params, allowed)
        p = {"fraction": 0.03, "steps": 200, "lr": 0.01, "target_acc": 0.2, "corrupt_steps": 500,
             "corrupt_lr": 0.01, **params}
        check_number("attack.fraction", p["fraction"], lo=0, hi=1, lo_open=True, hi_open=True,
                     what="the poison fraction eps_d")
        for key in ("steps", "corrupt_steps"):
            check_number(f"attack.{key}", p[key], lo=1, integer=True)
        for key in ("lr", "corrupt_lr"):
            check_number(f"attack.{key}", p[key], lo=0, lo_open=True, what="a step size")
        check_number("attack.target_acc", p["target_acc"], lo=0, hi=1, hi_open=True, what="an accuracy")
        return p

    def check_data(self, data: Dataset) -> None:
        if data.kind != "image" or data.std is None:
            raise ConfigError("attack.name", self.name, "an image dataset (pixel range [0, 1])")

    def build(self, data: Dataset, seed: int, env: BuildEnv | None = None) -> dict[str, torch.Tensor]:
        if env is None:
            raise ConfigError("attack.name", self.name, "a scenario build (it trains a clean model)")
        self.check_data(data)
        p, dev = self.params, env.device
        g = torch.Generator().manual_seed(seed)
        n_p = max(1, round(p["fraction"] * len(data.train)))
        src = torch.randperm(len(data.train), generator=g)[:n_p].sort().values
        clean = data.train.to(dev)
        if env.base is not None:  # victim=head: the attacker knows the victim's clean base model
            env.log(f"gradient canceling: corrupting the base model's head; then {n_p} poisons")
            model = env.base()
        else:
            env.log(f"gradient canceling: training the clean model; then {n_p} poisons")
            model = env.new_model()
            env.train(model, clean)
        acc = corrupt_head(model, clean, p["target_acc"], p["corrupt_steps"], p["corrupt_lr"], 256, g)
        env.log(f"gradient canceling: corrupted head reaches training accuracy {acc:.3f}")
        g_clean = [t.detach() for t in mean_head_gradient(model, clean)]
        x_pix = to_pixels(data.train.x[src], data.mean, data.std).to(dev)
        x_p, trace = cancel(model, x_pix, data.train.y[src].to(dev), g_clean, len(clean), data.mean.to(dev),
                            data.std.to(dev), p["steps"], p["lr"], env.weight_decay)
        env.log(f"gradient canceling: objective {trace[0]:.3g} -> {trace[-1]:.3g} over {len(trace)} steps")
        return {"poison_pixels": x_p.cpu(), "poison_y": data.train.y[src].cpu(), "source_idx": src,
                "objective_trace": torch.tensor(trace), "target_head_acc": torch.tensor([acc])}

    @classmethod
    def effect(cls, metrics: dict, references: dict) -> float:
        """Validation accuracy still missing against θ_retrain (0 once recovered)."""
        return max(0.0, float(references["retrain"]["val_acc"]) - float(metrics["val_acc"]))

    def apply(self, data: Dataset, stored: dict[str, torch.Tensor]) -> PoisonedSet:
        xp = to_normalised(stored["poison_pixels"], data.mean, data.std)
        n = len(data.train)
        train = Split(torch.cat([data.train.x, xp.to(data.train.x.device)]),
                      torch.cat([data.train.y, stored["poison_y"].to(data.train.y.device)]))
        return PoisonedSet(train, torch.arange(n, n + len(xp)), None, None, None, None,
                           {"source_idx": stored["source_idx"]})

    @torch.no_grad()
    def evaluate(self, model, data: Dataset, poisoned: PoisonedSet) -> dict:
        """Which test images the model classifies correctly (`test_correct`, encoded bits): the
        verdict pairs them with θ_retrain's, image by image."""
        _, correct = per_sample_losses(model, data.test)
        return {"test_correct": encode_bits(correct.cpu().numpy())}

    # ---- the verdict (docs/verdict.md) -------------------------------------------------------
    effect_label = "poison effect: validation accuracy missing vs θ_retrain"
    verdict_unit = "test images"
    effect_header = "accuracy drop vs θ_retrain"
    item_keys = ("test_correct",)

    @classmethod
    def verdict_evidence(cls, mine, refs, margin_fraction, ctx) -> Evidence:
        """Units: the test images, each model's correctness paired with θ_retrain's on the same image.
        fails: McNemar's exact test (one-sided sign test on the discordant images); removes: the
        paired accuracy drop is shown below δ × θ_initial's drop (one-sided t-test)."""
        ev = paired_binary(mine, refs, "test_correct", "test_acc", -1, margin_fraction, ctx.get("n_test"))
        ev.base = mean_of(refs["retrain"], "test_acc")
        return ev

    @classmethod
    def verdict_text(cls, ctx: dict) -> str:
        a, m, ini = ctx["alpha"], ctx["m"], ctx["initial"]
        n = ini.n
        floor = norm_ppf(1 - a / m) * (ini.sd or 0) / math.sqrt(n) if n else float("nan")
        return (f"Poison effect: the test accuracy lost against θ_retrain, paired image by image on the {n} test "
                f"images (the search tuned on the validation split). **Fails**: McNemar's exact test (one-sided "
                f"sign test on the images where the method and θ_retrain differ), Holm over {m} methods at "
                f"α = {a:g}; at θ_initial's discordance a drop of about {floor:.3f} is detectable at the strictest "
                f"step. **Removes**: the paired drop is shown below the margin δ {ctx['delta']:g} × θ_initial's drop "
                f"= {_fmt(ini.margin)} (one-sided t-test, Holm). **Inconclusive** otherwise, with the number of "
                f"test images that would decide. Accuracy kept is the separate condition stated above.")
