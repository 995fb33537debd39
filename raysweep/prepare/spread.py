"""`raysweep prepare --seeds N`: the scenario on N seeds, and whether its poison shows on each.

Seed s, s+1, ..., s+N-1 of the scenario (new poisons, initialisation and data order; each a cached
artifact, built once). For every seed, θ_initial and θ_retrain are tested by the attack's own
verdict test against θ_retrain (`Attack.verdict_evidence` on the manifest's figures), with the
attack's own columns (`Attack.spread_columns`); then mean, min and max over the seeds.
A preset is fit for use when θ_initial shows the effect on every seed (`takes`: the attack's
`seed_takes`, by default p below its `takes_level`) and θ_retrain does not. An attack whose units are
fresh scenarios (`pools_seeds`: gradient matching, one target per seed) is also tested pooled over
the seeds, as the report tests it.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from .. import defaults as D
from ..attacks import ATTACKS
from ..config import ScenarioConfig
from ..errors import check_number
from .scenario import prepare

MODELS = {"initial": "none", "retrain": "retrain"}  # manifest name -> the references' method name


def seed_configs(cfg: ScenarioConfig, n: int) -> list[ScenarioConfig]:
    check_number("seeds", n, lo=1, hi=D.MAX_SEEDS, integer=True, what="scenario seeds to prepare, each a full build")
    return [replace(cfg, seed=cfg.seed + i) for i in range(n)]


def reference_rows(manifest: dict) -> list[dict]:
    """θ_initial and θ_retrain of one prepared scenario: accuracy, the attack's effect and the p of
    its own test against θ_retrain, and the attack's columns."""
    cls = ATTACKS.get(manifest["config"]["attack"], "attack")
    metrics = manifest["metrics"]
    refs = {MODELS[w]: pd.DataFrame([{**metrics[w], "method": MODELS[w], "scenario": manifest["hash"],
                                      "seed": None}]) for w in MODELS}
    ctx = {"alpha": D.ALPHA, "delta": D.MARGIN, "n_test": manifest.get("n_test"),
           "k_half": metrics["initial"].get("holdout_k")}
    rows = []
    for which, method in MODELS.items():
        ev = cls.verdict_evidence(refs[method], refs, D.MARGIN, ctx)
        m = metrics[which]
        rows.append({"seed": manifest["seed"], "model": f"θ_{which}", "hash": manifest["hash"],
                     "test_acc": m.get("test_acc"), "effect": ev.effect, "p": ev.p_fails,
                     **{c: m.get(c) for c in cls.spread_columns},
                     "prepare_s": (manifest.get("wall_s") or {}).get("prepare_s") if which == "initial" else None})
    return rows


def takes(rows: pd.DataFrame, attack: str) -> pd.Series:
    """Per seed: θ_initial shows the poison by the attack's own rule (`Attack.seed_takes`)."""
    cls = ATTACKS.get(attack, "attack")
    return cls.seed_takes(rows[rows.model == "θ_initial"].set_index("seed"))


def pooled_line(rows: pd.DataFrame, attack: str) -> str:
    """The attack's own test of θ_initial against θ_retrain over every seed's scenario at once (each
    seed one unit), for an attack whose units are fresh scenarios; "" for the others."""
    cls = ATTACKS.get(attack, "attack")
    if not cls.pools_seeds:
        return ""
    refs = {method: rows[rows.model == f"θ_{which}"].rename(columns={"hash": "scenario"})
            for which, method in MODELS.items()}
    ev = cls.verdict_evidence(refs["none"], refs, D.MARGIN, {"alpha": D.ALPHA})
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    return (f"\npooled over the {ev.n} seed(s) ({cls.verdict_unit}, the report's test): {cls.effect_header} = "
            f"{fmt(ev.effect)} (θ_retrain: {fmt(ev.base)}), one-sided p = {fmt(ev.p_fails)}")


def spread(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over the seeds of every numeric column, per model."""
    num = [c for c in rows.columns if c not in ("seed", "model", "hash") and
           pd.to_numeric(rows[c], errors="coerce").notna().any()]
    out = []
    for model, g in rows.groupby("model", sort=False):
        for c in num:
            v = pd.to_numeric(g[c], errors="coerce").dropna()
            if not len(v):
                continue
            out.append({"model": model, "figure": c, "mean": v.mean(), "min": v.min(), "max": v.max(), "seeds": len(v)})
    return pd.DataFrame(out)


def prepare_seeds(cfg: ScenarioConfig, n: int, store, device, data_dir=None, log=None,
                  references: str = "auto") -> pd.DataFrame:
    """Prepare (or find) the scenario on n seeds; one row per seed and reference model."""

    rows = []
    for c in seed_configs(cfg, n):
        manifest, _ = prepare(c, store, device, data_dir, log=log, references=references)
        rows += reference_rows(manifest)
    return pd.DataFrame(rows)


def per_seed_table(rows: pd.DataFrame) -> str:
    return rows.drop(columns=["hash"]).to_string(index=False, float_format=lambda v: f"{v:+.3g}", na_rep="-")


def takes_line(rows: pd.DataFrame, attack: str) -> str:
    cls = ATTACKS.get(attack, "attack")
    ok = takes(rows, attack)
    return (f"θ_initial shows the poison ({cls.takes_rule}) on {int(ok.sum())} of {len(ok)} seed(s)"
            + ("" if ok.all() else f"; not on seed(s) {', '.join(str(s) for s in ok[~ok].index)}"))


def describe(rows: pd.DataFrame, attack: str) -> str:
    """The per-seed table, the spread, one line saying on how many seeds the poison shows, and for an attack
    that pools seeds (`pools_seeds`) its test over all of them."""
    sp = spread(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}")
    return (f"{per_seed_table(rows)}\n\nspread over {rows.seed.nunique()} seed(s):\n{sp}\n\n"
            + takes_line(rows, attack) + pooled_line(rows, attack))
