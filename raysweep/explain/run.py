"""`raysweep explain SWEEP`: H1 (model shift) and H2 (orthogonal subspace) measured on a sweep's scenario.

Writes SWEEP/explain/: explain.json (every number), h1.csv, h2.csv, methods.csv, interpolation.csv and the
figures h1_distances.png, h2_shares.png, interpolation.png (each with a .json sidecar). docs/explain.md
describes each number and its cost.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from ..artifacts import Store, atomic_write_table, atomic_write_text, open_store
from ..prepare.scenario import Scenario, derive_seed, store_key
from ..results.tables import best_rows, read_tables
from ..runs import run_config
from ..stats.evidence import missing
from . import geometry as geo
from .convex import convex_h1
from .figure import ROW_KEYS, convex_text, draw_all, fades_text, h2_text
from .random_refs import check_supported, drop_rows, random_refs

DEFAULT_ALPHAS = tuple(round(i / 10, 1) for i in range(11))
Z_FADED = 2.576  # |z| below the two-sided 1 % level of the GUS test: no detectable trace


def _open_scenario(meta: dict, store: str | None, device) -> tuple[Store, Scenario]:
    """The sweep's scenario from the store the sweep names, else from `store` (a copied sweep)."""
    stores = [open_store(meta["store"])] if meta.get("store") else []
    if store:
        stores.append(open_store(store))
    for s in stores:
        if s.has(store_key(meta["scenario"])):
            return s, Scenario.load(s, meta["scenario"], device)
    return stores[-1], Scenario.load(stores[-1], meta["scenario"], device)  # raises: names the store


def _row_metrics(m: dict, attack_metric: str) -> dict:
    out = {k: m.get(k) for k in ROW_KEYS}
    if attack_metric not in out:  # the attack's own metric, when GUS is not it
        out[attack_metric] = m.get(attack_metric)
    return out


def _best_models(scen: Scenario, meta: dict, trials: pd.DataFrame, log) -> list[dict]:
    """Each method's best trial re-run (runs.py `run_config`, the trial's own seed: the same model)."""
    out = []
    # the sweep's trials ran on floor(cpus_per_trial) threads; CPU sums differ with the thread count, so the
    # re-run uses the same number to give the trial's model bit for bit
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(math.floor(float(meta["config"].get("cpus_per_trial", 1.0))))))
    try:
        for method, r in best_rows(trials).iterrows():
            out.append(_best_model(scen, meta, method, r, log))
    finally:
        torch.set_num_threads(before)
    return out


def _best_model(scen: Scenario, meta: dict, method: str, r: pd.Series, log) -> dict:
    """One best trial re-run (its own seed: the same model), kept for measuring."""
    seed = int(meta["config"].get("seed", 0) if missing(r.get("seed")) else r.get("seed"))
    row = run_config(scen, r, method, meta, seed, log, keep_model=True)
    model = row.pop("model")
    row.pop("scores", None)
    z0, z1 = r.get("holdout_z"), row.get("holdout_z")
    if not missing(z0) and z1 is not None and abs(float(z0) - float(z1)) > 1e-4:
        log(f"[explain] warning: {method}'s re-run has held-out z {z1:+.4f}, the sweep's best trial "
            f"{float(z0):+.4f}: not the same model (another device, thread count or library version?)")
    return {"method": method, "seed": seed, "model": model, "metrics": row,
            "budget_spent": row.get("budget_spent"), "sweep_holdout_z": r.get("holdout_z")}


