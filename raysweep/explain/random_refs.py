"""θ_random: the scenario's model retrained without k random clean samples instead of the k poisons.

Draw j drops k rows chosen uniformly among the clean rows of S_corr (neither poisons nor canaries), seeded by
derive_seed(cfg.seed, f"random-drop-{j}"), and trains on the rest exactly as `prepare` trains θ_retrain:
the same TrainConfig, the same initialisation seed (derive_seed(cfg.seed, "init")) and data-order seed
(derive_seed(cfg.seed, "order")) on a set of the same size N − k. The poisons stay in: θ_random differs
from θ_initial by k missing clean samples where θ_retrain differs by the k poisons.

Each draw is a content-addressed artifact beside the scenario's folder, `scenarios/<hash>-random-drop-<j>/`
(manifest.json, weights.safetensors, dropped.safetensors; the scenario's own folder keeps exactly its
files), built in a staging folder and published in one rename like the scenario itself, so it is built once
and reused by every later `raysweep explain`; deleting `scenarios/<hash>*` removes the scenario and its draws.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone

import torch

from ..artifacts import Store, load_tensors, read_manifest, save_tensors, verify, write_manifest
from ..errors import ArtifactError, ConfigError
from ..prepare.scenario import Scenario, derive_seed, store_key, versions
from ..prepare.train import train

SCHEMA = 1  # bump when this module would build different weights from the same scenario


def random_key(scenario_hash: str, draw: int) -> str:
    return f"{store_key(scenario_hash)}-random-drop-{draw}"


def check_supported(scen: Scenario) -> None:
    """θ_random needs θ_retrain's recipe from scratch; a head-only victim starts from a clean base model
    that `prepare` does not keep."""
    if scen.cfg.victim == "head":
        raise ConfigError("victim", scen.cfg.victim, "explain supports victim=scratch scenarios (a head-only victim "
                          "starts from a clean base model that prepare does not store)")


def drop_rows(scen: Scenario, draw: int) -> torch.Tensor:
    """The k rows of S_corr (sorted) that draw `draw` leaves out: uniformly among the clean rows (neither
    poisons nor canaries, which carry noise too)."""
    retain = scen.poisoned.retain_idx()
    if scen.poisoned.canary_idx is not None:
        retain = retain[~torch.isin(retain, scen.poisoned.canary_idx.to(retain.device))]
    g = torch.Generator().manual_seed(derive_seed(scen.cfg.seed, f"random-drop-{draw}"))
    return retain[torch.randperm(len(retain), generator=g)[: scen.poisoned.k]].sort().values


def _keep_rows(scen: Scenario, dropped: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(len(scen.poisoned.train), dtype=torch.bool)
    keep[dropped] = False
    return keep.nonzero().squeeze(1)


def build_draw(scen: Scenario, store: Store, draw: int, log) -> dict:
    """Train and publish draw `draw`; returns its manifest."""
    cfg = scen.cfg
    key = random_key(scen.hash, draw)
    dropped = drop_rows(scen, draw)
    split = scen.poisoned.train.subset(_keep_rows(scen, dropped).to(scen.poisoned.train.y.device))
    model = scen.new_model()  # fresh, at θ_retrain's initialisation seed
    log(f"[explain] θ_random draw {draw}: training on {len(split)} samples without {len(dropped)} random clean "
        f"rows ({cfg.train.epochs} epochs, {scen.device})")
    t0 = time.perf_counter()
    res = train(model, split, cfg.train, derive_seed(cfg.seed, "order"), label=f"random-{draw}", progress=log)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    t1 = time.perf_counter()
    metrics = scen.evaluate(model)
    manifest = {"schema": SCHEMA, "hash": f"{scen.hash}-random-drop-{draw}", "scenario": scen.hash, "draw": draw,
                "config": {"scenario": scen.hash, "draw": draw, "k": int(len(dropped)),
                           "drop_seed": derive_seed(cfg.seed, f"random-drop-{draw}"),
                           "init_seed": derive_seed(cfg.seed, "init"), "order_seed": derive_seed(cfg.seed, "order")},
                "metrics": metrics, "compute": {"sample_grads": res.sample_grads, "final_train_loss": res.final_loss},
                "versions": versions(), "device": str(scen.device),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    staged = store.staging(key)
    try:
        manifest["files"] = {"weights.safetensors": save_tensors(staged, "weights.safetensors", weights),
                             "dropped.safetensors": save_tensors(staged, "dropped.safetensors", {"rows": dropped})}
        manifest["wall_s"] = {"train_s": round(res.wall_s, 2), "evaluate_s": round(time.perf_counter() - t1, 2),
                              "total_s": round(time.perf_counter() - t0, 2)}
        write_manifest(staged, manifest)  # last: its presence marks a complete artifact
        store.publish(key, staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return manifest


def random_refs(scen: Scenario, store: Store, draws: int, log) -> list[dict]:
    """Draws 0 .. draws−1, each loaded from the store or built once: a list of
    {"draw", "weights" (state dict), "dropped" (rows), "manifest", "built" (True if trained now)}."""
    check_supported(scen)
    out = []
    for j in range(draws):
        key = random_key(scen.hash, j)
        built = not store.has(key)
        if built:
            build_draw(scen, store, j, log)
        else:
            log(f"[explain] θ_random draw {j}: cached in {store.open_dir(key)}")
        folder = store.open_dir(key)
        manifest = read_manifest(folder)
        verify(folder, manifest)
        if manifest.get("schema") != SCHEMA:
            raise ArtifactError(f"artifact {folder} has schema {manifest.get('schema')}, not {SCHEMA}: delete the "
                                "folder and run explain again")
        out.append({"draw": j, "manifest": manifest, "built": built,
                    "weights": load_tensors(folder, "weights.safetensors", manifest),
                    "dropped": load_tensors(folder, "dropped.safetensors", manifest)["rows"]})
    return out
