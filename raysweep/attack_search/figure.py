"""The attack-parameter plane coloured by verdict, one panel per method, and the report's section."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..artifacts import read_json
from ..errors import ArtifactError
from ..plotting import figure_legend, grid, save
from . import PLAN_FILE
from .plan import Axis

OUTCOME_STYLE = {"fails": dict(color="tab:red", marker="o", label="fails"),
                 "inconclusive": dict(color="tab:gray", marker="s", label="inconclusive"),
                 "removes": dict(color="tab:green", marker="^", label="removes"),
                 "signal destroyed": dict(color="tab:orange", marker="D", label="signal destroyed")}
NOT_STEALTHY = dict(color="black", marker="x", label="not stealthy (no sweep)")
NOT_TAKEN = dict(facecolors="none", edgecolors="black", marker="o", s=90, label="θ_initial: no significant effect")


def plane_figure(points: pd.DataFrame, verdicts: pd.DataFrame, axes: list[Axis], out: Path) -> Path:
    """x: the first searched parameter; y: the second, or the number of poisons k when one is searched
    (then fixed by the scenario, so one row of points). Ringed points: the attack did not take there."""
    x = axes[0]
    y = axes[1].name if len(axes) > 1 else "k" if x.name != "k" else None
    methods = list(dict.fromkeys(verdicts.method)) or ["(no point judged)"]
    fig, panels = grid(len(methods), x.name, y or "")
    by_point = points.set_index("point")

    def yv(df: pd.DataFrame):
        return [0.0] * len(df) if y is None else by_point.loc[df.point, y].to_numpy()

    bad = points[points.stealthy.eq(False)] if "stealthy" in points else points.iloc[:0]
    weak = points[points.took.eq(False)] if "took" in points else points.iloc[:0]
    for ax, m in zip(panels, methods):
        v = verdicts[verdicts.method == m]
        for outcome, style in OUTCOME_STYLE.items():
            g = v[v.outcome == outcome]
            if len(g):
                ax.scatter(g[x.name], yv(g), **style)
        for df, style in ((bad, NOT_STEALTHY), (weak, NOT_TAKEN)):
            if len(df):
                ax.scatter(df[x.name], yv(df), **style)
        if x.log:
            ax.set_xscale("log")
        if y is None:
            ax.set_yticks([])
        elif len(axes) == 1 or axes[1].log:
            ax.set_yscale("log")
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    figure_legend(fig, panels)
    return save(fig, Path(out) / "attack_plane.png")


def report_blocks(root: str | Path, out: Path) -> list[tuple]:
    """The "Attack search" section when ROOT holds its tables, else nothing."""
    root = Path(root)
    need = [root / f"{n}.csv" for n in ("attack_points", "attack_verdicts")] + [root / PLAN_FILE]
    if not all(f.is_file() for f in need):
        return []
    plan = read_json(root / PLAN_FILE, f"run the attack search's command again to rewrite {PLAN_FILE}")
    try:
        axes = [Axis(**a) for a in plan["axes"]]
        inner = {k: plan["inner"][k] for k in ("methods", "trials", "budget", "alpha", "margin", "seeds")}
        for key in ("mode", "stealth", "attack", "scenario"):
            if key not in plan:
                raise KeyError(key)
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{root / PLAN_FILE} lacks {e} or holds it in the wrong form: run the attack search's "
                            "command again with a new --name") from None
    points, verdicts = (pd.read_csv(f) for f in need[:2])
    fig = plane_figure(points, verdicts, axes, out)
    space = ", ".join(f"{a.name} in [{a.lo:g}, {a.hi:g}]{' (log)' if a.log else ''}" for a in axes)
    mode = ("worst case: maximise the held-out effect the best tuned method leaves (the minimum over methods of "
            "|effect|), TPE with stealth as Optuna's constraint" if plan["mode"] == "worst" else
            "boundary: bisection along the axis of each method's bracket where its verdict stops being \"fails\"")
    blocks = [("h", 2, "Attack search"),
              ("p", f"Attack {plan['attack']} on scenario {plan.get('scenario_name') or ''} ({plan['scenario']}), "
                    f"searched over {space}; {mode}. {len(points)} outer point(s), each a prepared scenario and a "
                    f"full sweep of {', '.join(inner['methods'])} ({inner['trials']} trial(s) per method, budget cap "
                    f"{inner['budget']:g}), judged as the report judges (α = {inner['alpha']:g}, δ = "
                    f"{inner['margin']:g}) on {inner['seeds']} fresh seed(s) per best configuration"
                    + (" (0: the selected trial judged on its held-out half, less power than the report's "
                       "fresh runs)" if not inner["seeds"] else "") + f". Stealth: θ_initial's test accuracy at most "
                    f"{plan['stealth']:g} below the clean model's (θ_retrain's). Tables: attack_points.csv, "
                    "attack_verdicts.csv; docs/attack_search.md."),
              ("table", points.drop(columns=[c for c in ("repeat_of",) if c in points], errors="ignore"))]
    bfile = root / "attack_boundary.csv"
    if plan["mode"] == "boundary" and bfile.is_file():
        b = pd.read_csv(bfile)
        if len(b):
            blocks += [("p", "Where each method's verdict stops being \"fails\" (a point that did not take can only "
                             "be \"inconclusive\": it says nothing about unlearning; attack_points.csv, `took`):"),
                       ("table", b)]
    blocks.append(("img", fig.name, "the attack-parameter plane, one panel per method, each outer point coloured by "
                   "its verdict; crosses: not stealthy; rings: θ_initial showed no significant effect"))
    return blocks
