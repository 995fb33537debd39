"""H1 where it is well posed: the convex proxy of the paper's argument.

A linear softmax head on θ_initial's frozen features (the inputs of its last linear layer, eval mode),
L2-regularised and trained to convergence (L-BFGS, float64): a strictly convex problem, so each training
set has one solution and every distance below is the data's, not a trajectory's. Fitted on the poisoned
training set, on the retain set (the poisons removed: the proxy's θ_retrain) and on the training set
without k random clean rows (one per `random_refs` draw, the same rows); H1 on the proxy is the ratio of
the first shift to the mean of the others. docs/explain.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

L2 = 1e-3      # the head's ridge coefficient (per sample): small, and enough for a unique optimum
MAX_ITER = 500


@torch.no_grad()
def head_features(model, split, batch_size: int = 256) -> torch.Tensor:
    """[N, D] float64: what `model`'s last nn.Linear receives for each row of `split` (eval mode; the
    split's own per-sample noise included, so poisoned rows are seen as trained on)."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError("the model has no linear head")
    seen = []
    hook = linears[-1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().double().cpu()))
    was = model.training
    model.eval()
    try:
        for start in range(0, len(split), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(split)), device=split.y.device)
            x, _, delta = split.batch(idx)
            model(model.prepare_input(x), delta)
    finally:
        hook.remove()
        model.train(was)
    return torch.cat(seen).reshape(len(split), -1)


def fit_head(X: torch.Tensor, y: torch.Tensor, classes: int, l2: float = L2) -> torch.Tensor:
    """The minimiser [D + 1, C] of mean cross-entropy + l2/2 ||W||² (bias unpenalised) by L-BFGS."""
    Xb = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    W = torch.zeros(Xb.shape[1], classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W], lr=1, max_iter=MAX_ITER, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")
    y = y.long().cpu()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Xb @ W, y) + 0.5 * l2 * (W[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach()


def convex_h1(scen, dropped_rows: list[torch.Tensor]) -> dict:
    """The proxy's shifts: ||W_poisoned − W_retain|| against ||W_poisoned − W_{-random j}|| for each set
    of dropped clean rows; rows of the training set (positions into `scen.poisoned.train`)."""
    ps = scen.poisoned
    X = head_features(scen.new_model("initial"), ps.train)
    y = ps.train.y.cpu()
    classes = scen.data.num_classes
    full = fit_head(X, y, classes)

    def without(rows: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[rows.long().cpu()] = False
        return fit_head(X[keep], y[keep], classes)

    shift_poison = float(torch.linalg.vector_norm(full - without(ps.poison_idx)))
    shifts = [float(torch.linalg.vector_norm(full - without(r))) for r in dropped_rows]
    mean = sum(shifts) / len(shifts) if shifts else float("nan")
    sd = (sum((v - mean) ** 2 for v in shifts) / (len(shifts) - 1)) ** 0.5 if len(shifts) > 1 else None
    return {"features": int(X.shape[1]), "l2": L2, "shift_poisons": shift_poison, "shift_random": shifts,
            "shift_random_mean": mean, "shift_random_sd": sd,
            "ratio": shift_poison / mean if mean and mean == mean else None}
