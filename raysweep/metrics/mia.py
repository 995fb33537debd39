"""Loss-threshold membership inference (Yeom et al. 2018), the standard MIA for contrast."""
from __future__ import annotations

import torch

from .gus import auc


def loss_mia(member_losses: torch.Tensor, nonmember_losses: torch.Tensor, fpr: float = 0.01) -> dict:
    """Predict "member" when loss <= t, with t the largest threshold whose FPR on the non-members
    (test set) is at most `fpr`. Returns {'mia_tpr': TPR at that FPR, 'mia_auc': AUC of -loss}."""
    neg = nonmember_losses.double().sort().values
    n_allowed = int(fpr * len(neg))
    thr = neg[n_allowed - 1].item() if n_allowed >= 1 else float("-inf")
    tpr = (member_losses.double() <= thr).double().mean().item() if len(member_losses) else float("nan")
    return {"mia_tpr": tpr, "mia_auc": auc(-member_losses, -nonmember_losses)}
