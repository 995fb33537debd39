"""The shared unlearning loop, the compute budget and the method interface.

Compute is counted in sample-gradients (one forward + backward of one sample through the whole
model), the unit in which θ_initial's training was counted; a budget is a fraction of that.
Counting rules (docs/budget.md):
  - a forward + backward sample pass costs 1, also when layers are frozen (EU-k, CF-k: conservative);
  - a forward-only sample pass (SCRUB's teacher) costs FORWARD_COST = 1/3 (backward ~ 2 forwards);
  - SSD's importance passes are forward + backward passes: 1 per sample.
A method never spends more than its cap: the last step's batches shrink to what is left.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
import torch.nn.functional as F

from ..data.base import Split
from ..defaults import CHECKPOINT_EVERY, MAX_BATCH, check_budget, check_checkpoint_every
from ..errors import ConfigError
from .schedule import lr_at

FORWARD_COST = 1.0 / 3.0


class Budget:
    """A cap in sample-gradients and what has been spent against it."""

    def __init__(self, cap: float):
        if not cap >= 0:
            raise ConfigError("budget", cap, "a number of sample-gradients >= 0")
        self.cap, self.spent = float(cap), 0.0

    @property
    def left(self) -> float:
        return max(0.0, self.cap - self.spent)

    def charge(self, amount: float) -> None:
        if self.spent + amount > self.cap * (1 + 1e-9) + 1e-9:
            raise RuntimeError(f"budget overrun: {self.spent} + {amount} > {self.cap}")
        self.spent += amount


MAX_INT = 2**31 - 1  # an integer hyperparameter's ceiling (steps, layers, batch sizes)


@dataclass
class Hyper:
    """Hyperparameters every iterative method shares. Subclass per method to add or re-default."""

    lr: float = field(default=1e-3, metadata={"help": "SGD learning rate", "min": 0.0, "max": 10.0})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum", "min": 0.0, "max": 0.9999})
    weight_decay: float = field(default=5e-4, metadata={"help": "L2 weight decay", "min": 0.0})
    batch_size: int = field(default=128, metadata={"help": "samples per batch (per split)", "min": 1,
                                                   "max": MAX_BATCH})
    bn: str = field(default="train", metadata={"help": "BatchNorm during unlearning", "choices": ("train", "frozen")})


@dataclass
class UnlearnResult:
    model: torch.nn.Module
    spent: float                 # sample-gradients spent
    cap: float                   # sample-gradients allowed
    train_compute: float         # sample-gradients of θ_initial's training (the budget's reference)
    steps: int
    diverged: bool
    wall_s: float
    hparams: dict
    stopped_early: bool = False

    @property
    def budget_spent(self) -> float:
        """Fraction of the original training compute spent."""
        return self.spent / self.train_compute if self.train_compute else 0.0


@dataclass
class Context:
    """What a method sees: the model, the data, the budget, a seeded generator."""

    model: torch.nn.Module
    forget: Split
    retain: Split
    full: Split
    budget: Budget
    gen: torch.Generator
    hp: Hyper
    state: dict = field(default_factory=dict)


class BatchStream:
    """Endless seeded reshuffled passes over a split: next(n) -> index tensor of n rows."""

    def __init__(self, split: Split, gen: torch.Generator):
        self.split, self.gen, self.perm, self.pos = split, gen, None, 0

    def next(self, n: int) -> torch.Tensor:
        out = []
        while n > 0:
            if self.perm is None or self.pos >= len(self.perm):
                self.perm, self.pos = torch.randperm(len(self.split), generator=self.gen), 0
            take = self.perm[self.pos:self.pos + n]
            self.pos += len(take)
            n -= len(take)
            out.append(take)
        return torch.cat(out).to(self.split.y.device)


def batch_loss(model, split: Split, idx: torch.Tensor, reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, logits) of rows idx of split."""
    x, y, delta = split.batch(idx)
    logits = model(model.prepare_input(x), delta)
    return F.cross_entropy(logits.float(), y, reduction=reduction), logits


