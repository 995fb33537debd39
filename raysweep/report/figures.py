"""The report's figures, each a PNG drawn from the exported tables alone."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..objective import DIVERGED  # noqa: E402
from ..plotting import REF_STYLE, figure_legend, freeze, grid, off_scale, save  # noqa: E402


def _at_right_edge(ax, y, **style) -> None:
    """Markers at the right edge of the panel (axes x = 1), at height y (clamped into the panel)."""
    lo, hi = ax.get_ylim()
    y = np.clip(np.nan_to_num(np.asarray(y, float), nan=lo), lo, hi)
    ax.scatter(np.ones(len(y)), y, transform=ax.get_yaxis_transform(), clip_on=False, zorder=5, gid="edge",
               **style)


def _at_top_edge(ax, x, **style) -> None:
    """Markers at the top edge of the panel (axes y = 1), at position x."""
    ax.scatter(np.asarray(x, float), np.ones(len(x)), transform=ax.get_xaxis_transform(), clip_on=False, zorder=5,
               gid="edge", **style)


DIVERGED_STYLE = dict(marker=">", s=40, color="tab:red", label="diverged (off scale: at the right edge)")


def _normal(ax, lo=-4.5, hi=4.5):
    x = np.linspace(lo, hi, 200)
    ax.plot(x, np.exp(-x * x / 2) / math.sqrt(2 * math.pi), color="k", lw=1, label="N(0, 1)")


def score_histograms(scores: pd.DataFrame, best: dict[str, str], out: Path) -> Path:
    """The paper's panels: fresh noise vs θ_initial, poisons vs θ_initial, poisons vs each method's
    best unlearned model (its held-out half)."""
    panels = []
    scores = scores[scores.part != "canary"] if "part" in scores else scores  # poisons only
    init = scores[scores.method == "none"]
    if len(init):
        panels.append(("fresh noise vs θ_initial", init.control.to_numpy()))
        panels.append(("poisons vs θ_initial", init.score.to_numpy()))
    for method, trial in best.items():
        s = scores[(scores.method == method) & (scores.trial_id == trial)]
        if len(s):
            panels.append((f"poisons vs {method} (best)", s.score.to_numpy()))
    fig, axes = grid(max(1, len(panels)), "score I_z", "density")
    for ax, (title, v) in zip(axes, panels):
        ax.hist(v, bins=30, density=True, alpha=0.6, color="tab:blue", range=(-4.5, 4.5), label="scores")
        _normal(ax)
        ax.axvline(v.mean(), color="tab:red", lw=1, label="mean")
        ax.set_title(f"{title}\nmean {v.mean():+.3f}, n={len(v)}", fontsize=8)
    if not panels:
        axes[0].text(0.5, 0.5, "no per-sample scores in this sweep", ha="center")
    figure_legend(fig, axes)
    return save(fig, out / "score_histograms.png")


def gus_vs_budget(history: pd.DataFrame, trials: pd.DataFrame, out: Path, effect_label: str = "poison effect",
                  curve_key: str = "effect", curve_label: str = "") -> Path:
    """The attack's checkpoint figure `curve_key` (`Attack.curve_key`: Gaussian, the signed GUS of the
    tuning half; default the effect) vs budget spent, every trial per method, with the two
    references; a diverged trial's curve stops where it diverged, marked at the top."""
    refs = trials[trials.status == "reference"].set_index("method")
    methods = [m for m in dict.fromkeys(history.method)]
    col = curve_key if curve_key in history and history[curve_key].notna().any() else "effect"
    diverged = set(trials[trials.get("diverged", pd.Series(False, index=trials.index)).fillna(False)
                          .astype(bool)].trial_id)
    fig, axes = grid(max(1, len(methods)), "budget spent (fraction of θ_initial's training compute)",
                      curve_label if col == curve_key and curve_label else effect_label)
    for ax, m in zip(axes, methods):
        h = history[history.method == m]
        best = trials[(trials.method == m) & trials.is_best.astype(bool)].trial_id.tolist()
        ends = []
        for tid, g in h.groupby("trial_id"):
            g = g.sort_values("report")
            y = g[col].astype(float).where(~off_scale(g[col]))
            ax.plot(g.budget_spent, y, lw=2 if tid in best else 0.8, alpha=1 if tid in best else 0.5,
                    marker="o", ms=2, color="tab:blue" if tid in best else "tab:gray",
                    label="best trial" if tid in best else "trials")
            if tid in diverged:
                ends.append(float(g.budget_spent.iloc[-1]))
        for ref, style in REF_STYLE.items():
            if ref in refs.index and not pd.isna(refs.loc[ref, col]):
                ax.axhline(float(refs.loc[ref, col]), **style)
        if ends:
            freeze(ax)
            _at_top_edge(ax, ends, marker="v", s=40, color="tab:red", label="diverged (where it stopped)")
        ax.set_title(m, fontsize=9)
    figure_legend(fig, axes)
    return save(fig, out / "gus_vs_budget.png")


