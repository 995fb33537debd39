"""Figure plumbing every figure of raysweep shares: the panel grid, one legend per figure, the
reference lines' style, off-scale values, and `save` (the PNG and its `describe` sidecar, both atomic)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .artifacts import atomic_write, atomic_write_text  # noqa: E402
from .objective import EFFECT_CAP  # noqa: E402

REF_STYLE = {"none": dict(color="tab:red", ls="--", label="θ_initial (none)"),
             "retrain": dict(color="tab:green", ls=":", label="θ_retrain")}


def grid(n: int, xlabel: str = "", ylabel: str = "", width: float = 3.2, height: float = 2.6):
    """n panels, at most 4 a row, one shared axis label per figure (never one per panel)."""
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.5), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    if xlabel:
        fig.supxlabel(xlabel, fontsize=9)
    if ylabel:
        fig.supylabel(ylabel, fontsize=9)
    return fig, list(axes.flat[:n])


def figure_legend(fig, axes) -> None:
    """One legend for the figure (above the panels), with every label any panel drew."""
    seen = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside upper center", ncol=min(6, len(seen)), fontsize=7,
                   frameon=False)


def describe(fig) -> list[dict]:
    """What a figure shows, panel by panel: its title, axis labels and how much data it draws (lines
    with their point counts, scatter points, bars, reference lines). Kept beside each PNG so tests and
    users can check a figure's content without reading pixels."""
    panels = []
    for ax in fig.axes:
        if not ax.axison:
            continue
        lines = ax.get_lines()
        panels.append({"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                       "xlim": [float(v) for v in ax.get_xlim()], "ylim": [float(v) for v in ax.get_ylim()],
                       "lines": len(lines), "line_points": int(sum(len(ln.get_xdata()) for ln in lines)),
                       "points": int(sum(len(c.get_offsets()) for c in ax.collections
                                         if hasattr(c, "get_offsets"))),
                       "edge_points": int(sum(len(c.get_offsets()) for c in ax.collections
                                              if c.get_gid() == "edge")),
                       "bars": len(ax.patches), "texts": len(ax.texts),
                       "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []})
    return panels


def describe_figure(fig, name: str) -> dict:
    """The panels plus the figure's shared axis labels and legend."""
    sup = lambda t: t.get_text() if t is not None else ""  # noqa: E731
    return {"figure": name, "xlabel": sup(getattr(fig, "_supxlabel", None)),
            "ylabel": sup(getattr(fig, "_supylabel", None)),
            "legend": [t.get_text() for lg in fig.legends for t in lg.get_texts()], "panels": describe(fig)}


def save(fig, path: Path) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    atomic_write_text(path.with_suffix(".json"), json.dumps(describe_figure(fig, path.name), indent=1))
    plt.close(fig)
    return path


def off_scale(values) -> np.ndarray:
    """True for values that are no measurement: NaN/inf and the sweep's penalty sentinels (a diverged
    run's effect, an objective below the accuracy floor), all above EFFECT_CAP."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    return ~np.isfinite(v) | (np.abs(v) > EFFECT_CAP)


def freeze(ax) -> None:
    """Fix the panel's limits where they are, so markers drawn at its edges do not move them."""
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
