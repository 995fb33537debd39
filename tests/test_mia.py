import torch

from raysweep.metrics.mia import loss_mia


def test_threshold_holds_the_fpr_and_counts_members_below_it():
    nonmembers = torch.arange(1, 101).float()  # losses 1..100: 1 % FPR -> threshold 1.0
    members = torch.tensor([0.5, 1.0, 1.5, 50.0])
    out = loss_mia(members, nonmembers, fpr=0.01)
    assert out["mia_tpr"] == 0.5
    assert (nonmembers <= 1.0).float().mean().item() <= 0.01


def test_identical_distributions_give_tpr_near_fpr():
    g = torch.Generator().manual_seed(0)
    out = loss_mia(torch.rand(20000, generator=g), torch.rand(20000, generator=g))
    assert abs(out["mia_tpr"] - 0.01) < 0.005 and abs(out["mia_auc"] - 0.5) < 0.02
