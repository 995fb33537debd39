"""SCRUB (Kurmanji et al. 2023): the student starts at θ_initial, the teacher is θ_initial frozen.
Max-steps on D_f raise KL(teacher || student); min-steps on D_r lower alpha * KL + gamma * CE.
Rounds: one pass of max-steps over D_f (only in the first `max_rounds` rounds), then `min_steps`
min-steps on D_r. Original defaults: temperature 4, alpha 1e-3, gamma 0.99. The teacher's forward
pass costs FORWARD_COST per sample."""
import copy
from dataclasses import dataclass, field

import torch.nn.functional as F

from . import METHODS
from .base import FORWARD_COST, Hyper, Unlearner, batch_loss


@dataclass
class ScrubHyper(Hyper):
    lr: float = field(default=5e-4, metadata={"help": "SGD learning rate", "min": 0.0})
    alpha: float = field(default=1e-3, metadata={"help": "weight of KL on the retain set", "min": 0.0})
    gamma: float = field(default=0.99, metadata={"help": "weight of cross-entropy on the retain set", "min": 0.0})
    temperature: float = field(default=4.0, metadata={"help": "distillation temperature", "min": 1e-3})
    max_rounds: int = field(default=2, metadata={"help": "rounds that start with max-steps on D_f", "min": 0})
    min_steps: int = field(default=20, metadata={"help": "min-steps on D_r per round", "min": 1})


def kl(student_logits, teacher_logits, t: float):
    """KL(teacher || student) at temperature t, batch mean, scaled by t^2."""
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t


@METHODS.register("scrub")
class Scrub(Unlearner):
    name = "scrub"
    Hyper = ScrubHyper
    uses = ("forget", "retain")

    def setup(self, ctx):
        teacher = copy.deepcopy(ctx.model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        ctx.state["teacher"] = teacher
        bs = ctx.hp.batch_size
        max_steps = -(-len(ctx.forget) // bs)
        # the schedule of one round, repeated: "max" steps then "min" steps
        ctx.state["round"] = ["max"] * max_steps + ["min"] * ctx.hp.min_steps

    def _phase(self, ctx, step):
        first = len(ctx.state["round"]) * ctx.hp.max_rounds
        if step < first:
            return ctx.state["round"][step % len(ctx.state["round"])]
        return "min"

    def plan(self, ctx, step):
        split = "forget" if self._phase(ctx, step) == "max" else "retain"
        return [(split, ctx.hp.batch_size, 1.0 + FORWARD_COST)]

    def loss(self, ctx, batches, step):
        hp = ctx.hp
        teacher = ctx.state["teacher"]
        if self._phase(ctx, step) == "max":
            split, idx = ctx.forget, batches["forget"]
        else:
            split, idx = ctx.retain, batches["retain"]
        ce, logits = batch_loss(ctx.model, split, idx)
        x, _, delta = split.batch(idx)
        t_logits = teacher(teacher.prepare_input(x), delta).detach()
        div = kl(logits.float(), t_logits.float(), hp.temperature)
        if self._phase(ctx, step) == "max":
            return -div
        return hp.alpha * div + hp.gamma * ce
