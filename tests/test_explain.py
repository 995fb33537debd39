"""`raysweep explain`: span shares and interpolation on constructed cases, θ_random built once and disjoint
from the poisons, the whole command on the tiny scenario with a hand-made trials table, bad options."""
import json
import shutil

import pandas as pd
import pytest
import torch

from raysweep.artifacts import LocalStore
from raysweep.cli import main
from raysweep.explain import geometry as geo
from raysweep.prepare.scenario import Scenario, store_key

DRAWS = 2


@pytest.fixture(scope="module")
def store(prepared_tiny, tmp_path_factory):
    """A store of its own holding a copy of the prepared tiny scenario (θ_random draws land beside it)."""
    root, manifest = prepared_tiny
    mine = tmp_path_factory.mktemp("explain-store")
    shutil.copytree(root / store_key(manifest["hash"]), mine / store_key(manifest["hash"]))
    return LocalStore(mine), manifest["hash"]


@pytest.fixture(scope="module")
def scen(store):
    st, h = store
    return Scenario.load(st, h, "cpu")


@pytest.fixture(scope="module")
def sweep_dir(store, tmp_path_factory):
    """A sweep folder as `raysweep export` writes it, with a hand-made trials table: gd's best trial."""
    st, h = store
    d = tmp_path_factory.mktemp("sweep")
    (d / "sweep.json").write_text(json.dumps({"name": "hand", "store": str(st.root), "scenario": h,
                                              "config": {"seed": 0, "budget": 0.1}}))
    pd.DataFrame([{"method": "gd", "trial_id": "t0", "status": "finished", "is_best": True, "seed": 0,
                   "hp_lr": 1e-2, "hp_momentum": 0.9, "hp_weight_decay": 5e-4, "hp_batch_size": 64,
                   "hp_bn": "train", "cap_share": 0.5}]).to_csv(d / "trials.csv", index=False)
    pd.DataFrame(columns=["method"]).to_csv(d / "history.csv", index=False)
    pd.DataFrame(columns=["method"]).to_csv(d / "scores.csv", index=False)
    return d


def test_span_share_is_one_inside_zero_orthogonal_and_r_over_p_at_random():
    g = torch.Generator().manual_seed(0)
    P, m = 2000, 20
    G = torch.randn(P, m, generator=g, dtype=torch.float64)
    Q = geo.orthonormal_basis(G)
    assert Q.shape == (P, m) and torch.allclose(Q.T @ Q, torch.eye(m, dtype=torch.float64), atol=1e-10)
    inside = G @ torch.randn(m, generator=g, dtype=torch.float64)
    assert geo.span_share(Q, inside) == pytest.approx(1.0, abs=1e-6)
    v = torch.randn(P, generator=g, dtype=torch.float64)
    orth = v - Q @ (Q.T @ v)
    assert geo.span_share(Q, orth) == pytest.approx(0.0, abs=1e-6)
    shares = [geo.span_share(Q, geo.random_direction(v, s)) for s in range(300)]
    assert sum(shares) / len(shares) == pytest.approx(m / P, rel=0.15)  # Beta(m/2, (P-m)/2): sd of the mean ~3 %
    # a repeated column adds nothing to the span: rank m, not m + 1
    assert geo.orthonormal_basis(torch.cat([G, G[:, :1] * 3.0], dim=1)).shape[1] == m
    # float32 rounding noise on a repeated gradient is no new direction at GRAD_RTOL
    noisy = G[:, :1] * (1 + 1e-7 * torch.randn(P, 1, generator=g, dtype=torch.float64))
    assert geo.orthonormal_basis(torch.cat([G, noisy], dim=1), geo.GRAD_RTOL).shape[1] == m
    assert geo.random_direction(v, 1).norm().item() == pytest.approx(v.norm().item())


def test_fades_at_needs_every_later_alpha_below_the_level():
    assert geo.fades_at([0, 0.5, 0.8, 1], [-9.0, -1.0, -3.0, -0.5]) == 1  # 0.8 is still detectable
    assert geo.fades_at([0, 0.5, 1], [-9.0, -2.0, 0.1]) == 0.5
    assert geo.fades_at([0, 1], [-9.0, -4.0]) is None


def test_interpolation_ends_are_exactly_the_two_models(scen):
    a, b = scen.weights["initial"], scen.weights["retrain"]
    assert any(not v.is_floating_point() for v in a.values())  # BatchNorm counters ride along
    for alpha, want in ((0.0, a), (1.0, b)):
        got = geo.interpolate(a, b, alpha)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    mid = geo.interpolate(a, b, 0.5)
    name = next(k for k in a if k.endswith("running_mean"))  # buffers are interpolated too
    assert torch.allclose(mid[name], (a[name] + b[name]) / 2) and not torch.equal(a[name], b[name])
    model = scen.new_model()
    model.load_state_dict(geo.interpolate(a, b, 1.0))
    assert geo.distance(geo.flat(model), geo.flat(scen.new_model("retrain"))) == 0.0