class Unlearner:
    """One unlearning method. Subclasses set `name`, `Hyper` and implement `plan` + `loss`
    (iterative methods) or override `execute` (one-shot methods such as SSD)."""

    name = ""
    Hyper = Hyper
    uses = ("retain",)            # splits the method reads: forget, retain, full
    iterative = True
    control = False               # a sanity control (scratch), not an unlearner: `--methods all` leaves it out

    # ---- hyperparameters ------------------------------------------------------------------------
    @classmethod
    def hyper(cls, overrides: dict | None = None) -> Hyper:
        """Defaults + overrides, validated; unknown names and bad values name the field."""
        overrides = dict(overrides or {})
        known = {f.name: f for f in fields(cls.Hyper)}
        for key in overrides:
            if key not in known:
                raise ConfigError(f"{cls.name}.{key}", overrides[key],
                                  f"{cls.name} takes {', '.join(sorted(known))}")
        values = {}
        for key, val in overrides.items():
            f = known[key]
            typ = f.type if isinstance(f.type, type) else {"float": float, "int": int, "str": str,
                                                           "bool": bool}.get(str(f.type), str)
            try:
                if typ in (int, float) and (isinstance(val, bool) or not math.isfinite(float(val))):
                    raise ValueError  # NaN passes every `<` check, inf every `>` one: refused first
                if typ is int and (float(val) != int(float(val)) or abs(float(val)) > MAX_INT):
                    raise ValueError
                values[key] = typ(val) if typ is not bool else bool(val)
            except (TypeError, ValueError, OverflowError):
                kind = {int: f"an integer of at most {MAX_INT}", float: "a finite number"}.get(typ, f"a {typ.__name__}")
                raise ConfigError(f"{cls.name}.{key}", val, kind) from None
            meta = f.metadata
            v = values[key]
            if "choices" in meta and v not in meta["choices"]:
                raise ConfigError(f"{cls.name}.{key}", val, f"one of {', '.join(map(str, meta['choices']))}")
            if "min" in meta and v < meta["min"] or "max" in meta and v > meta["max"]:
                raise ConfigError(f"{cls.name}.{key}", val,
                                  f"a value in [{meta.get('min', '-inf')}, {meta.get('max', 'inf')}]")
        return cls.Hyper(**values)

    # ---- hooks ----------------------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        """Before the first step: re-initialise, freeze, copy a teacher..."""

    def trainable(self, ctx: Context) -> list[torch.nn.Parameter]:
        return [p for p in ctx.model.parameters() if p.requires_grad]

    def plan(self, ctx: Context, step: int) -> list[tuple[str, int, float]]:
        """The next step's batches: [(split name, batch size, cost per sample)]."""
        raise NotImplementedError

    def loss(self, ctx: Context, batches: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """The scalar to minimise, from the index batches of `plan` (same names)."""
        raise NotImplementedError

    def after_step(self, ctx: Context) -> None:
        """After each optimiser step (NGD adds parameter noise here)."""

    def set_mode(self, ctx: Context) -> None:
        ctx.model.train(ctx.hp.bn == "train")

    def optimizer(self, params: list, hp: Hyper) -> torch.optim.Optimizer:
        """Plain SGD at a constant rate for every unlearner (the paper's recipe)."""
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    def lr_scale(self, ctx: Context) -> float:
        """The learning rate's factor before each step (1: constant; scratch and EU-k's cosine option decay
        it over the budget: `cosine_scale`)."""
        return 1.0


    def execute(self, ctx: Context, on_step: Callable[[float], bool]) -> tuple[int, bool, bool]:
        """The shared loop. Returns (steps, diverged, stopped_early)."""
        hp = ctx.hp
        params = self.trainable(ctx)
        opt = self.optimizer(params, hp)
        scheduled = type(self).lr_scale is not Unlearner.lr_scale  # a method with its own schedule sets the rate
        streams = {name: BatchStream(getattr(ctx, name), ctx.gen) for name in self.uses}
        step = 0
        while True:
            plan = self.plan(ctx, step)
            cost = sum(n * c for _, n, c in plan)
            if cost <= 0:
                break
            if cost > ctx.budget.left:  # shrink the last step to what is left
                scale = ctx.budget.left / cost
                plan = [(s, int(math.floor(n * scale)), c) for s, n, c in plan]
                if any(n < 1 for _, n, _ in plan):
                    break
                cost = sum(n * c for _, n, c in plan)
            batches = {s: streams[s].next(n) for s, n, _ in plan}
            if scheduled:
                for group in opt.param_groups:
                    group["lr"] = hp.lr * self.lr_scale(ctx)
            self.set_mode(ctx)
            loss = self.loss(ctx, batches, step)
            if not torch.isfinite(loss):
                return step, True, False
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.after_step(ctx)
            ctx.budget.charge(cost)
            step += 1
            if on_step(float(loss.detach())):
                return step, False, True
        return step, False, False


def cosine_scale(ctx: Context, warmup: float) -> float:
    """Linear warm-up over `warmup` of the budget, then cosine decay to 0 at the cap: θ_initial's recipe
    (unlearn/schedule.py `lr_at`) run on the share of the budget spent."""
    used = ctx.budget.spent / ctx.budget.cap if ctx.budget.cap else 1.0
    return lr_at(int(used * SCHEDULE_STEPS), SCHEDULE_STEPS, int(warmup * SCHEDULE_STEPS), 1.0)


SCHEDULE_STEPS = 1_000_000  # lr_at's resolution: the schedule runs on the share of the budget spent


def params_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def run_unlearning(method: Unlearner, model: torch.nn.Module, forget: Split, retain: Split, full: Split,
                   budget_fraction: float, train_compute: float, hparams: dict | None = None, seed: int = 0,
                   on_checkpoint: Callable[[torch.nn.Module, dict], bool] | None = None,
                   checkpoint_every: float = CHECKPOINT_EVERY,
                   log: Callable[[str], None] | None = None) -> UnlearnResult:
    """Run `method` on `model` (modified in place) within budget_fraction x train_compute
    sample-gradients. `on_checkpoint(model, info)` is called each time another `checkpoint_every`
    of the cap is spent (info: spent, budget_spent, cap_used, step, loss); returning True stops.
    A non-finite loss or parameter stops the run, restores the last good checkpoint and flags
    `diverged`."""
    if budget_fraction != 0:  # 0: θ_initial itself (nothing spent)
        check_budget(budget_fraction)
    check_checkpoint_every(checkpoint_every)
    hp = hparams if dataclasses.is_dataclass(hparams) else method.hyper(hparams)
    budget = Budget(budget_fraction * train_compute)
    ctx = Context(model, forget, retain, full, budget, torch.Generator().manual_seed(seed), hp)
    t0 = time.perf_counter()
    if budget.cap <= 0:
        return UnlearnResult(model, 0.0, 0.0, train_compute, 0, False, 0.0, dataclasses.asdict(hp))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        method.setup(ctx)
        good = copy.deepcopy(model.state_dict())
        next_mark = [checkpoint_every]

        def on_step(loss: float) -> bool:
            used = budget.spent / budget.cap
            if used + 1e-12 < next_mark[0]:
                return False
            while next_mark[0] <= used + 1e-12:
                next_mark[0] += checkpoint_every
            if not params_finite(model):
                raise _Diverged
            good.clear()
            good.update(copy.deepcopy(model.state_dict()))
            info = {"spent": budget.spent, "budget_spent": budget.spent / train_compute, "cap_used": used,
                    "loss": loss, "elapsed_s": time.perf_counter() - t0}
            if log:
                log(f"[{method.name}] {used:6.1%} of budget  loss {loss:.4f}  {info['elapsed_s']:.1f}s")
            stop = bool(on_checkpoint(model, info)) if on_checkpoint else False
            model.train()
            return stop

        try:
            steps, diverged, early = method.execute(ctx, on_step)
            if not diverged and not params_finite(model):
                diverged = True
        except _Diverged:
            steps, diverged, early = -1, True, False
        if diverged:
            model.load_state_dict(good)
            if log:
                log(f"[{method.name}] diverged (non-finite loss or weights): restored the last good checkpoint")
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return UnlearnResult(model, budget.spent, budget.cap, train_compute, steps, diverged,
                         time.perf_counter() - t0, dataclasses.asdict(hp), early)


class _Diverged(Exception):
    pass
