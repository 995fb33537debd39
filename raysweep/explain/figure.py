"""The figures of `raysweep explain` (each PNG with a .json sidecar from plotting.describe) and the
"Why: H1 and H2" section that `raysweep report` appends when SWEEP/explain/explain.json exists."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..artifacts import atomic_write  # noqa: E402
from ..plotting import save  # noqa: E402  (PNG + its describe() sidecar, both atomic)

FIGURES = ("h1_distances", "h2_shares", "interpolation")


# the figures a row of the interpolation and of each method carries (run.py)
ROW_KEYS = ("test_acc", "val_acc", "forget_acc", "gus", "z", "tune_z", "holdout_gus", "holdout_z")


def _bars(ax, labels, values, colors, title, ylabel):
    ax.bar(range(len(values)), [0.0 if v is None else v for v in values], color=colors)
    ax.set_xticks(range(len(values)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)


def h1_figure(result: dict, out: Path) -> Path:
    rows, methods = result["h1"]["rows"], result["methods"]
    labels = [r["model"] for r in rows]
    colors = ["tab:green"] + ["tab:gray"] * (len(rows) - 1)
    n = 3 if methods else 2
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), layout="constrained")
    _bars(axes[0], labels, [r["param_distance"] for r in rows], colors, "parameter space", "||θ − θ_initial||")
    _bars(axes[1], labels, [r["kl_test"] for r in rows], colors, "function space (test split)",
          "mean KL(p_initial ‖ p_θ)")
    if methods:
        _bars(axes[2], [m["method"] for m in methods], [m["update_norm"] for m in methods], "tab:blue",
              "each method's best update", "||θ_unlearned − θ_initial||")
        axes[2].axhline(result["h1"]["param_retrain"], color="tab:green", ls=":", label="||θ_retrain − θ_initial||")
        axes[2].legend(fontsize=7)
    fig.suptitle("H1: retraining without the k poisons (green) vs without k random clean samples (gray)",
                 fontsize=9)
    return save(fig, out / "h1_distances.png")


def h2_figure(result: dict, out: Path) -> Path:
    rows, methods = result["h2"]["rows"], result["methods"]
    n = 2 if methods else 1
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), layout="constrained", squeeze=False)
    ax = axes[0][0]
    kind = lambda r: "Δ" if r["direction"].startswith("Δ =") else "Δ_rand" if r["direction"].startswith(  # noqa: E731
        "Δ_rand") else "random"
    labels = [f"{kind(r)} in\n{r['span']}" for r in rows]
    colors = [{"Δ": "tab:purple", "Δ_rand": "tab:orange", "random": "tab:gray"}[kind(r)] for r in rows]
    _bars(ax, labels, [r["share"] for r in rows], colors, f"span of m = {rows[0]['m']} batch gradients at θ_initial",
          "squared share in the span")
    ax.set_yscale("log")
    ax.axhline(rows[0]["expected_random_share"], color="k", ls="--", lw=1, label="r / P (a random direction)")
    ax.legend(fontsize=7)
    if methods:
        ax = axes[0][1]
        _bars(ax, [m["method"] for m in methods], [m["cos_update_delta"] for m in methods], "tab:blue",
              "each method's best update", "cos(θ_unlearned − θ_initial, Δ)")
        ax.axhline(0.0, color="k", lw=0.8)
    fig.suptitle("H2: the correction Δ = θ_retrain − θ_initial against gradient spans", fontsize=9)
    return save(fig, out / "h2_shares.png")


def interpolation_figure(result: dict, out: Path) -> Path:
    rows = result["interpolation"]["rows"]

    metric = result.get("attack_metric", "z")
    a = [r["alpha"] for r in rows]
    panels = [("z", "GUS z (all poisons)")] if any(r.get("z") is not None for r in rows) else []
    panels.append(("test_acc", "test accuracy"))
    if metric not in ROW_KEYS:
        panels.append((metric, f"the attack's metric: {metric}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), layout="constrained", squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        ax.plot(a, [float("nan") if r.get(key) is None else r[key] for r in rows], marker="o", color="tab:blue")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("α", fontsize=8)
        if key == "z":
            lvl = result["interpolation"]["z_faded_level"]
            for s in (-1, 1):
                ax.axhline(s * lvl, color="k", ls="--", lw=0.8, label="±2.576 (two-sided 1 %)" if s < 0 else None)
            ax.legend(fontsize=7)
    fig.suptitle("θ(α) = (1 − α) θ_initial + α θ_retrain (our addition, not the paper's)", fontsize=9)
    return save(fig, out / "interpolation.png")


def draw_all(result: dict, out: Path) -> list[Path]:
    return [h1_figure(result, out), h2_figure(result, out), interpolation_figure(result, out)]


VIEW = {"h1": ["model", "dropped", "param_distance", "kl_test", "test_acc", "z"],
        "h2": ["direction", "span", "rank", "P", "share", "expected_random_share", "cos_with_step"],
        "methods": ["method", "update_norm", "distance_to_retrain", "covered", "projection_share", "cos_update_delta",
                    "update_share_retain_span", "test_acc", "holdout_z"],
        "interpolation": ["alpha", "param_distance_to_initial", "kl_test", "z", "holdout_z", "test_acc"]}


def _table(src: Path, name: str, extra: tuple = ()) -> tuple:
    df = pd.read_csv(src / f"{name}.csv")
    return ("table", df[[c for c in dict.fromkeys([*VIEW[name], *extra]) if c in df.columns]])


def _fmt(v, spec=".3g") -> str:
    return "–" if v is None else format(v, spec)


def report_blocks(sweep: str | Path, out: str | Path) -> list[tuple]:
    """The report's "Why: H1 and H2" section from SWEEP/explain (figures copied beside the report); [] when
    `raysweep explain` has not run on this sweep."""

    src = Path(sweep) / "explain"
    if not (src / "explain.json").is_file():
        return []
    res = json.loads((src / "explain.json").read_text())
    out = Path(out)
    for name in FIGURES:
        for ext in (".png", ".json"):
            if (src / f"{name}{ext}").is_file() and src.resolve() != out.resolve():
                atomic_write(out / f"{name}{ext}", lambda tmp, f=src / f"{name}{ext}": shutil.copyfile(f, tmp))
    h1 = res["h1"]
    fades = res["interpolation"]["fades_at"]
    blocks = [("h", 2, "Why: H1 and H2"),
              ("p", f"`raysweep explain` (docs/explain.md): {res['options']['draws']} θ_random draws, m = "
                    f"{res['options']['m']} batch gradients, P = {res['P']} parameters (BatchNorm running statistics "
                    "measured beside the parameter distances: buffer_update_norm)."),
              ("p", f"H1, model shift: ||θ_initial − θ_retrain|| = {_fmt(h1['param_retrain'])} against "
                    f"{_fmt(h1['param_random_mean'])} for retraining without k random clean samples (ratio "
                    f"{_fmt(h1['param_ratio'])}; two random draws differ by {_fmt(h1['param_random_pairwise_mean'])});"
                    f" mean KL on the test split {_fmt(h1['kl_retrain'])} against {_fmt(h1['kl_random_mean'])}."),
              _table(src, "h1"),
              *([("p", convex_text(h1["convex"]))] if h1.get("convex") else []),
              ("p", h2_text(res)),
              _table(src, "h2")]
    if (src / "methods.csv").is_file() and res["methods"]:
        blocks += [("p", "Each method's best model against Δ: covered = 1 − ||θ_unlearned − θ_retrain|| / ||Δ||, "
                         "projection share = ⟨u, Δ⟩ / ||Δ||², u = θ_unlearned − θ_initial."),
                   _table(src, "methods")]
    blocks += [("p", "Interpolation (our addition, not the paper's): θ(α) = (1 − α) θ_initial + α θ_retrain; the "
                     "α at which the poison's trace fades: " + fades_text(fades) + "."),
               _table(src, "interpolation", (res.get("attack_metric"),))]
    blocks += [("img", f"{name}.png", caption) for name, caption in
               (("h1_distances", "H1: distances from θ_initial"), ("h2_shares", "H2: shares of Δ in gradient spans"),
                ("interpolation", "GUS z and test accuracy along θ(α)")) if (src / f"{name}.png").is_file()]
    return blocks


def convex_text(c: dict) -> str:
    """H1 on the convex proxy, in words."""
    sd = f" ± {_fmt(c['shift_random_sd'])}" if c.get("shift_random_sd") is not None else ""
    return (f"H1 on the convex proxy (a linear head on θ_initial's frozen {c['features']} features, L2 {c['l2']:g}, "
            f"fitted to convergence): removing the k poisons moves it by {_fmt(c['shift_poisons'])}, removing k "
            f"random clean samples by {_fmt(c['shift_random_mean'])}{sd} (ratio {_fmt(c['ratio'])}).")


def h2_text(res: dict) -> str:
    """H2 with its control: Δ's share beside Δ_rand's (θ_random − θ_initial), claimed only where they differ."""
    h2, control = res["h2"]["rows"], res["h2"].get("control") or {}
    parts = []
    for span, c in control.items():
        sd = "" if c["control_sd"] is None else f" ± {_fmt(c['control_sd'])}"
        verdict = {True: "differs by more than twice the control's spread", False: "within twice the control's "
                   "spread: not distinguishable from two diverged runs", None: "one draw: no spread to compare"}
        parts.append(f"{span}: Δ {_fmt(c['delta'])}, Δ_rand {_fmt(c['control_mean'])}{sd} ({verdict[c['differs']]})")
    rand = next((r for r in h2 if r["direction"].startswith("random")), h2[0])
    return ("H2: squared share of Δ = θ_retrain − θ_initial in the span of the gradients (orthogonal subspace), "
            "beside its control Δ_rand = θ_random − θ_initial (a retraining without k random clean samples, "
            "diverged from θ_initial as much by chance): " + "; ".join(parts) +
            f". An isotropic random direction: {_fmt(rand['share'])} (expected r/P = "
            f"{_fmt(rand['expected_random_share'])}).")


def fades_text(fades) -> str:
    """Where on the line from θ_initial to θ_retrain the poison's trace fades, in words."""
    if fades is None:
        return "the trace (|z| ≥ 2.576) stays on the grid short of θ_retrain, or z is not measured"
    if fades == 0:
        return "θ_initial itself shows no detectable trace (|z| < 2.576 all along)"
    return f"|z| < 2.576 from α = {fades:g} on to θ_retrain"