def test_random_refs_are_built_once_drop_clean_rows_and_follow_retrain_recipe(scen, store, monkeypatch):
    import raysweep.explain.random_refs as rr

    st, _ = store
    refs = rr.random_refs(scen, st, DRAWS, log=lambda m: None)
    assert [r["built"] for r in refs] == [True] * DRAWS
    poisons = set(scen.poisoned.poison_idx.tolist())
    for r in refs:
        rows = r["dropped"].tolist()
        assert len(set(rows)) == scen.poisoned.k and not poisons & set(rows)
        # the same amount of training as θ_retrain: N − k samples for the same epochs
        assert r["manifest"]["compute"]["sample_grads"] == scen.manifest["compute"]["retrain_sample_grads"]
        assert r["manifest"]["metrics"]["test_acc"] > 0
    assert refs[0]["dropped"].tolist() != refs[1]["dropped"].tolist()
    monkeypatch.setattr(rr, "train", lambda *a, **k: pytest.fail("θ_random trained again"))
    again = rr.random_refs(scen, st, DRAWS, log=lambda m: None)
    assert [r["built"] for r in again] == [False] * DRAWS
    assert all(torch.equal(again[0]["weights"][k], refs[0]["weights"][k]) for k in refs[0]["weights"])
    monkeypatch.undo()
    # the recipe: dropping the poisons instead of random rows rebuilds θ_retrain bit for bit
    monkeypatch.setattr(rr, "drop_rows", lambda s, draw: s.poisoned.poison_idx.sort().values)
    manifest = rr.build_draw(scen, st, 99, log=lambda m: None)
    from raysweep.artifacts import load_tensors

    w = load_tensors(st.open_dir(rr.random_key(scen.hash, 99)), "weights.safetensors", manifest)
    assert all(torch.equal(w[k], scen.weights["retrain"][k]) for k in w)
    shutil.rmtree(st.open_dir(rr.random_key(scen.hash, 99)))


