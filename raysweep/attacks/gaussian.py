"""Gaussian poisoning (Pawelczyk et al. 2025, Algorithm 1).

A uniform random subset of exactly k training samples gets fixed noise xi ~ N(0, eps^2 I); labels
are kept and nothing is clipped. `space="input"` (default) draws the noise in the model's input
representation (normalised images); `space="pixel"` draws it in [0, 1] pixel units and divides it by
the per-channel std, GUS then scoring in pixel space (gradients times 1/std), so the null stays
exactly N(0, 1) either way. For text (token ids) the noise lives on the input token embeddings
([k, L, D]), only at real tokens (pad positions get none), and the model adds it after `embed`.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..data.base import Dataset
from ..errors import ConfigError, check_number
from ..stats.evidence import Evidence, mean_of, needed_normal, per_scenario, unit_evidence
from ..stats.exact import norm_ppf, t_ppf, tost
from ..stats.power import gaussian_power
from ..stats.scores import score_tests
from . import ATTACKS
from .base import Attack, PoisonedSet, Searchable

DEFAULT_EPS = math.sqrt(0.32)  # eps^2 = 0.32, the paper's CIFAR-10 figure


def _n_from(rows: pd.DataFrame) -> int | None:
    """The number of held-out poisons behind a (GUS, z) summary: n = (z / GUS)^2."""
    g, z = mean_of(rows, "holdout_gus"), mean_of(rows, "holdout_z")
    return round((z / g) ** 2) if g and z else None


def _vectors(rows: pd.DataFrame, col: str):
    """Each run's vector in column `col` (lists), or None when a run lacks one or their lengths differ."""
    if col not in rows or not len(rows):
        return None
    vecs = list(rows[col])
    if any(not isinstance(v, (list, tuple, np.ndarray)) or len(v) == 0 for v in vecs) or \
            len({len(v) for v in vecs}) != 1:
        return None
    return np.asarray(vecs, dtype=float)


def _spread(rows: pd.DataFrame) -> float | None:
    """The variance of the per-run scores (every run's every held-out poison, not averaged over runs:
    averaging correlated runs would shrink a spread the poison left)."""
    parts = [_vectors(g, "scores") for g in per_scenario(rows).values()]
    if any(p is None for p in parts) or not parts:
        return None
    return float(np.concatenate([p.ravel() for p in parts]).var(ddof=1))


def _canaries(mine: pd.DataFrame, retrain: pd.DataFrame):
    """(the model's canary scores averaged over its runs, θ_retrain's on the same canaries), pooled over
    the scenarios where both were scored; (None, None) without canaries."""
    ret = per_scenario(retrain)
    a, b = [], []
    for scen, g in per_scenario(mine).items():
        v, r = _vectors(g, "canary_scores"), _vectors(ret.get(scen, pd.DataFrame()), "canary_scores")
        if v is not None and r is not None and v.shape[1] == r.shape[1]:
            a.append(v.mean(axis=0))
            b.append(r[0])
    return (np.concatenate(a), np.concatenate(b)) if a else (None, None)


def _pooled_scores(rows: pd.DataFrame):
    """Per-poison held-out scores averaged over the runs of each scenario, concatenated over
    scenarios; None when a run lacks them."""
    parts = [_vectors(g, "scores") for g in per_scenario(rows).values()] if len(rows) else []
    if not parts or any(p is None for p in parts):
        return None
    return np.concatenate([p.mean(axis=0) for p in parts])


