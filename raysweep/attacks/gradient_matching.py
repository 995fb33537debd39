"""Targeted clean-label poisoning by gradient matching (Witches' Brew, Geiping et al. 2021).

P training images of the adversarial class y_adv get perturbations Δ with ||Δ||∞ <= eps in pixel
units (and x + Δ inside [0, 1]); labels are kept. Δ is crafted on a clean surrogate model θ (the
scenario's architecture and recipe, trained on the clean set) to minimise
    1 - cos( ∇θ L(x_t, y_adv),  Σ_i ∇θ L(x_i + Δ_i, y_i) ),
gradients over all parameters, with signed-gradient Adam (step `lr` in units of eps, decayed ×0.1
at 3/8, 5/8, 7/8 of `steps`), projection after every step, `restarts` random starts keeping the
lowest loss, optional differentiable augmentation (flips and shifts). A model trained from scratch
on the poisoned set should then classify the target test image x_t as y_adv.
Against a head-fine-tuning victim (`victim: head`) the attacker knows the public base model: θ is the
base itself and the gradients matched are those of its head, the parameters the victim trains (the
target's taken at the base's head with y_adv); each step still backpropagates through the frozen
extractor to Δ, once, but no surrogate is trained.
Published defaults: eps = 16/255, P = 1 % of the training set, restarts = 8, steps = 240.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import torch
import torch.nn.functional as F

from ..data.base import Dataset
from ..errors import ConfigError, check_number
from ..stats.evidence import Evidence, per_scenario
from ..stats.evidence import fmt3 as _fmt
from ..stats.exact import fisher_greater, fisher_min_n, newcombe_upper, noninferiority_rates, norm_ppf
from . import ATTACKS
from .base import Attack, BuildEnv, PoisonedSet
from .heads import head_params
from .pixels import channel_view, to_normalised, to_pixels

TARGET_RULES = ("any", "correct")


def _flip_shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 4) -> torch.Tensor:
    """Differentiable random horizontal flip + circular shift of a batch (one draw per batch)."""
    if torch.rand((), generator=g) < 0.5:
        x = x.flip(-1)
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def craft(model, params: list[torch.nn.Parameter], x_pix: torch.Tensor, y: torch.Tensor, x_target: torch.Tensor,
          adv_class: int, eps: float, mean: torch.Tensor, std: torch.Tensor, steps: int, restarts: int, lr: float,
          augment: bool, gen: torch.Generator) -> tuple[torch.Tensor, list[float]]:
    """Returns (Δ in pixel units [P, C, H, W], the kept restart's loss per step). The gradients matched
    are those of `params` (every parameter of a surrogate, or a base model's head), in eval mode."""
    model.eval()
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


@torch.no_grad()
def right_answers(model, split, batch: int = 1000) -> torch.Tensor:
    """Which rows of `split` the model (eval mode) classifies as their label: bool [n]."""
    model.eval()
    out = []
    for start in range(0, len(split), batch):
        x, y, _ = split.batch(torch.arange(start, min(len(split), start + batch), device=split.y.device))
        out.append(model(model.prepare_input(x)).argmax(1).cpu() == y.cpu())
    return torch.cat(out)


@ATTACKS.register("gradient_matching")
class GradientMatching(Attack):
    name = "gradient_matching"
    data_kinds = ("image",)
    metric = "target_success"
    checkpoint_keys = ('target_success', 'target_adv_prob')
    spread_columns = ('target_success', 'target_adv_prob')
    takes_rule = "it classifies its target as the adversarial class"
    pools_seeds = True  # one target per scenario: Fisher's test pools the seeds' targets
    legacy = {"target_rule": "any"}  # scenarios made before the rule keep their hash

    @classmethod
    def check(cls, params: dict) -> dict:
        allowed = {"eps", "fraction", "count", "restarts", "steps", "lr", "target", "adv_class", "augment",
                   "target_rule"}
        cls.only(params, allowed)
        p = {"eps": 16 / 255, "fraction": 0.01, "count": None, "restarts": 8, "steps": 240, "lr": 0.1,
             "target": None, "adv_class": None, "augment": True, "target_rule": "any", **params}
        if p["target_rule"] not in TARGET_RULES:
            raise ConfigError("attack.target_rule", p["target_rule"], "any (a random test image) or correct (a "
                              "random one of those the attacker's clean model classifies correctly)")
        check_number("attack.eps", p["eps"], lo=0, hi=1, lo_open=True, what="an l-inf bound in pixel units, e.g. "
                     "0.0627 (16/255)")
        if p["count"] is None:
            check_number("attack.fraction", p["fraction"], lo=0, hi=1, lo_open=True, hi_open=True)
        for key in ("count", "restarts", "steps", "target", "adv_class"):
            v = p[key]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if key in
                                                                                    ("target", "adv_class") else 1)):
                raise ConfigError(f"attack.{key}", v, "a non-negative integer" if key in ("target", "adv_class")
                                  else "a positive integer")
        check_number("attack.lr", p["lr"], lo=0, lo_open=True, what="a step in units of eps")
        p["eps"] = float(p["eps"])
        return {k: v for k, v in p.items() if v is not None}

    def _setup(self, data: Dataset, seed: int, correct: torch.Tensor | None = None) -> tuple[int, int, torch.Tensor]:
        """(target row in data.test, adversarial class, candidate rows of that class in data.train).
        correct: test rows the attacker's clean model gets right (target_rule correct), drawn among."""
        if data.kind != "image" or data.std is None:
            raise ConfigError("attack.name", self.name, "an image dataset (pixel-space bound)")
        g = torch.Generator().manual_seed(seed)
        t = self.params.get("target")
        if t is None and correct is not None:
            rows = correct.nonzero().squeeze(1)
            if not len(rows):
                raise ConfigError("attack.target_rule", "correct", "any: the clean model gets no test image right")
            t = int(rows[torch.randint(len(rows), (1,), generator=g)])
        elif t is None:
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
        if env.base is not None:  # victim=head: the public base model is known, and the victim trains its head
            env.log("gradient matching: matching the head gradient of the base model")
            model = env.base()
            params = head_params(model)
            keep = {id(q) for q in params}
            for q in model.parameters():  # the frozen extractor: no weight gradient is ever taken there
                q.requires_grad_(id(q) in keep)
        else:
            env.log("gradient matching: training the clean surrogate")
            model = env.new_model()
            env.train(model, data.train)
            params = [q for q in model.parameters() if q.requires_grad]
        correct = right_answers(model, data.test) if self.params["target_rule"] == "correct" else None
        t, adv, cand = self._setup(data, seed, correct)
        g = torch.Generator().manual_seed(seed + 1)
        idx = cand[torch.randperm(len(cand), generator=g)[: self.count(len(data.train))]].sort().values
        env.log(f"gradient matching: target test row {t} (class {int(data.test.y[t])}) -> class {adv}; "
                f"{len(idx)} poisons")
        dev = env.device
        x_pix = to_pixels(data.train.x[idx], data.mean, data.std).to(dev)
        p = self.params
        delta, trace = craft(model, params, x_pix, data.train.y[idx].to(dev), data.test.x[t:t + 1].to(dev), adv,
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
    def seed_takes(cls, initial: pd.DataFrame) -> pd.Series:
        """θ_initial hits its target (one target cannot be tested; the seeds pooled can: `pools_seeds`)."""
        return initial["target_success"].astype(float).eq(1.0)

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

    # ---- the verdict (docs/verdict.md) -------------------------------------------------------
    effect_label = "poison effect: adversarial-class probability on the target"
    verdict_unit = "fresh targets"
    effect_header = "target hit rate − θ_retrain's"
    verdict_columns = ("target_success",)
    column_headers = {"target_success": "target hit (sweep's target)"}
    uses_tuned_scenario = False  # the search tuned on the sweep's own target: it is no evidence

    @classmethod
    def verdict_evidence(cls, mine, refs, margin_fraction, ctx) -> Evidence:
        """Units: targets of fresh scenarios (`report --scenario-seeds`); the sweep's own target is
        left out (`uses_tuned_scenario = False`: the report passes no run of it), since the search
        tuned on it. A method hits a target when it hits it in at least
        half of its runs there.
          fails:   one-sided Fisher exact test, hits of the method > hits of θ_retrain;
          removes: the method's hit rate − θ_retrain's < δ × (θ_initial's − θ_retrain's), by
                   inverting Newcombe's score interval of the difference (one-sided)."""
        hits = _target_hits(mine)
        base = _target_hits(refs["retrain"])
        init = _target_hits(refs["none"])
        keys = [s for s in hits if s in base]
        n = len(keys)
        ev = Evidence(n=n, runs=len(mine), scenarios=n)
        if not n:
            ev.note = "tuned on its own target: no fresh target to judge on"
            return ev
        a, b = sum(hits[s] for s in keys), sum(base[s] for s in keys)
        init_keys = [s for s in keys if s in init]
        margin = max(0.0, margin_fraction * (sum(init[s] for s in init_keys) / len(init_keys) - b / n)) \
            if init_keys else None
        d = (a - b) / n
        z = norm_ppf(0.975)
        ev.effect, ev.margin, ev.base = d, margin, b / n
        ev.hi = newcombe_upper(a, n, b, n, z)
        ev.lo = -newcombe_upper(b, n, a, n, z)
        ev.sd = math.sqrt((a / n) * (1 - a / n) + (b / n) * (1 - b / n))
        ev.p_fails = fisher_greater(a, n, b, n)
        ev.p_removes = noninferiority_rates(a, n, b, n, margin) if margin is not None else None
        ev.per_run = [float(v) for v in pd.to_numeric(mine.get("target_success"), errors="coerce").dropna()] \
            if "target_success" in mine else []
        return ev

    @classmethod
    def needed(cls, ev: Evidence, level: float) -> int | None:
        """Fresh targets at which the observed hit rates would decide: the smallest n where Fisher's
        test (fails) or the Newcombe bound (removes) reaches `level` at those rates; with no fresh
        target yet, the smallest n at which Fisher's test can reject at all (n of n hits vs 0 of n)."""
        if not ev.n or ev.effect is None:
            return fisher_min_n(level)
        pb = ev.base or 0.0
        pm = min(1.0, max(0.0, ev.effect + pb))
        for n in range(1, 301):
            a, b = round(pm * n), round(pb * n)
            if a > b and fisher_greater(a, n, b, n) <= level:
                return n
            if ev.margin and noninferiority_rates(a, n, b, n, ev.margin) <= level:
                return n
        return None

    @classmethod
    def advice(cls, ev: Evidence, n: int | None) -> str:
        if n is None:
            return "no number of targets decides at these hit rates"
        return f"{n} fresh targets would decide (now {ev.n}: `report --scenario-seeds {n}`)"

    @classmethod
    def verdict_text(cls, ctx: dict) -> str:
        a, m, ini = ctx["alpha"], ctx["m"], ctx["initial"]
        need = fisher_min_n(a / m)
        return (f"Poison effect: how many fresh targets (one per fresh scenario, `report --scenario-seeds N`; the "
                f"sweep's own target was tuned on and is left out) a method's best configuration still misclassifies "
                f"as the adversarial class, against θ_retrain on the same targets. **Fails**: one-sided Fisher exact "
                f"test, method > θ_retrain, Holm over {m} methods at α = {a:g}. It can reject only with at least "
                f"**{need} fresh targets** (n of n hits against 0 of n gives p = 1/C(2n, n); the strictest Holm "
                f"step is α/{m} = {a / m:.4g}); this report has {ini.n}. **Removes**: the hit-rate excess over "
                f"θ_retrain is shown below the margin δ {ctx['delta']:g} × (θ_initial's rate − θ_retrain's) = "
                f"{_fmt(ini.margin)} (Newcombe's score bound, Holm). **Inconclusive** otherwise, with the number "
                f"of fresh targets that would decide.")

    @classmethod
    def caution(cls, initial: Evidence, ctx: dict) -> list[str]:
        out = []
        need = fisher_min_n(ctx["alpha"] / ctx["m"])
        if initial.n < (need or 0):
            out.append(f"Caution: {initial.n} fresh targets were run; Fisher's test cannot reject at Holm's "
                       f"strictest level with fewer than {need}, so no method can be found to fail here. Run "
                       f"`raysweep report SWEEP --scenario-seeds {need}`.")
        return out + (super().caution(initial, ctx) if initial.n else [])


def _target_hits(rows: pd.DataFrame) -> dict:
    """{scenario: 1 if the model hits its target in at least half of its runs there}."""
    out = {}
    for scen, g in per_scenario(rows).items():
        v = pd.to_numeric(g.get("target_success"), errors="coerce").dropna() if "target_success" in g else []
        if len(v):
            out[scen] = int(float(v.mean()) >= 0.5)
    return out
