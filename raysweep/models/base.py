"""The classifier interface every model implements.

forward(x, delta) = classify(embed(x) + delta): `embed` maps raw inputs to the differentiable input
representation in which Gaussian poisons live and GUS takes gradients (identity for images, token
embeddings for text); `delta` is optional per-sample noise in that space.
"""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    channels_last: bool = False  # conv nets on CPU: 5-15x faster in channels_last (docs/decisions.md)

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
