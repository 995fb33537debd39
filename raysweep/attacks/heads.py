"""The classifier head (a model's last layer group) as the attacks of a head-fine-tuning victim see it.

With `victim: head` the victim fine-tunes only the last layer group of a public clean base model, the rest
frozen in eval mode, so an attacker who knows the base attacks exactly those parameters: Gradient Canceling
makes them stationary at a corrupted head, gradient matching aligns their gradient with the target's.
`prepare`'s head fine-tuning reads the head's inputs from here too (`cached_head_inputs`).
"""
from __future__ import annotations

import torch

from ..data.base import Split
from ..errors import ConfigError


def head(model) -> torch.nn.Module:
    """The last layer group: what `victim: head` fine-tunes."""
    return model.layer_groups()[-1]


def head_params(model) -> list[torch.nn.Parameter]:
    return list(head(model).parameters())


@torch.no_grad()
def head_inputs(model, data: Split, batch: int = 1000) -> torch.Tensor:
    """What the head receives for every sample, [n, d] (the model is left in eval mode)."""
    feats = cached_head_inputs(model, data, batch)
    if feats is None:
        raise ConfigError("model", type(model).__name__, "a model whose last layer group gives the logits")
    return feats


@torch.no_grad()
def cached_head_inputs(model, data: Split, batch: int = 1000) -> torch.Tensor | None:
    """The head's inputs for every sample ([n, d]; embedding noise included; the model is left in eval
    mode), or None when the head is not one module whose output is the model's output (the logits then
    do not follow from the cached inputs alone, e.g. a transformer's norm + head group)."""
    model.eval()
    last, got = head(model), []
    out = {}

    def grab(mod, args, res):
        got.append(args[0].detach())
        out["head"] = res

    hook = last.register_forward_hook(grab)
    try:
        for start in range(0, len(data), batch):
            x, _, delta = data.batch(torch.arange(start, min(len(data), start + batch), device=data.y.device))
            n_before = len(got)
            logits = model(model.prepare_input(x), delta)
            if len(got) != n_before + 1 or out.get("head") is not logits:
                return None
    finally:
        hook.remove()
    return torch.cat(got)
