"""The report's figures, each a PNG drawn from the exported tables alone."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REF_STYLE = {"none": dict(color="tab:red", ls="--", label="θ_initial (none)"),
             "retrain": dict(color="tab:green", ls=":", label="θ_retrain")}


def _grid(n: int, width: float = 3.2, height: float = 2.6):
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def _normal(ax, lo=-4.5, hi=4.5):
    x = np.linspace(lo, hi, 200)
    ax.plot(x, np.exp(-x * x / 2) / math.sqrt(2 * math.pi), color="k", lw=1, label="N(0, 1)")


def score_histograms(scores: pd.DataFrame, best: dict[str, str], out: Path) -> Path:
    """The paper's panels: fresh noise vs θ_initial, poisons vs θ_initial, poisons vs each method's
    best unlearned model (its held-out half)."""
    panels = []
    init = scores[scores.method == "none"]
    if len(init):
        panels.append(("fresh noise vs θ_initial", init.control.to_numpy()))
        panels.append(("poisons vs θ_initial", init.score.to_numpy()))
    for method, trial in best.items():
        s = scores[(scores.method == method) & (scores.trial_id == trial)]
        if len(s):
            panels.append((f"poisons vs {method} (best)", s.score.to_numpy()))
    fig, axes = _grid(max(1, len(panels)))
    for ax, (title, v) in zip(axes, panels):
        ax.hist(v, bins=30, density=True, alpha=0.6, color="tab:blue", range=(-4.5, 4.5))
        _normal(ax)
        ax.axvline(v.mean(), color="tab:red", lw=1)
        ax.set_title(f"{title}\nmean {v.mean():+.3f}, n={len(v)}", fontsize=8)
        ax.set_xlabel("I_z", fontsize=8)
    if not panels:
        axes[0].text(0.5, 0.5, "no per-sample scores in this sweep", ha="center")
    return _save(fig, out / "score_histograms.png")


def gus_vs_budget(history: pd.DataFrame, trials: pd.DataFrame, out: Path) -> Path:
    """GUS on the tuning half vs budget spent, every trial per method, with the two references."""
    refs = trials[trials.status == "reference"].set_index("method")
    methods = [m for m in dict.fromkeys(history.method)]
    col = "tune_gus" if history["tune_gus"].notna().any() else "effect"  # other attacks: their effect
    fig, axes = _grid(max(1, len(methods)))
    for ax, m in zip(axes, methods):
        h = history[history.method == m]
        best = trials[(trials.method == m) & trials.is_best.astype(bool)].trial_id.tolist()
        for tid, g in h.groupby("trial_id"):
            g = g.sort_values("report")
            ax.plot(g.budget_spent, g[col].astype(float), lw=2 if tid in best else 0.8, alpha=1 if tid in best else 0.5,
                    marker="o", ms=2, color="tab:blue" if tid in best else "tab:gray")
        for ref, style in REF_STYLE.items():
            if ref in refs.index and not pd.isna(refs.loc[ref, col]):
                ax.axhline(float(refs.loc[ref, col]), **style)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("budget spent (fraction of training)", fontsize=7)
        ax.set_ylabel("GUS (tuning half)" if col == "tune_gus" else "poison effect", fontsize=7)
    if methods:
        axes[0].legend(fontsize=6)
    return _save(fig, out / "gus_vs_budget.png")


def accuracy_vs_gus(trials: pd.DataFrame, floor: float, out: Path) -> Path:
    """Validation accuracy vs |GUS| (tuning half) of every finished trial, Pareto front joined."""
    runs = trials[trials.status == "finished"]
    methods = list(dict.fromkeys(runs.method))
    fig, axes = _grid(max(1, len(methods)))
    refs = trials[trials.status == "reference"].set_index("method")
    for ax, m in zip(axes, methods):
        g = runs[runs.method == m]
        ax.scatter(g.effect, g.val_acc, s=14, color="tab:gray", label="trials")
        front = g[g.pareto.astype(bool)].sort_values("effect")
        ax.plot(front.effect, front.val_acc, color="tab:blue", marker="o", ms=4, label="Pareto front")
        ax.axhline(floor, color="tab:orange", lw=0.8, label="accuracy floor")
        for ref, style in REF_STYLE.items():
            if ref in refs.index and not pd.isna(refs.loc[ref, "effect"]):
                ax.scatter([float(refs.loc[ref, "effect"])], [float(refs.loc[ref, "val_acc"])], marker="*",
                           s=60, color=style["color"], label=style["label"])
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("poison effect (|GUS| on the tuning half for Gaussian poisons)", fontsize=7)
        ax.set_ylabel("validation accuracy", fontsize=7)
    if methods:
        axes[0].legend(fontsize=6)
    return _save(fig, out / "accuracy_vs_gus.png")


def mia_vs_gus(verdict: pd.DataFrame, out: Path) -> Path:
    """TPR at 1 % FPR: the loss-threshold MIA next to the Gaussian test (holdout half), per method."""
    v = verdict[verdict.holdout_tpr_two.notna()]
    x = np.arange(len(v))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(v) + 2), 3.2))
    ax.bar(x - 0.2, v.mia_tpr.astype(float), 0.4, label="loss-threshold MIA")
    ax.bar(x + 0.2, v.holdout_tpr_two.astype(float), 0.4, label="Gaussian test (|I| > 2.576)")
    ax.axhline(0.01, color="k", lw=0.8, ls="--", label="FPR = 1 %")
    ax.set_xticks(x, v.method, rotation=30, fontsize=8)
    ax.set_ylabel("TPR at 1 % FPR")
    ax.legend(fontsize=7)
    return _save(fig, out / "mia_vs_gus.png")


def optimisation_history(trials: pd.DataFrame, out: Path) -> Path:
    """Objective per trial in the order trials were created, with the running best."""
    runs = trials[trials.status.isin(["finished", "stopped"])].copy()
    methods = list(dict.fromkeys(runs.method))
    fig, axes = _grid(max(1, len(methods)))
    for ax, m in zip(axes, methods):
        g = runs[runs.method == m].sort_values("order")
        y = g.objective.astype(float).to_numpy()
        ax.scatter(np.arange(1, len(y) + 1), y, s=12, color="tab:gray")
        ax.plot(np.arange(1, len(y) + 1), np.minimum.accumulate(y), color="tab:blue")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("trial", fontsize=7)
        ax.set_ylabel("objective", fontsize=7)
    return _save(fig, out / "optimisation_history.png")


def param_importances(importances: dict[str, dict[str, float]], out: Path) -> Path:
    """fANOVA importances (Optuna) of each method's searched parameters."""
    methods = list(importances)
    fig, axes = _grid(max(1, len(methods)))
    for ax, m in zip(axes, methods):
        imp = importances[m]
        if not imp:
            ax.text(0.5, 0.5, "too few finished trials", ha="center", va="center", fontsize=8)
            ax.set_axis_off()
        else:
            names = list(imp)[::-1]
            ax.barh(names, [imp[n] for n in names], color="tab:blue")
        ax.set_title(m, fontsize=9)
    return _save(fig, out / "param_importances.png")
