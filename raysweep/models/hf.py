"""Hugging Face sequence classifiers behind the Classifier interface.

Input x: [B, L] int64 token ids, right-padded with -1 (raysweep/data/imdb.py); the attention mask is
x >= 0. embed(x) = the input token embeddings [B, L, D] (before position embeddings): Gaussian
poisons live there and GUS takes gradients there. Decoder models (GPT-2 and every HF family whose
head is `score`) classify from the hidden state of the last real token; others (BERT-like) from
the model's own pooled logits.

Registered:
  gpt2-tiny   a small GPT-2 built from a config (CPUs, tests): width 64, 2 blocks, 2 heads, no
              dropout, GPT-2's vocabulary (50,257) and n_positions = the sequence length.
  hf          any `AutoModelForSequenceClassification.from_pretrained(path)`: a hub name or a local
              folder (`model_params: {path: ...}`); the new head is seeded like every model here.
  gpt2-medium `hf` with path gpt2-medium (355M, the paper's language model; a GPU job).
Dropout is 0 by default (`model_params.dropout`), so the same seed gives the same weights on the CPU.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, RaysweepError, check_number
from . import MODELS
from .base import Classifier

DROPOUT_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout", "hidden_dropout_prob",
                  "attention_probs_dropout_prob", "dropout", "attention_dropout", "classifier_dropout")


class Group(nn.Module):
    """A layer group made of modules that live elsewhere in the model (not registered on it)."""

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)


class HFClassifier(Classifier):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.decoder = hasattr(net, "score")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L] ids (-1 = no token) -> [B, L, D] token embeddings (zeros where there is no token)."""
        e = self.net.get_input_embeddings()(x.clamp_min(0))
        return e * (x >= 0).unsqueeze(-1).to(e.dtype)

    def classify(self, e: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        if x is None:
            raise ValueError("HFClassifier.classify needs the token ids x for the attention mask")
        mask = (x >= 0).long()
        if self.decoder:
            h = self.net.base_model(inputs_embeds=e, attention_mask=mask).last_hidden_state  # [B, L, D]
            last = (mask.sum(1) - 1).clamp_min(0)
            return self.net.score(h[torch.arange(len(h), device=h.device), last])
        return self.net(inputs_embeds=e, attention_mask=mask).logits

    def layer_groups(self) -> list[nn.Module]:
        """[embeddings (what precedes the blocks), block 1, ..., block n, final norm + head].

        The blocks are the model's largest nn.ModuleList; "the last k groups" of EU-k / CF-k are then
        the head group plus the last k - 1 blocks.
        """
        blocks = max((m for m in self.net.modules() if isinstance(m, nn.ModuleList)), key=len, default=None)
        if blocks is None or not len(blocks):
            raise RaysweepError(f"{type(self.net).__name__}: no block list found for layer groups")
        in_blocks = {id(m) for m in blocks.modules()}
        before, after, seen = [], [], False
        for m in self.net.modules():
            if id(m) in in_blocks:
                seen = True
                continue
            if list(m.parameters(recurse=False)):
                (after if seen else before).append(m)
        return [Group(before), *blocks, Group(after)]

    @torch.no_grad()
    def reinitialise(self, module: nn.Module) -> None:
        """The model's own initialiser (HF `_init_weights`) on every submodule of `module`."""
        for sub in module.modules():
            self.net._init_weights(sub)


def _dropout_overrides(dropout: float) -> dict:
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError("model_params.dropout", dropout, "a probability in [0, 1)")
    return {k: float(dropout) for k in DROPOUT_FIELDS}


TINY_LIMITS = {"width": 4096, "layers": 96, "heads": 128, "vocab_size": 1_000_000}


def check_tiny(params: dict) -> None:
    """gpt2-tiny's model_params, checked before any data is read or anything trains."""
    for name, hi in TINY_LIMITS.items():
        if name in params:
            check_number(f"model_params.{name}", params[name], lo=1, hi=hi, integer=True)
    if "dropout" in params:
        check_number("model_params.dropout", params["dropout"], lo=0, hi=1, hi_open=True)
    width, heads = params.get("width", 64), params.get("heads", 2)
    if width % heads:
        raise ConfigError("model_params.heads", heads, f"a divisor of width={width}")


@MODELS.register("gpt2-tiny", kind="text", check_params=check_tiny)
def gpt2_tiny(num_classes: int, input_shape: tuple, width: int = 64, layers: int = 2, heads: int = 2,
              vocab_size: int = 50257, dropout: float = 0.0) -> HFClassifier:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    check_tiny({"width": width, "layers": layers, "heads": heads, "vocab_size": vocab_size, "dropout": dropout})
    over = {k: v for k, v in _dropout_overrides(dropout).items() if k in ("resid_pdrop", "embd_pdrop", "attn_pdrop",
                                                                          "summary_first_dropout")}
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=int(input_shape[0]), n_embd=width, n_layer=layers,
                     n_head=heads, num_labels=num_classes, pad_token_id=vocab_size - 1, **over)
    return HFClassifier(GPT2ForSequenceClassification(cfg))


@MODELS.register("hf", kind="text")
def hf(num_classes: int, input_shape: tuple, path: str | None = None, dropout: float = 0.0) -> HFClassifier:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if not path:
        raise ConfigError("model_params.path", path, "a Hugging Face model name or a local model folder")
    try:
        cfg = AutoConfig.from_pretrained(path, num_labels=num_classes)
        for k, v in _dropout_overrides(dropout).items():
            if hasattr(cfg, k):
                setattr(cfg, k, v)
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = getattr(cfg, "eos_token_id", None) or 0  # unused: the mask comes from x >= 0
        net = AutoModelForSequenceClassification.from_pretrained(path, config=cfg)
    except (OSError, ValueError) as e:
        raise RaysweepError(f"model_params.path={path!r} could not be loaded ({type(e).__name__}: {e}); "
                            "pass a local folder saved with save_pretrained") from e
    return HFClassifier(net)


@MODELS.register("gpt2-medium", kind="text")
def gpt2_medium(num_classes: int, input_shape: tuple, path: str = "gpt2-medium", dropout: float = 0.0):
    return hf(num_classes, input_shape, path=path, dropout=dropout)
