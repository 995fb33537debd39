"""The budget curve's figure and its section of `raysweep report`, drawn from the curve's tables alone.

Two panels against the budget (log x-axis), one line per method: the held-out poison effect pooled
over the seeds at each budget with its 95 % band (GUS for Gaussian poisons, else the attack's own
effect: `Attack.effect_header`), and test accuracy (mean over the seeds). θ_initial (budget 0, which
a log axis cannot show) is a horizontal reference line with a marker at the panel's left edge;
θ_retrain is a star at 1.0, retraining's compute. The sidecar JSON (plotting.py `describe`)
adds `series`: each panel's plotted lines, label -> x and y, read back from the figure.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import atomic_write_text
from ..plotting import REF_STYLE, figure_legend, freeze, grid, off_scale, save
from .table import outcome_grid, sanity, summary_view

INITIAL_LABEL = "θ_initial (budget 0: left edge)"
RETRAIN_LABEL = "θ_retrain (retraining's compute, 1.0)"
# the methods' colours: none of the references' (red, green) or the accuracy floor's (orange)
METHOD_COLORS = ["tab:blue", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "black"]


def _ref(verdict: pd.DataFrame, name: str, col: str) -> float | None:
    v = pd.to_numeric(verdict.loc[verdict.method == name, col], errors="coerce").dropna()
    return float(v.iloc[0]) if len(v) else None


def _series(fig) -> list[dict]:
    """Each panel's labelled lines as drawn: label -> {x, y} (NaN as null)."""
    out = []
    for ax in fig.axes:
        if not ax.axison:
            continue
        lines = {}
        for ln in ax.get_lines():
            label = ln.get_label()
            if label.startswith("_"):
                continue
            x = [float(v) for v in np.asarray(ln.get_xdata(), float)]
            y = [None if not np.isfinite(v) else float(v) for v in np.asarray(ln.get_ydata(), float)]
            lines[label] = {"x": x, "y": y}
        out.append({"title": ax.get_title(), "xscale": ax.get_xscale(), "series": lines})
    return out


def curve_figure(verdict: pd.DataFrame, out: Path, effect_header: str = "effect", tolerance: float | None = None,
                 name: str = "curve.png") -> Path:
    """The figure of a per-budget verdict table (table.py `budget_verdicts`), written to out/name."""
    tuned = verdict[verdict.status != "reference"].copy()
    budgets = sorted(pd.to_numeric(tuned.budget, errors="coerce").dropna().unique())
    fig, axes = grid(2, "budget (fraction of θ_initial's training compute, log scale)", width=4.6, height=3.4)
    panels = ((axes[0], "effect", f"held-out poison effect: {effect_header}", True),
              (axes[1], "test_acc", "test accuracy (mean over seeds)", False))
    lo_x = (min(budgets) if budgets else 0.01) / 1.6
    colors = METHOD_COLORS
    for ax, col, title, band in panels:
        for i, (m, g) in enumerate(tuned.groupby("method", sort=False)):
            g = g.sort_values("budget")
            x = g.budget.astype(float).to_numpy()
            y = pd.to_numeric(g[col], errors="coerce").to_numpy(float)
            y = np.where(off_scale(y), np.nan, y)
            c = colors[i % len(colors)]
            control = "control" in g and g.control.astype(str).str.lower().eq("true").any()
            ax.plot(x, y, marker="s" if control else "o", ms=4, color=c, ls="--" if control else "-",
                    label=f"{m} (sanity row)" if control else m)
            if band and {"effect_lo", "effect_hi"} <= set(g.columns):
                lo = pd.to_numeric(g.effect_lo, errors="coerce").to_numpy(float)
                hi = pd.to_numeric(g.effect_hi, errors="coerce").to_numpy(float)
                if np.isfinite(lo).any():
                    ax.fill_between(x, lo, hi, color=c, alpha=0.15, lw=0, label="95 % CI" if i == 0 else None)
        init, ret = _ref(verdict, "none", col), _ref(verdict, "retrain", col)
        if init is not None:
            ax.axhline(init, **{**REF_STYLE["none"], "label": INITIAL_LABEL})
        if ret is not None:
            ax.scatter([1.0], [ret], marker="*", s=90, color=REF_STYLE["retrain"]["color"], zorder=6,
                       label=RETRAIN_LABEL)
        ax.axvline(1.0, color="tab:gray", lw=0.6, ls=":")
        if col == "test_acc" and ret is not None and tolerance is not None:
            ax.axhline(ret - tolerance, color="tab:orange", lw=0.8, label="accuracy floor (θ_retrain − tolerance)")
        if col == "effect":
            ax.axhline(0.0, color="k", lw=0.5, label="_zero")
        ax.set_xscale("log")
        ax.set_xlim(lo_x, 1.6)
        ax.set_xticks(budgets + ([1.0] if 1.0 not in budgets else []))
        ax.set_xticklabels([f"{b:g}" for b in budgets + ([1.0] if 1.0 not in budgets else [])], fontsize=7)
        ax.minorticks_off()
        if init is not None:
            freeze(ax)
            ax.scatter([0.0], [init], transform=ax.get_yaxis_transform(), clip_on=False, zorder=6, gid="edge",
                       marker="<", s=40, color=REF_STYLE["none"]["color"])
        ax.set_title(title, fontsize=9)
    figure_legend(fig, axes)
    series = _series(fig)  # before save closes the figure
    path = save(fig, Path(out) / name)
    side = path.with_suffix(".json")
    atomic_write_text(side, json.dumps({**json.loads(side.read_text()), "series": series}, indent=1))
    return path