def test_explain_writes_numbers_tables_figures_and_the_report_section(sweep_dir, scen, tmp_path, capsys):
    code = main(["explain", str(sweep_dir), "--draws", str(DRAWS), "--m", "4", "--batch-size", "32",
                 "--alphas", "1,0,0.5", "--device", "cpu"])
    assert code == 0
    out = sweep_dir / "explain"
    res = json.loads((out / "explain.json").read_text())
    printed = capsys.readouterr().out
    assert "H1:" in printed and "H2:" in printed and "gd:" in printed
    h1 = res["h1"]
    assert len(h1["rows"]) == 1 + DRAWS and h1["param_retrain"] > 0 and h1["param_random_mean"] > 0
    assert h1["param_ratio"] == pytest.approx(h1["param_retrain"] / h1["param_random_mean"])
    P = res["P"]
    assert P == sum(p.numel() for p in scen.new_model().parameters())
    h2 = {(r["direction"].split(" ")[0], r["span"]): r for r in res["h2"]["rows"]}
    assert set(h2) == {(d, s) for d in ("Δ", "Δ_rand", "random") for s in ("retain gradients", "forget gradients")}
    assert len(res["h2"]["rows"]) == 2 * (2 + DRAWS)  # Δ, an isotropic direction and one Δ_rand per draw, per span
    for r in res["h2"]["rows"]:
        assert 0 <= r["share"] <= 1 + 1e-9 and 1 <= r["rank"] <= 4 and r["expected_random_share"] == r["rank"] / P
    # H2's control is computed: Δ_rand = θ_random − θ_initial for every draw, its spread, the comparison
    for span, c in res["h2"]["control"].items():
        assert len(c["control"]) == DRAWS and c["control_sd"] is not None and isinstance(c["differs"], bool)
        assert c["delta"] == h2[("Δ", span)]["share"]
    # H1 on the convex proxy: a strictly convex fit, so the shifts are the data's
    cv = h1["convex"]
    assert cv["features"] > 0 and cv["shift_poisons"] > 0 and len(cv["shift_random"]) == DRAWS
    assert cv["ratio"] == pytest.approx(cv["shift_poisons"] / cv["shift_random_mean"])
    (gd,) = res["methods"]
    assert gd["method"] == "gd" and gd["update_norm"] > 0
    assert gd["update_norm_with_buffers"] >= gd["update_norm"] and gd["buffer_update_norm"] >= 0
    assert gd["covered"] == pytest.approx(1 - gd["distance_to_retrain"] / h1["param_retrain"])
    assert -1 <= gd["cos_update_delta"] <= 1 and 0 < gd["budget_spent"] <= 0.05 + 1e-9  # cap_share 0.5 of 0.1
    interp = res["interpolation"]["rows"]
    assert [r["alpha"] for r in interp] == [0.0, 0.5, 1.0]
    ref = scen.manifest["metrics"]
    for r, which in ((interp[0], "initial"), (interp[-1], "retrain")):  # the ends are the two models
        assert r["z"] == pytest.approx(ref[which]["z"], abs=1e-9)
        assert r["test_acc"] == ref[which]["test_acc"]
    assert interp[0]["param_distance_to_initial"] == 0.0
    assert interp[-1]["param_distance_to_initial"] == pytest.approx(h1["param_retrain"], rel=1e-9)
    assert len(pd.read_csv(out / "h1.csv")) == 1 + DRAWS and len(pd.read_csv(out / "interpolation.csv")) == 3
    assert len(pd.read_csv(out / "h2.csv")) == 2 * (2 + DRAWS) and list(pd.read_csv(out / "methods.csv").method) == \
        ["gd"]
    figs = {n: json.loads((out / f"{n}.json").read_text())["panels"] for n in
            ("h1_distances", "h2_shares", "interpolation")}
    assert [p["bars"] for p in figs["h1_distances"]] == [1 + DRAWS, 1 + DRAWS, 1]
    assert figs["h2_shares"][0]["bars"] == 2 * (2 + DRAWS) and figs["h2_shares"][0]["lines"] == 1  # and r/P
    assert [p["title"] for p in figs["interpolation"]] == ["GUS z (all poisons)", "test accuracy"]
    assert figs["interpolation"][0]["line_points"] == 3 + 4  # the curve and the ±2.576 lines
    from raysweep.explain.figure import report_blocks

    blocks = report_blocks(sweep_dir, tmp_path)
    assert blocks[0] == ("h", 2, "Why: H1 and H2")
    imgs = [b[1] for b in blocks if b[0] == "img"]
    assert imgs == ["h1_distances.png", "h2_shares.png", "interpolation.png"]
    assert all((tmp_path / n).is_file() and (tmp_path / n.replace(".png", ".json")).is_file() for n in imgs)
    assert sum(b[0] == "table" for b in blocks) == 4
    assert report_blocks(tmp_path / "nothing", tmp_path) == []


@pytest.mark.parametrize("argv,field", [(["--m", "0"], "m=0"), (["--draws", "0"], "draws=0"),
                                        (["--alphas", "0,2"], "alphas='0,2'"), (["--alphas", "x"], "alphas='x'"),
                                        (["--alphas", "0.5"], "alphas='0.5'"),
                                        (["--batch-size", "0"], "batch_size=0")])
def test_bad_options_exit_2_naming_the_field_before_anything_runs(tmp_path, capsys, argv, field):
    code = main(["explain", str(tmp_path / "no-such-sweep"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"raysweep: error: {field} is not valid")
    assert not (tmp_path / "no-such-sweep").exists()


def test_a_method_that_changes_only_batchnorm_buffers_shows_a_non_zero_update(scen):
    from raysweep.explain import geometry as geo

    a, b = scen.new_model("initial"), scen.new_model("initial")
    bn = next(m for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean += 0.5  # what a bn=train pass over noisy batches does, with no parameter step
    assert geo.distance(geo.flat(a), geo.flat(b)) == 0.0
    assert geo.distance(geo.flat_buffers(a), geo.flat_buffers(b)) == pytest.approx(0.5 * bn.running_mean.numel() ** 0.5)


def test_the_convex_proxy_fit_converges_to_the_unique_optimum():
    from raysweep.explain.convex import L2, fit_head

    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.3 * torch.randn(300, generator=g, dtype=torch.float64) > 0).long()
    W = fit_head(X, y, 2).requires_grad_(True)
    Xb = torch.cat([X, torch.ones(300, 1, dtype=torch.float64)], 1)
    loss = torch.nn.functional.cross_entropy(Xb @ W, y) + 0.5 * L2 * (W[:-1] ** 2).sum()
    (grad,) = torch.autograd.grad(loss, W)
    assert float(grad.abs().max()) < 1e-6  # stationary: the minimiser of a strictly convex objective
    perm = torch.randperm(300, generator=g)
    assert torch.allclose(fit_head(X[perm], y[perm], 2), W.detach(), atol=1e-5)  # the same optimum in any order
