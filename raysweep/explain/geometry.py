"""The geometry behind H1 and H2: flat parameter vectors, distances, KL between predictions, the span of
per-batch gradients and the share of a direction inside it, and the straight line θ(α) between two models.

Parameter vectors are the model's trainable parameters (`named_parameters`, in order) flattened into one
float64 vector; BatchNorm running statistics are buffers, not parameters: they have no gradient, so they
stay out of the spans and cosines, and are measured beside every distance (`flat_buffers`: a method with
`bn: train` moves them while its parameter update may be tiny). `interpolate` carries every state-dict
entry, buffers included, so θ(0) and θ(1) are exactly the two end models.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..unlearn.base import BatchStream, batch_loss


def flat(model) -> torch.Tensor:
    """The trainable parameters of `model` as one float64 vector on the CPU."""
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters() if p.requires_grad])


def flat_state(state: dict, model) -> torch.Tensor:
    """The same vector from a state dict with `model`'s parameter names (buffers left out)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return torch.cat([state[n].detach().reshape(-1).double().cpu() for n in names])


def flat_buffers(model) -> torch.Tensor:
    """The floating buffers of `model` (BatchNorm running means and variances) as one float64 vector."""
    bufs = [b.detach().reshape(-1).double().cpu() for _, b in model.named_buffers() if b.is_floating_point()]
    return torch.cat(bufs) if bufs else torch.zeros(0, dtype=torch.float64)


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b))


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    nu, nv = float(torch.linalg.vector_norm(u)), float(torch.linalg.vector_norm(v))
    return float(u @ v) / (nu * nv) if nu > 0 and nv > 0 else float("nan")


@torch.no_grad()
def log_probs(model, split, batch_size: int = 256) -> torch.Tensor:
    """log softmax of `model`'s predictions on `split` (eval mode), float64 [N, C] on the CPU."""
    was = model.training
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(split)), device=split.y.device)
        x, _, delta = split.batch(idx)
        out.append(F.log_softmax(model(model.prepare_input(x), delta).double(), dim=1).cpu())
    model.train(was)
    return torch.cat(out)


def mean_kl(logp: torch.Tensor, logq: torch.Tensor) -> float:
    """Mean over samples of KL(p || q) for rows of log-probabilities (natural log, nats)."""
    return float((logp.exp() * (logp - logq)).sum(dim=1).mean())


def batch_gradients(model, split, m: int, batch_size: int, seed: int) -> torch.Tensor:
    """[P, m] float64: column j is the gradient of the mean cross-entropy of the j-th of m seeded batches
    of `split` (reshuffled passes, as the unlearners draw them) at `model`'s weights, in train mode (as GD
    with bn=train computes its steps; running statistics move, so pass a throwaway copy)."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in params)
    stream = BatchStream(split, torch.Generator().manual_seed(seed))
    G = torch.empty(total, m, dtype=torch.float64)
    model.train()
    with torch.random.fork_rng(devices=[]):  # dropout (text models) seeded too, global RNG untouched
        torch.manual_seed(seed)
        for j in range(m):
            loss, _ = batch_loss(model, split, stream.next(min(batch_size, len(split))))
            grads = torch.autograd.grad(loss, params)
            G[:, j] = torch.cat([g.reshape(-1) for g in grads]).double().cpu()
    return G


GRAD_RTOL = 1e-5  # gradients are float32 sums: one batch in another order agrees to ~1e-7 relative


def orthonormal_basis(G: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """An orthonormal basis [P, r] of the column span of G [P, m] (reduced SVD in float64, O(P m²)); the
    rank r counts singular values above rtol × the largest (default max(P, m) · eps64, numpy's matrix_rank
    tolerance; GRAD_RTOL for float32 gradients, whose rounding noise must not count as directions)."""
    U, S, _ = torch.linalg.svd(G.double(), full_matrices=False)
    if not len(S) or float(S[0]) == 0.0:
        return U[:, :0]
    tol = float(S[0]) * (max(G.shape) * torch.finfo(torch.float64).eps if rtol is None else rtol)
    return U[:, : int((S > tol).sum())]


def span_share(Q: torch.Tensor, v: torch.Tensor) -> float:
    """||Q Qᵀ v||² / ||v||²: the squared share of v inside the span of Q's orthonormal columns (1: inside,
    0: orthogonal; a uniformly random direction has expectation r / P)."""
    nv = float(v @ v)
    if nv == 0.0:
        return float("nan")
    c = Q.T @ v.double()
    return float(c @ c) / nv


def random_direction(like: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded Gaussian direction with the norm of `like` (uniform on the sphere of that radius)."""
    r = torch.randn(like.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return r * (float(torch.linalg.vector_norm(like)) / float(torch.linalg.vector_norm(r)))


def interpolate(a: dict, b: dict, alpha: float) -> dict:
    """θ(α) = (1 − α) a + α b for every floating state-dict entry (parameters and BatchNorm running
    statistics alike); integer entries (num_batches_tracked) are taken from the nearer end. At α = 0 and
    α = 1 the result is exactly a and exactly b."""
    out = {}
    for name, va in a.items():
        vb = b[name]
        if alpha == 0.0:
            out[name] = va.clone()
        elif alpha == 1.0:
            out[name] = vb.clone()
        elif va.is_floating_point():
            out[name] = (1.0 - alpha) * va + alpha * vb
        else:
            out[name] = (va if alpha < 0.5 else vb).clone()
    return out


def pairwise_mean(vectors: list[torch.Tensor]) -> float:
    """Mean distance over the pairs of `vectors` (nan for fewer than two)."""
    d = [distance(vectors[i], vectors[j]) for i in range(len(vectors)) for j in range(i + 1, len(vectors))]
    return sum(d) / len(d) if d else float("nan")


def fades_at(alphas: list[float], z: list[float], level: float = 2.576) -> float | None:
    """The smallest α from which on |z| stays below `level` (the two-sided 1 % test of GUS) up to α = 1;
    None when it never does (or no z is finite)."""
    found = None
    for a, v in sorted(zip(alphas, z), reverse=True):
        if v is None or not math.isfinite(v) or abs(v) >= level:
            break
        found = a
    return found
