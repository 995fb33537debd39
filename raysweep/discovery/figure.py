"""The discovery figure and the report's "Partial discovery and relearning" section."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..plotting import REF_STYLE, figure_legend, grid, save
from . import DIR

PART_STYLE = {"found": dict(color="tab:blue", marker="o", label="found (requested)"),
              "hidden": dict(color="tab:orange", marker="s", label="hidden (left in the retain set)"),
              "all": dict(color="black", marker=".", ls=":", label="all held-out poisons")}


def discovery_figure(verdict: pd.DataFrame, out: Path, effect_header: str = "effect") -> Path:
    """One panel per method: the held-out effect (pooled over seeds, 95 % band) of the found, the hidden
    and all poisons against the share found, after unlearning; θ_initial and θ_retrain as lines."""
    v = verdict[verdict.phase == "unlearned"]
    tuned = v[v.status == "tuned"]
    methods = list(dict.fromkeys(tuned.method))
    fig, axes = grid(max(1, len(methods)), "share of the poisons found (f)", effect_header)
    refs = v[(v.status == "reference") & (v.part == "all")].drop_duplicates("method").set_index("method")
    for ax, m in zip(axes, methods):
        g = tuned[tuned.method == m]
        for part, style in PART_STYLE.items():
            p = g[g.part == part].sort_values("fraction")
            if len(p):
                ax.plot(p.fraction, p.effect, **style)
                ax.fill_between(p.fraction, p.effect_lo, p.effect_hi, color=style["color"], alpha=0.15)
        for ref, style in REF_STYLE.items():
            if ref in refs.index:
                ax.axhline(refs.loc[ref, "effect"], **style)
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    figure_legend(fig, axes)
    return save(fig, Path(out) / "discovery.png")


def report_blocks(sweep: str | Path, out: Path, effect_header: str = "effect") -> list[tuple]:
    """The section when SWEEP/discovery/ holds its tables, else nothing."""
    root = Path(sweep) / DIR
    if not (root / "discovery_summary.csv").is_file() or not (root / "discovery_verdict.csv").is_file():
        return []
    summary = pd.read_csv(root / "discovery_summary.csv")
    verdict = pd.read_csv(root / "discovery_verdict.csv")
    if not len(summary):
        return []
    fig = discovery_figure(verdict, out, effect_header)
    probe = "after probe" in summary and summary["after probe"].notna().any()
    ret = pd.DataFrame()
    if (root / "discovery.csv").is_file():
        runs = pd.read_csv(root / "discovery.csv")
        ret = runs[runs.method == "retrain"] if "method" in runs else ret
    control = []
    if probe and len(ret) and "relearn_holdout_gus" in ret:
        g0, g1 = (pd.to_numeric(ret[c], errors="coerce").mean() for c in ("holdout_gus", "relearn_holdout_gus"))
        control = [("p", f"θ_retrain probed the same way (it never saw a poison, so nothing can come back): held-out "
                         f"GUS {g0:+.3f} before the probe, {g1:+.3f} after ({len(ret)} seed(s)).")]
    return [("h", 2, "Partial discovery and relearning"),
            ("p", "Each method's best configuration re-run with only a share f of the poisons requested (the "
                  "undiscovered rest left in the retain set; θ_initial and θ_retrain unchanged), judged like the "
                  "verdict above on the held-out poisons found, hidden, and all of them"
                  + ("; then the relearning probe (fine-tuning on the poison-free retain set) and the verdict "
                     "again: an effect returns when it was not shown to remain before the probe and is after it"
                     if probe else "") + ". Tables: discovery/discovery.parquet, discovery/discovery_verdict.csv; "
                  "docs/discovery.md."),
            ("table", summary), *control,
            ("img", fig.name, f"held-out effect ({effect_header}, 95 % band) of the found, hidden and all poisons "
                              "against the share found, one panel per method")]