def explain_sweep(sweep: str | Path, out: str | Path | None = None, draws: int = 3, m: int = 32,
                  batch_size: int = 128, alphas=DEFAULT_ALPHAS, device="cpu", store: str | None = None,
                  log=None) -> dict:
    """Measure H1, H2 and the interpolation for the sweep at `sweep`; returns explain.json's content."""
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    meta, trials, _, _ = read_tables(sweep)
    out = Path(out or Path(sweep) / "explain").resolve()
    st, scen = _open_scenario(meta, store, device)
    check_supported(scen)
    wall, t0 = {}, time.perf_counter()
    seed = scen.cfg.seed
    metric = scen.attack.metric if scen.attack is not None else "z"
    test = scen.data.test
    init, retrain = scen.new_model("initial"), scen.new_model("retrain")
    th_i, th_r = geo.flat(init), geo.flat(retrain)
    delta = th_r - th_i
    d_ret = float(torch.linalg.vector_norm(delta))
    lp_i = geo.log_probs(init, test)

    # ---- H1: how far the poisons moved the model, against k random clean samples ----------------------
    refs = random_refs(scen, st, draws, say)
    wall["random_refs_s"] = round(time.perf_counter() - t0, 2)
    ref_model = scen.new_model()
    h1 = [{"model": "θ_retrain", "dropped": "the k poisons", "draw": None, "param_distance": d_ret,
           "kl_test": geo.mean_kl(lp_i, geo.log_probs(retrain, test)),
           **_row_metrics(scen.manifest["metrics"]["retrain"], metric)}]
    rand_vecs = []
    for ref in refs:
        ref_model.load_state_dict(ref["weights"])
        v = geo.flat(ref_model)
        rand_vecs.append(v)
        h1.append({"model": f"θ_random {ref['draw']}", "dropped": "k random clean samples", "draw": ref["draw"],
                   "param_distance": geo.distance(th_i, v),
                   "kl_test": geo.mean_kl(lp_i, geo.log_probs(ref_model, test)),
                   **_row_metrics(ref["manifest"]["metrics"], metric)})
    rnd = pd.DataFrame(h1[1:])
    h1_summary = {
        "param_retrain": d_ret, "param_random_mean": float(rnd.param_distance.mean()),
        "param_random_sd": float(rnd.param_distance.std()) if len(rnd) > 1 else None,
        "param_ratio": d_ret / float(rnd.param_distance.mean()),
        "kl_retrain": h1[0]["kl_test"], "kl_random_mean": float(rnd.kl_test.mean()),
        "kl_ratio": h1[0]["kl_test"] / float(rnd.kl_test.mean()) if float(rnd.kl_test.mean()) > 0 else None,
        "param_random_pairwise_mean": geo.pairwise_mean(rand_vecs),
        "theta_initial_norm": float(torch.linalg.vector_norm(th_i)),
        "random_built_now": [r["draw"] for r in refs if r["built"]]}
    say("[explain] H1 on the convex proxy: a linear head on θ_initial's frozen features, fitted to convergence")
    h1_summary["convex"] = convex_h1(scen, [drop_rows(scen, r["draw"]) for r in refs])
    h1_summary["buffer_retrain"] = geo.distance(geo.flat_buffers(init), geo.flat_buffers(retrain))
    say(f"[explain] H1: ||θ_initial − θ_retrain|| = {d_ret:.4g}, ||θ_initial − θ_random|| = "
        f"{h1_summary['param_random_mean']:.4g} (mean of {draws}); KL {h1_summary['kl_retrain']:.4g} vs "
        f"{h1_summary['kl_random_mean']:.4g}")

    # ---- H2: the share of Δ inside the span of retain / forget gradients at θ_initial ----------------
    t1 = time.perf_counter()
    ps = scen.poisoned
    spans, h2 = {}, []
    direction = geo.random_direction(delta, derive_seed(seed, "explain-random-direction"))
    for name, split in (("retain", ps.retain()), ("forget", ps.forget())):
        say(f"[explain] H2: {m} gradients of {name} batches of {batch_size} at θ_initial")
        G = geo.batch_gradients(scen.new_model("initial"), split, m, batch_size,
                                derive_seed(seed, f"explain-{name}-batches"))
        Q = geo.orthonormal_basis(G, geo.GRAD_RTOL)
        spans[name] = Q
        if Q.shape[1] < m:
            say(f"[explain] H2: the {name} span has rank {Q.shape[1]} < m = {m}"
                + (f" (every batch is the whole {name} set of {len(split)}: use --batch-size < {len(split)})"
                   if len(split) <= batch_size else ""))
        step = -G.mean(dim=1) if name == "retain" else G.mean(dim=1)  # GD descends retain, GA ascends forget
        P, r = Q.shape
        dirs = [("Δ = θ_retrain − θ_initial", delta), ("random direction, same norm", direction),
                *((f"Δ_rand {j} = θ_random {j} − θ_initial", v - th_i) for j, v in enumerate(rand_vecs))]
        for what, v in dirs:
            h2.append({"direction": what, "span": f"{name} gradients", "m": m, "rank": r, "P": P,
                       "share": geo.span_share(Q, v), "expected_random_share": r / P,
                       "cos_with_step": geo.cosine(v, step) if what.startswith("Δ") else None})
        del G
    wall["h2_s"] = round(time.perf_counter() - t1, 2)
    control = h2_control(h2)
    say("[explain] " + h2_text({"h2": {"rows": h2, "control": control}}))

    # ---- each method's best model: its update against Δ ----------------------------------------------
    t1 = time.perf_counter()
    methods = []
    for b in _best_models(scen, meta, trials, say):
        u = geo.flat(b["model"]) - th_i
        dist_r = geo.distance(th_i + u, th_r)
        buf = geo.distance(geo.flat_buffers(b["model"]), geo.flat_buffers(init))
        methods.append({"method": b["method"], "seed": b["seed"], "update_norm": float(torch.linalg.vector_norm(u)),
                        "buffer_update_norm": buf,
                        "update_norm_with_buffers": math.hypot(float(torch.linalg.vector_norm(u)), buf),
                        "distance_to_retrain": dist_r, "covered": 1 - dist_r / d_ret if d_ret else None,
                        "projection_share": float(u @ delta) / (d_ret * d_ret) if d_ret else None,
                        "cos_update_delta": geo.cosine(u, delta),
                        "update_share_retain_span": geo.span_share(spans["retain"], u),
                        "update_share_forget_span": geo.span_share(spans["forget"], u),
                        "kl_test": geo.mean_kl(lp_i, geo.log_probs(b["model"], test)),
                        "budget_spent": b["budget_spent"], **_row_metrics(b["metrics"], metric),
                        "sweep_holdout_z": b["sweep_holdout_z"]})
    wall["methods_s"] = round(time.perf_counter() - t1, 2)

    # ---- interpolation θ(α) = (1 − α) θ_initial + α θ_retrain (ours, not the paper's) ----------------
    t1 = time.perf_counter()
    interp, probe = [], scen.new_model()
    for a in alphas:
        probe.load_state_dict(geo.interpolate(scen.weights["initial"], scen.weights["retrain"], float(a)))
        mt = scen.evaluate(probe)
        interp.append({"alpha": float(a), "param_distance_to_initial": geo.distance(geo.flat(probe), th_i),
                       "kl_test": geo.mean_kl(lp_i, geo.log_probs(probe, test)), **_row_metrics(mt, metric)})
        say(f"[explain] θ({a:g}): z {mt.get('z', float('nan')):+.2f}, test acc {mt['test_acc']:.3f}")
    wall["interpolation_s"] = round(time.perf_counter() - t1, 2)
    wall["total_s"] = round(time.perf_counter() - t0, 2)

    result = {"sweep": str(Path(sweep).resolve()), "out": str(out), "scenario": scen.hash, "attack": scen.cfg.attack,
              "attack_metric": metric, "P": int(th_i.numel()), "k": ps.k,
              "options": {"draws": draws, "m": m, "batch_size": batch_size, "alphas": [float(a) for a in alphas],
                          "device": str(device)},
              "h1": {**h1_summary, "rows": h1}, "h2": {"rows": h2, "control": control}, "methods": methods,
              "interpolation": {"rows": interp, "z_faded_level": Z_FADED,
                                "fades_at": geo.fades_at([r["alpha"] for r in interp], [r["z"] for r in interp],
                                                         Z_FADED)},
              "wall_s": wall}
    write_outputs(result, out)
    say(f"[explain] written to {out} in {wall['total_s']:.0f}s")
    return result


