"""Evaluation: accuracy and per-sample losses, GUS, the loss-threshold MIA."""
from .evaluate import evaluate, per_sample_losses
from .gus import gus_scores, gus_summary, input_gradients
from .mia import loss_mia

__all__ = ["evaluate", "per_sample_losses", "gus_scores", "gus_summary", "input_gradients", "loss_mia"]
