"""The Gaussian Unlearning Score (Pawelczyk et al. 2025, Algorithm 1).

For a poison z with clean input x_z, label y_z and its fixed noise xi_z ~ N(0, eps^2 I):
    g_z = grad_x loss(f(x), y_z) at x = x_z (eval mode),    I_z = <xi_z, g_z> / (eps * ||g_z||).
If the model never saw xi_z, I_z ~ N(0, 1) exactly and independently, whatever the model: no shadow
models are needed. GUS = mean I_z, z = sqrt(k) * GUS.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Z_ONE_SIDED_1PCT = 2.3263478740408408  # Phi^-1(0.99)
Z_TWO_SIDED_1PCT = 2.5758293035489004  # Phi^-1(0.995)


def input_gradients(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500, flip: bool = False,
                    grad_scale: torch.Tensor | None = None) -> torch.Tensor:
    """g = d loss / d embed(x) per sample: [k, d] float32 on the CPU, d = prod(input repr shape).

    One backward of the summed loss per batch (eval mode keeps the samples independent); only the
    input gradient is asked for, so no weight gradients are computed. The loss is taken on float64
    logits so a confidently fit sample keeps a non-zero gradient. `flip`: images mirrored left-right
    first. `grad_scale` multiplies the gradient elementwise (pixel-space noise: 1/std per channel).
    """
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for start in range(0, len(y), batch_size):
        xb = x[start:start + batch_size].to(dev)
        if flip:
            xb = xb.flip(-1)
        e = model.embed(model.prepare_input(xb)).detach().requires_grad_(True)
        logits = model.classify(e, xb)
        loss = F.cross_entropy(logits.double(), y[start:start + batch_size].to(dev), reduction="sum")
        (g,) = torch.autograd.grad(loss, e)
        if flip:
            g = g.flip(-1)
        if grad_scale is not None:
            g = g * grad_scale.to(g.device)
        out.append(g.float().reshape(len(xb), -1).cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, 0)


def scores_from_gradients(g: torch.Tensor, noise: torch.Tensor, eps: float) -> torch.Tensor:
    """I = <noise, g> / (eps ||g||) in float64: [k]. A zero gradient carries no signal: I = 0."""
    g = g.double()
    xi = noise.reshape(len(noise), -1).double()
    norm = g.norm(dim=1)
    s = (xi * g).sum(1) / (eps * norm)
    return torch.where(norm > 0, s, torch.zeros_like(s))


def gus_scores(model, clean_x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, eps: float,
               score: str = "identity", grad_scale: torch.Tensor | None = None,
               batch_size: int = 500) -> torch.Tensor:
    """Per-sample scores I_z [k] float64.

    score="identity": the paper's score. score="flip" (for models trained with random flips): the
    direction u = g/||g|| + mirror(g')/||g'||, g' the gradient at the mirrored image, then
    I = <xi, u>/(eps ||u||); u does not depend on xi, so the null stays exactly N(0, 1).
    """
    return gus_score_sets(model, clean_x, y, [noise], eps, score, grad_scale, batch_size)[0]


def gus_score_sets(model, clean_x: torch.Tensor, y: torch.Tensor, noises: list[torch.Tensor], eps: float,
                   score: str = "identity", grad_scale: torch.Tensor | None = None,
                   batch_size: int = 500) -> list[torch.Tensor]:
    """Scores of several noise sets (e.g. the poisons' own and a fresh control) from one gradient pass."""
    g = input_gradients(model, clean_x, y, batch_size, grad_scale=grad_scale)
    if score == "flip":
        gf = input_gradients(model, clean_x, y, batch_size, flip=True, grad_scale=grad_scale)
        unit = lambda v: v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)  # noqa: E731
        g = unit(g.double()) + unit(gf.double())
    elif score != "identity":
        raise ValueError(f"score={score!r}: identity or flip")
    return [scores_from_gradients(g, noise, eps) for noise in noises]


def norm_sf(z: float) -> float:
    """P(Z > z) for Z ~ N(0, 1)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(pos > neg) + 0.5 P(pos == neg) (Mann-Whitney), O((n+m) log(n+m))."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = torch.cat([pos.double(), neg.double()])
    order = allv.argsort()
    ranks = torch.empty_like(allv)
    ranks[order] = torch.arange(1, len(allv) + 1, dtype=torch.float64)
    # average ranks over ties
    uniq, inv = torch.unique(allv, return_inverse=True)
    if len(uniq) < len(allv):
        sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, ranks)
        cnt = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.ones_like(ranks))
        ranks = (sums / cnt)[inv]
    r_pos = ranks[: len(pos)].sum().item()
    return (r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def gus_summary(scores: torch.Tensor, control: torch.Tensor | None = None) -> dict:
    """Figures for scores I [k] (and optionally fresh-noise control scores [m]).

    gus: mean I; z: sqrt(k) * gus; p: two-sided p-value of z under N(0, 1);
    tpr_two: fraction with |I| > 2.576 (two-sided test at FPR 1 %);
    tpr_low / tpr_high: fraction with I < -2.326 / I > 2.326 (one-sided tests at FPR 1 %);
    auc: AUC of -I separating the poisons from the fresh-noise control (0.5: no signal; > 0.5:
    poisons score lower, the direction training produces, docs/decisions.md).
    """
    s = scores.double()
    k = len(s)
    gus = s.mean().item() if k else float("nan")
    z = math.sqrt(k) * gus if k else float("nan")
    out = {
        "k": k,
        "gus": gus,
        "z": z,
        "p": min(1.0, 2 * norm_sf(abs(z))) if k else float("nan"),
        "tpr_two": (s.abs() > Z_TWO_SIDED_1PCT).double().mean().item() if k else float("nan"),
        "tpr_low": (s < -Z_ONE_SIDED_1PCT).double().mean().item() if k else float("nan"),
        "tpr_high": (s > Z_ONE_SIDED_1PCT).double().mean().item() if k else float("nan"),
    }
    if control is not None:
        c = gus_summary(control)
        out.update({"control_gus": c["gus"], "control_z": c["z"], "control_p": c["p"],
                    "control_tpr_two": c["tpr_two"], "auc": auc(-s, -control.double())})
    return out