def accuracy_vs_gus(trials: pd.DataFrame, floor: float, out: Path, effect_label: str = "poison effect") -> Path:
    """Validation accuracy vs the effect the search minimised, every finished trial, Pareto front
    joined; a diverged run has no effect to plot: it is marked at the panel's right edge."""
    runs = trials[trials.status == "finished"]
    methods = list(dict.fromkeys(runs.method))
    fig, axes = grid(max(1, len(methods)), effect_label, "validation accuracy")
    refs = trials[trials.status == "reference"].set_index("method")
    for ax, m in zip(axes, methods):
        g = runs[runs.method == m]
        bad = off_scale(g.effect) | (g.diverged.fillna(False).astype(bool).to_numpy() if "diverged" in g else False)
        real, div = g[~bad], g[bad]
        ax.scatter(real.effect.astype(float), real.val_acc.astype(float), s=14, color="tab:gray", label="trials")
        front = real[real.pareto.astype(bool)].sort_values("effect")
        ax.plot(front.effect, front.val_acc, color="tab:blue", marker="o", ms=4, label="Pareto front")
        if math.isfinite(floor):
            ax.axhline(floor, color="tab:orange", lw=0.8, label="accuracy floor")
        for ref, style in REF_STYLE.items():
            if ref in refs.index and not pd.isna(refs.loc[ref, "effect"]):
                ax.scatter([float(refs.loc[ref, "effect"])], [float(refs.loc[ref, "val_acc"])], marker="*",
                           s=60, color=style["color"], label=style["label"])
        ax.set_title(m + (f" ({len(div)} diverged)" if len(div) else ""), fontsize=9)
        if len(div):
            freeze(ax)
            _at_right_edge(ax, div.val_acc.astype(float), **DIVERGED_STYLE)
    figure_legend(fig, axes)
    return save(fig, out / "accuracy_vs_gus.png")


def mia_vs_gus(verdict: pd.DataFrame, out: Path, column: str, label: str) -> Path:
    """TPR at 1 % FPR: the loss-threshold MIA next to the attack's own per-sample test (`column`
    of the verdict table, `Attack.tpr_column`), per method."""
    v = verdict[verdict[column].notna()] if column in verdict else verdict.iloc[:0]
    x = np.arange(len(v))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(v) + 2), 3.2), layout="constrained")
    ax.bar(x - 0.2, v.mia_tpr.astype(float), 0.4, label="loss-threshold MIA")
    ax.bar(x + 0.2, v[column].astype(float), 0.4, label=label)
    ax.axhline(0.01, color="k", lw=0.8, ls="--", label="FPR = 1 %")
    ax.set_xticks(x, v.method, rotation=30, fontsize=8)
    ax.set_ylabel("TPR at 1 % FPR")
    ax.legend(fontsize=7)
    return save(fig, out / "mia_vs_gus.png")


def optimisation_history(trials: pd.DataFrame, out: Path) -> Path:
    """Objective per trial in the order trials were created, with the running best. Runs below the
    accuracy floor (objective > INFEASIBLE) and diverged runs have penalty values, not
    measurements: they are marked at the top edge instead of stretching the axis."""
    runs = trials[trials.status.isin(["finished", "stopped"])].copy()
    methods = list(dict.fromkeys(runs.method))
    fig, axes = grid(max(1, len(methods)), "trial (in creation order)", "objective (effect of runs above the floor)")
    for ax, m in zip(axes, methods):
        g = runs[runs.method == m].sort_values("order")
        y = g.objective.astype(float).to_numpy()
        x = np.arange(1, len(y) + 1)
        ok = ~off_scale(y)
        ax.scatter(x[ok], y[ok], s=12, color="tab:gray", label="trial")
        run_best = np.minimum.accumulate(np.where(ok, y, np.inf))
        ax.plot(x, np.where(np.isfinite(run_best), run_best, np.nan), color="tab:blue", label="running best")
        ax.set_xlim(0.5, len(y) + 0.5)
        freeze(ax)
        below = ~ok & np.isfinite(y) & (y < DIVERGED)
        if below.any():
            _at_top_edge(ax, x[below], marker="v", s=30, color="tab:orange", label="below the accuracy floor")
        if (~ok & ~below).any():
            _at_top_edge(ax, x[~ok & ~below], marker="x", s=30, color="tab:red", label="diverged")
        ax.set_title(m, fontsize=9)
    figure_legend(fig, axes)
    return save(fig, out / "optimisation_history.png")


def param_importances(importances: dict[str, dict[str, float]], out: Path) -> Path:
    """fANOVA importances (Optuna) of each method's searched parameters."""
    methods = list(importances)
    fig, axes = grid(max(1, len(methods)), "importance (fANOVA, sums to 1)")
    for ax, m in zip(axes, methods):
        imp = importances[m]
        if not imp:
            ax.text(0.5, 0.5, "too few finished trials", ha="center", va="center", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            names = list(imp)[::-1]
            ax.barh(names, [imp[n] for n in names], color="tab:blue")
            ax.tick_params(axis="y", labelsize=7)
        ax.set_title(m, fontsize=9)
    return save(fig, out / "param_importances.png")
