"""The classifier interface every model implements.

forward(x, delta) = classify(embed(x) + delta): `embed` maps raw inputs to the differentiable input
representation in which Gaussian poisons live and GUS takes gradients (identity for images, token
embeddings for text); `delta` is optional per-sample noise in that space.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class Classifier(nn.Module):
    channels_last: bool = False  # conv nets on CPU: faster in channels_last (docs/decisions.md)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def classify(self, e: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, delta: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(x)
        if delta is not None:
            e = e + delta
        return self.classify(e, x)

    def layer_groups(self) -> list[nn.Module]:
        """Modules from input to output; "the last k layers" of EU-k / CF-k = the last k groups."""
        raise NotImplementedError

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def for_eval(self) -> "Classifier":
        """An eval-mode copy with every Conv2d directly followed by a BatchNorm2d in a plain nn.Sequential
        folded into one convolution: the same function up to float rounding (tests/test_data_models.py
        checks logits, predictions and input gradients), which makes an evaluation checkpoint
        faster on a CPU (docs/performance.md). Evaluation only (`Scenario.scored`): the
        copy has no BatchNorm there and no parameter gradients. A pair is left as it is where folding
        could change what runs: a Sequential subclass with its own forward, a BatchNorm without
        running statistics, a module with hooks. A model with nothing to fold (GPT-2, most plug-ins) is
        returned as it is, not copied."""
        def plain(m: nn.Module) -> bool:
            return not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)

        pairs = [(seq, a, b) for seq in self.modules()
                 if isinstance(seq, nn.Sequential) and type(seq).forward is nn.Sequential.forward and plain(seq)
                 for a, b in zip(list(seq._modules), list(seq._modules)[1:])
                 if isinstance(seq._modules[a], nn.Conv2d) and isinstance(seq._modules[b], nn.BatchNorm2d)
                 and seq._modules[b].running_mean is not None and plain(seq._modules[a]) and plain(seq._modules[b])]
        if not pairs:
            return self
        index = {id(m): name for name, m in self.named_modules()}
        twin = copy.deepcopy(self).eval()
        for seq, a, b in pairs:
            t = twin.get_submodule(index[id(seq)]) if index[id(seq)] else twin
            conv = fuse_conv_bn_eval(t._modules[a], t._modules[b])
            if self.channels_last:
                conv = conv.to(memory_format=torch.channels_last)
            t._modules[a], t._modules[b] = conv, nn.Identity()
        return twin.requires_grad_(False)
