"""GUS: calibrated under the null, detects a planted correlation, batched == per-sample loop."""
import math

import torch
from torch import nn

from raysweep.metrics.gus import auc, gus_scores, gus_summary, input_gradients, scores_from_gradients
from raysweep.models import build_model


def _model():
    m = build_model("resnet9", 10, (3, 32, 32), seed=1, width=4)
    return m.eval()


def test_null_is_standard_normal_for_a_model_independent_of_the_noise():
    torch.manual_seed(0)
    k, eps = 2000, 0.5
    x, y = torch.randn(k, 3, 32, 32), torch.randint(0, 10, (k,))
    noise = torch.randn(k, 3, 32, 32) * eps
    s = gus_scores(_model(), x, y, noise, eps)
    summ = gus_summary(s)
    assert abs(summ["gus"]) < 4 / math.sqrt(k)
    assert abs(s.std().item() - 1) < 0.08
    assert summ["tpr_two"] < 0.025 and summ["tpr_low"] < 0.025  # TPR ~= FPR = 1 %
    assert 0.0025 < summ["tpr_two"]  # not degenerate (all zeros would pass the line above)


def test_detects_a_planted_correlation():
    torch.manual_seed(1)
    k, eps = 300, 0.5
    m = _model()
    x, y = torch.randn(k, 3, 32, 32), torch.randint(0, 10, (k,))
    g = input_gradients(m, x, y)
    u = g / g.norm(dim=1, keepdim=True)
    fresh = torch.randn(k, 3 * 32 * 32) * eps
    planted = fresh - 0.3 * eps * u  # shift each noise against its gradient: I shifts by -0.3
    s = gus_scores(m, x, y, planted.view(k, 3, 32, 32), eps)
    c = gus_scores(m, x, y, fresh.view(k, 3, 32, 32), eps)
    summ = gus_summary(s, c)
    assert summ["z"] < -3 and summ["p"] < 0.01
    assert abs(summ["gus"] + 0.3) < 4 / math.sqrt(k)
    assert summ["auc"] > 0.55
    assert abs(summ["control_z"]) < 4


def test_batched_gradients_equal_a_per_sample_loop():
    torch.manual_seed(2)
    m = _model()
    x, y = torch.randn(12, 3, 32, 32), torch.randint(0, 10, (12,))
    batched = input_gradients(m, x, y, batch_size=5)
    loop = []
    for i in range(12):
        xi = x[i:i + 1].clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(m(m.prepare_input(xi)).double(), y[i:i + 1])
        (gi,) = torch.autograd.grad(loss, xi)
        loop.append(gi.reshape(-1))
    torch.testing.assert_close(batched, torch.stack(loop).float(), rtol=1e-4, atol=1e-7)


def test_scores_are_float64_and_scale_free():
    g = torch.randn(5, 10)
    xi = torch.randn(5, 10) * 0.3
    s1 = scores_from_gradients(g, xi, 0.3)
    s2 = scores_from_gradients(1e6 * g, xi, 0.3)
    assert s1.dtype == torch.float64
    torch.testing.assert_close(s1, s2)
    expect = (xi.double() * g.double()).sum(1) / (0.3 * g.double().norm(dim=1))
    torch.testing.assert_close(s1, expect)


def test_flip_score_null_is_calibrated():
    torch.manual_seed(3)
    k, eps = 1500, 0.5
    x, y = torch.randn(k, 3, 32, 32), torch.randint(0, 10, (k,))
    s = gus_scores(_model(), x, y, torch.randn(k, 3, 32, 32) * eps, eps, score="flip")
    assert abs(s.mean().item()) < 4 / math.sqrt(k) and abs(s.std().item() - 1) < 0.08


def test_auc_matches_pairwise_definition():
    a, b = torch.tensor([0.1, 0.5, 0.5, 2.0]), torch.tensor([0.5, 0.0, 1.0])
    pairs = [(1.0 if ai > bj else 0.5 if ai == bj else 0.0) for ai in a for bj in b]
    assert abs(auc(a, b) - sum(pairs) / len(pairs)) < 1e-12


def test_a_checkpoint_scores_a_fixed_subset_of_the_tuning_half(prepared_tiny, tiny_cfg):
    from raysweep.prepare.scenario import Scenario

    scen = Scenario.load(prepared_tiny[0], tiny_cfg)
    model = scen.new_model("initial")
    a = scen.scored(model, parts=("tune",), full=False, tune_cap=10)
    b = scen.scored(model, parts=("tune",), full=False, tune_cap=10)
    assert a[0]["tune_k"] == 10 and a[0]["tune_gus"] == b[0]["tune_gus"]  # the same 10 poisons each time
    scored = set(torch.isfinite(a[1]["scores"]).nonzero().squeeze(1).tolist())
    assert len(scored) == 10 and scored <= set(scen.tune_rows.tolist())  # only tuning-half poisons
    assert scen.evaluate(model, parts=("tune",), full=False)["tune_k"] == len(scen.tune_rows)