@ATTACKS.register("gaussian")
class GaussianPoison(Attack):
    name = "gaussian"
    metric = "holdout_z"
    tpr_column, tpr_label = "holdout_tpr_two", "Gaussian test (|I| > 2.576)"
    checkpoint_keys = ('tune_gus', 'tune_z')
    curve_key, curve_label = "tune_gus", "GUS (tuning half)"
    takes_level = 0.0027  # |z| > 3 on the held-out half (issue 11's bar for a preset)
    takes_rule = "held-out half |z| > 3"
    spread_columns = ("z", "holdout_z", "control_z", "holdout_control_z")
    discoverable = True
    legacy = {"canaries": 0}  # scenarios made before canaries existed
    # attack-search: the noise variance eps^2 (the paper's axis; `eps` = its root) and the number of poisons
    # (at least 2: a tuning and a held-out half); the data's own bound on k is checked per scenario
    searchable = {"eps2": Searchable("float", 1e-4, 16.0, log=True, default=(0.01, 1.0)),
                  "k": Searchable("int", 2, 10**7, log=True, default=(32, 1024))}

    @classmethod
    def searched_params(cls, base: dict, values: dict) -> dict:
        p = {**base, **{k: v for k, v in values.items() if k != "eps2"}}
        if "eps2" in values:
            p["eps"] = math.sqrt(float(values["eps2"]))
        if "k" in values:  # k replaces a scenario's fraction (check refuses both)
            p.pop("fraction", None)
        return p

    @classmethod
    def stored_params(cls, params: dict, stored: set[str]) -> dict:
        if "canaries" not in params and "canary_idx" not in stored:
            return {**params, "canaries": 0}
        return params

    @classmethod
    def check(cls, params: dict) -> dict:
        allowed = {"k", "fraction", "eps", "space", "canaries"}
        cls.only(params, allowed)
        p = {"eps": DEFAULT_EPS, "space": "input", "canaries": "half", **params}
        if "k" in p and "fraction" in p and p["k"] is not None and p["fraction"] is not None:
            raise ConfigError("attack.k", p["k"], "give k or fraction, not both")
        if p.get("k") is None and p.get("fraction") is None:
            p["fraction"] = 0.05
        if p.get("k") is not None and (not isinstance(p["k"], int) or isinstance(p["k"], bool) or p["k"] < 1):
            raise ConfigError("attack.k", p["k"], "a positive integer")
        if p.get("fraction") is not None:
            check_number("attack.fraction", p["fraction"], lo=0, hi=1, lo_open=True, hi_open=True)
        check_number("attack.eps", p["eps"], lo=0, lo_open=True, what="the noise std; eps^2 = 0.32 by default")
        if p["space"] not in ("input", "pixel"):
            raise ConfigError("attack.space", p["space"], "input or pixel")
        c = p["canaries"]
        if c != "half" and (not isinstance(c, int) or isinstance(c, bool) or c < 0):
            raise ConfigError("attack.canaries", c, "a non-negative integer, or half (as many as the held-out "
                              "poisons, k // 2)")
        p["eps"] = float(p["eps"])
        return {k: v for k, v in p.items() if v is not None}

    def count(self, n: int) -> int:
        k = self.params.get("k")
        if k is None:
            k = max(1, round(self.params["fraction"] * n))
        if k > n:
            raise ConfigError("attack.k", k, f"at most the training set size n={n}")
        return int(k)

    def canaries(self, n: int) -> int:
        """Canaries: noised rows kept in the retain set, never requested (the verdict's positive control)."""
        k = self.count(n)
        c = self.params.get("canaries", 0)
        c = k // 2 if c == "half" else int(c)
        if k + c > n:
            raise ConfigError("attack.canaries", c, f"at most n - k = {n - k} (the clean training rows)")
        return c

    def check_data(self, data: Dataset) -> None:
        self.canaries(len(data.train))

    def build(self, data: Dataset, seed: int, env=None) -> dict[str, torch.Tensor]:
        n = len(data.train)
        k, c = self.count(n), self.canaries(n)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=g)
        idx = perm[:k].sort().values
        if data.kind == "text":  # noise on the input token embeddings of the real (non-pad) tokens
            if env is None:
                raise ConfigError("attack.name", self.name, "a scenario build for text (the embedding width)")
            with torch.no_grad():
                shape = tuple(env.new_model().embed(data.train.x[:1].to(env.device)).shape[1:])  # (L, D)
        else:
            shape = data.input_shape
        noise = self._draw(data, idx, shape, g)
        if not c:
            return {"poison_idx": idx, "noise": noise}
        # drawn after the poisons' noise from the same generator: a scenario's poisons do not depend on c
        cidx = perm[k:k + c].sort().values
        return {"poison_idx": idx, "noise": noise, "canary_idx": cidx, "canary_noise": self._draw(data, cidx, shape, g)}

    def _draw(self, data: Dataset, rows: torch.Tensor, shape: tuple, g: torch.Generator) -> torch.Tensor:
        noise = torch.randn((len(rows), *shape), generator=g) * self.params["eps"]
        if data.kind == "text":  # real tokens only
            noise *= (data.train.x[rows] >= 0).unsqueeze(-1).to(noise.dtype)
        return noise

    def apply(self, data: Dataset, stored: dict[str, torch.Tensor]) -> PoisonedSet:
        idx, noise = stored["poison_idx"].long(), stored["noise"]
        cidx = stored.get("canary_idx", torch.zeros(0, dtype=torch.long)).long()  # none in older scenarios
        cnoise = stored.get("canary_noise", noise[:0])
        rows, every = torch.cat([idx, cidx]), torch.cat([noise, cnoise])
        train, clean = data.train, data.train.x[idx]
        grad_scale = None
        shift = every
        if self.params["space"] == "pixel":
            if data.std is None:
                raise ConfigError("attack.space", "pixel", "pixel space needs an image dataset with a std")
            inv = (1.0 / data.std).view(-1, *([1] * (noise.dim() - 2)))
            shift, grad_scale = every * inv, inv
        if data.kind == "image":
            x = train.x.clone()
            x[rows] = train.x[rows] + shift
            train = replace(train, x=x)
        else:  # inputs that cannot carry the noise (token ids): the model adds it after embed
            slot = torch.full((len(train),), -1, dtype=torch.long)
            slot[rows] = torch.arange(rows.numel())
            train = replace(train, noise=shift, slot=slot)
        ps = PoisonedSet(train, idx, clean, noise, self.params["eps"], grad_scale, {"space": self.params["space"]})
        if len(cidx):
            ps.canary_idx, ps.canary_clean_x, ps.canary_noise = cidx, data.train.x[cidx], cnoise
        return ps

    # ---- the verdict (docs/verdict.md) -------------------------------------------------------
    verdict_unit = "held-out poisons"
    effect_header = "GUS (held-out)"
    verdict_columns = ("score_var", "canary_kept", "holdout_tpr_two", "mia_tpr")
    column_headers = {"score_var": "score variance", "canary_kept": "canaries kept",
                      "holdout_tpr_two": "TPR@1% (best trial)"}

    @classmethod
    def verdict_evidence(cls, mine, refs, margin_fraction, ctx) -> Evidence:
        """Units: the held-out poisons, each scored I_z by each run. Runs on one scenario share its
        poisons, so a poison's scores are averaged over the runs first (runs of one model are
        correlated through the same noise; the poisons are independent), then pooled over scenarios.
        The tests are raysweep/stats/scores.py's (docs/verdict.md): fails when the scores are shown
        not to be N(0, 1) (mean or spread), removes when mean, spread and the canaries all pass,
        signal destroyed when the canaries are shown to have lost their effect. θ_retrain's GUS is
        exactly N(0, 1/n) around 0, so the mean is compared with that known 0 rather than with
        θ_retrain's sampled mean, which would only add its noise (twice the variance)."""
        init = _pooled_scores(refs["none"])
        mine_x = _pooled_scores(mine)
        if mine_x is not None and init is not None and len(mine_x) > 1:
            a, b = _canaries(mine, refs["retrain"])
            margin = margin_fraction * abs(float(init.mean()))
            t = score_tests(mine_x, margin, margin_fraction, _spread(mine), a, b)
            ev = unit_evidence(mine_x, margin, True, null_sd=1.0, p_fails=t.p_fails)
            ev.p_removes, ev.p_destroyed = t.p_removes, t.p_destroyed
            ev.figures = {"score_var": t.variance, "canary_kept": t.canary_kept, "canary_n": t.n_canary,
                          "canary_gus": None if a is None else float(np.mean(a)),
                          "canary_ref": None if b is None else float(np.mean(b)), "p_spread": t.p_spread}
            if a is None:
                ev.note = "no canaries in this scenario's runs: the positive control was not checked"
        else:  # summaries only (tables without per-poison scores): GUS, z -> n
            g = mean_of(mine, "holdout_gus")
            gi = mean_of(refs["none"], "holdout_gus")
            n = int(ctx.get("k_half") or _n_from(mine) or _n_from(refs["none"]) or 0)
            if g is None or n < 2:
                return Evidence(note="not judged: missing figures")
            margin = margin_fraction * abs(gi) if gi is not None else None
            ev = Evidence(g, g - 1.96 / math.sqrt(n), g + 1.96 / math.sqrt(n), n, 1.0, 1.0, True, margin,
                          math.erfc(abs(g) * math.sqrt(n) / math.sqrt(2)),
                          tost(g, 1.0, n, margin) if margin is not None else None,
                          note="per-poison scores not in the tables: SD taken as 1, spread and canaries not tested")
        ev.per_run = [float(v) for v in pd.to_numeric(mine.get("holdout_gus"), errors="coerce").dropna()] \
            if "holdout_gus" in mine else []
        ev.runs, ev.scenarios = len(mine), len(per_scenario(mine))
        return ev

    @classmethod
    def power(cls, evidence: dict, ctx: dict) -> dict | None:
        """The power line's figures at this report's own n, canaries, θ_initial's effect, m, α, δ
        (raysweep/stats/power.py)."""
        ini = evidence.get("none")
        methods = [ev for name, ev in evidence.items() if name not in ("none", "retrain") and ev.n]
        if ini is None or ini.effect is None or not ini.n or not methods:
            return None
        # the methods' own sample: their held-out poisons and canaries (a method's runs may cover fewer
        # scenarios than θ_initial's, and carry no canaries where only the selected trial judges)
        n = int(np.median([ev.n for ev in methods]))
        nc = int(np.median([ev.figures.get("canary_n") or 0 for ev in methods]))
        refs = [ev.figures.get("canary_ref") for ev in methods if ev.figures.get("canary_ref") is not None]
        c0 = float(np.median(refs)) if refs and nc else None
        p_rem, p_fail = gaussian_power(n, float(ini.effect), ctx["m"], ctx["alpha"], ctx["delta"], nc if c0 else 0, c0)
        return {"removes": p_rem, "fails": p_fail, "n": n, "canaries": nc if c0 else 0, "unit": cls.verdict_unit,
                "margin": ini.margin}

    @classmethod
    def needed(cls, ev: Evidence, level: float) -> int | None:
        """As the base class, with the mean's test at half the level (its p is doubled beside the spread's)."""
        return needed_normal(ev, level, fails_level=level / 2)

    @classmethod
    def advice(cls, ev: Evidence, n: int | None) -> str:
        if n is None:
            return "no number of poisons decides at this effect"
        return (f"~{n} held-out poisons would decide (now {ev.n}; a scenario with k ≈ {2 * n}, or "
                f"--scenario-seeds {max(1, math.ceil(n * max(1, ev.scenarios) / max(1, ev.n)) - 1)}): "
                "more unlearning "
                "seeds barely help, the noise draws are the sample")

    @classmethod
    def verdict_text(cls, ctx: dict) -> str:
        a, m, n, ini = ctx["alpha"], ctx["m"], ctx["n"], ctx["initial"]
        if not n:
            return "The held-out GUS could not be computed."
        strict, loose = a / m, a
        # the mean's test runs at half the level (its p is doubled beside the spread's)
        floor_s, floor_l = norm_ppf(1 - strict / 4) / math.sqrt(n), norm_ppf(1 - loose / 4) / math.sqrt(n)
        margin = ini.margin
        text = (f"Poison effect: the GUS of the {n} held-out poisons (the tuning half chose the configuration; "
                f"each poison's score averaged over a method's runs). **Fails** (the effect is shown to remain): "
                f"two-sided z-test of GUS = 0 against the exact N(0, 1) null, Holm over {m} methods at "
                f"family-wise α = {a:g}; detection floor |GUS| ≥ {floor_s:.3f} at the strictest step (α/{m}), "
                f"{floor_l:.3f} at the loosest (α). ")
        if margin:
            best = margin - t_ppf(1 - strict, max(1, n - 1)) * (ini.sd or 1.0) / math.sqrt(n)
            text += (f"**Removes** (the effect is shown to be gone): two one-sided t-tests that |GUS| < the "
                     f"equivalence margin {margin:.3f} = δ {ctx['delta']:g} × |θ_initial's held-out GUS| "
                     f"{abs(ini.effect):.3f}, Holm over {m} methods at α = {a:g}; ")
            text += (f"with a per-poison SD near 1 this needs |GUS| ≤ {best:.3f} at the strictest step." if best > 0
                     else f"no method can be shown to remove the poison with {n} held-out poisons (about "
                          f"{math.ceil((norm_ppf(1 - strict) / margin) ** 2)} would let a model that never saw the "
                          "noise be shown to remove it).")
        text += (f" The spread counts too: **fails** also when the scores' variance is shown above 1 (chi-square; "
                 f"the smaller of the two p doubled), and **removes** also needs the variance shown below 1 + δ. "
                 f"**Signal destroyed**: the canaries (noised rows kept in the retain set, never requested; θ_retrain "
                 f"trains on them too) are shown to keep less than 1 − δ of θ_retrain's canary GUS (paired one-sided "
                 f"t-test, Holm over {m} methods); **removes** needs them shown to keep more.")
        return text + " **Inconclusive** otherwise, with the number of held-out poisons that would decide."
