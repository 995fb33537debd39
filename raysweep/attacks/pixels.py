"""Conversions between a dataset's normalised tensors and [0, 1] pixels, for bounded perturbations."""
import torch


def channel_view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[C] -> broadcastable against [N, C, H, W]."""
    return t.to(like.device, like.dtype).view(1, -1, *([1] * (like.dim() - 2)))


def to_pixels(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return x * channel_view(std, x) + channel_view(mean, x)


def to_normalised(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - channel_view(mean, x)) / channel_view(std, x)