def h2_control(rows: list[dict]) -> dict:
    """Per span: Δ's share beside the shares of Δ_rand (θ_random − θ_initial, a run that dropped k random
    clean samples instead of the poisons), their mean and SD over draws, and whether Δ differs from the
    control by more than twice that spread (H2 is claimed only then)."""
    out = {}
    for span in dict.fromkeys(r["span"] for r in rows):
        mine = [r for r in rows if r["span"] == span]
        delta = next(r["share"] for r in mine if r["direction"].startswith("Δ ="))
        rand = [r["share"] for r in mine if r["direction"].startswith("Δ_rand")]
        mean = sum(rand) / len(rand) if rand else None
        sd = (sum((v - mean) ** 2 for v in rand) / (len(rand) - 1)) ** 0.5 if len(rand) > 1 else None
        out[span] = {"delta": delta, "control": rand, "control_mean": mean, "control_sd": sd,
                     "differs": None if sd is None else bool(abs(delta - mean) > 2 * sd)}
    return out


def write_outputs(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("h1", result["h1"]["rows"]), ("h2", result["h2"]["rows"]), ("methods", result["methods"]),
                       ("interpolation", result["interpolation"]["rows"])):
        atomic_write_table(pd.DataFrame(rows), out / f"{name}.csv")
    draw_all(result, out)
    atomic_write_text(out / "explain.json", json.dumps(result, indent=1, default=_json_default))


def _json_default(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def summary(result: dict) -> str:
    """A few lines for the terminal."""
    h1 = result["h1"]
    lines = [f"H1: ||θ_initial − θ_retrain|| = {h1['param_retrain']:.4g}; without k random clean samples "
             f"{h1['param_random_mean']:.4g} (ratio {h1['param_ratio']:.3g}); KL on test {h1['kl_retrain']:.3g} vs "
             f"{h1['kl_random_mean']:.3g}",
             h2_text(result)]
    if h1.get("convex"):
        lines.insert(1, convex_text(h1["convex"]))
    for r in result["methods"]:
        lines.append(f"  {r['method']}: ||update|| {r['update_norm']:.3g}, covered {r['covered']:+.3g} (projection "
                     f"{r['projection_share']:+.3g}), cos(update, Δ) {r['cos_update_delta']:+.3f}")
    lines.append("interpolation: " + fades_text(result["interpolation"]["fades_at"]))
    return "\n".join(lines)