def report_blocks(sweep: str | Path, out: Path, effect_header: str = "effect",
                  tolerance: float | None = None) -> list[tuple]:
    """The report's "Budget curve" section when SWEEP/curve/ holds the curve's tables, else nothing:
    the figure (drawn again into the report's folder from curve_verdict.csv) and the summary table."""
    curve = Path(sweep) / "curve"
    if not any((curve / f"curve.{ext}").is_file() for ext in ("parquet", "csv")):
        return []
    head = [("h", 2, "Budget curve")]
    if not (curve / "curve_verdict.csv").is_file() or not (curve / "curve_summary.csv").is_file():
        return head + [("p", f"The curve's tables in {curve} are incomplete (no curve_verdict.csv or "
                             "curve_summary.csv): run `raysweep curve` again to finish them.")]
    verdict = pd.read_csv(curve / "curve_verdict.csv")
    summary = pd.read_csv(curve / "curve_summary.csv")
    runs = verdict[verdict.status != "reference"]
    fig = curve_figure(verdict, out, effect_header, tolerance)
    n = pd.to_numeric(runs.runs, errors="coerce").max() if len(runs) else 0
    plan = json.loads((curve / "curve_plan.json").read_text()) if (curve / "curve_plan.json").is_file() else {}
    per = plan.get("trials_per_budget") or {}
    ran = ", ".join(f"{n} at {b}" for b, n in per.items()) if isinstance(per, dict) else str(per)
    how = (f"the best of a search run at that budget (trials per method: {ran}; the sweep's search and early "
           "stopping with its cap at the budget)" if plan.get("mode") == "tune" else
           "the sweep's own pick (tuned at its cap, not at the budget)")
    return head + [
        ("p", f"At each budget, each method's configuration is {how}, re-run on fresh unlearning seeds (up to "
              f"{0 if pd.isna(n) else int(n)} per method and budget), next to θ_initial (budget 0), θ_retrain "
              "(retraining from scratch: 1.0 of θ_initial's training compute, up to the poisons) and the sanity "
              "rows (scratch: retraining within the budget; euk_all: EU-k with every layer at 1.0). At each budget "
              "the seeds are pooled and judged like the verdict above (Holm over the methods at that budget; the "
              "sanity rows a family of their own; accuracy a separate condition). Tables: curve/curve.parquet "
              "(every run), curve/curve_verdict.csv (the verdict at each budget); docs/curve.md."),
        ("p", sanity(verdict)["line"]),
        ("table", summary_view(summary)),
        ("p", "The outcome at each budget (each budget's seeds pooled):"),
        ("table", outcome_grid(verdict)),
        ("img", fig.name, f"held-out poison effect ({effect_header}, pooled over seeds, 95 % band) and test "
                          "accuracy against the budget (log scale), one line per method; θ_initial at the left "
                          "edge, θ_retrain at 1.0"),
    ]
