"""The clean base model of a head-fine-tuning victim (`victim: head`), an artifact of its own.

The base is trained from scratch on the clean training set; θ_initial and θ_retrain then fine-tune only its
head. What determines it is the data (and, with train_size, its training rows), the model, the recipe and
its seed (`ScenarioConfig.base_content`), not the attack nor, with `base_seed` set, the scenario seed: it
lives in `bases/<hash>/` (manifest.json written last, base.safetensors), is trained once and read by every
scenario that needs it. Also here: how every model of a scenario is built and the versions an artifact
records, which both artifacts use.
"""
from __future__ import annotations

import platform
import shutil
from datetime import datetime, timezone

import torch

from ..artifacts import Store, load_tensors, read_manifest, save_tensors, write_manifest
from ..config import ScenarioConfig
from ..data import Dataset
from ..models import build_model
from ..version import __version__
from .seeds import derive_seed
from .train import train

BASE_FILE = "base.safetensors"


def versions() -> dict:
    import numpy

    # threads and CPU kernels decide the last bits of every CPU result (docs/decisions.md, "Determinism")
    return {"raysweep": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def scenario_model(cfg: ScenarioConfig, data: Dataset, device, state: dict | None = None, tag: str = "init",
                   seed: int | None = None):
    """The one way a model of the scenario is built: its architecture at the seeded initialisation `tag`
    (init: θ_initial, θ_retrain and every reference; surrogate: an attack's) derived from `seed` (default
    the scenario's; the base model's: `cfg.data_seed`), or with `state`."""
    m = build_model(cfg.model, data.num_classes, data.input_shape, derive_seed(cfg.seed if seed is None else seed, tag),
                    **cfg.model_params)
    if state is not None:
        m.load_state_dict(state)
    return m.to(device)


def base_key(cfg: ScenarioConfig) -> str:
    return f"bases/{cfg.base_hash()}"


def prepare_base(cfg: ScenarioConfig, data: Dataset, store: Store, device, say) -> tuple[dict, dict, bool]:
    """(the base model's weights on the CPU, its manifest, whether it was trained now): read from the store,
    or trained on `data.train` (the scenario's clean training set, which `cfg.data_seed` fixes) and stored.
    With base_seed unset it is the model a victim=head scenario trained for itself before bases were
    shared: init and data order derived from the scenario's seed."""
    key = base_key(cfg)
    if store.has(key):
        folder = store.open_dir(key)
        manifest = read_manifest(folder)
        state = load_tensors(folder, BASE_FILE, manifest)
        say(f"victim=head: the clean base model {key} is in the store: no base to train")
        return state, manifest, False
    model = scenario_model(cfg, data, device, seed=cfg.data_seed)
    say(f"victim=head: training the clean base model {key} on {len(data.train)} samples (shared by every "
        "scenario with this data, model, recipe and base seed)")
    res = train(model, data.train.to(device), cfg.train, derive_seed(cfg.data_seed, "base_order"), label="base",
                progress=say)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    manifest = {"schema": 1, "hash": cfg.base_hash(), "config": cfg.base_content(), "versions": versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": str(device),
                "compute": {"base_sample_grads": res.sample_grads}, "metrics": {"final_train_loss": res.final_loss},
                "n_train": len(data.train), "wall_s": {"train_base_s": round(res.wall_s, 2)}}
    staged = store.staging(key)
    try:
        manifest["files"] = {BASE_FILE: save_tensors(staged, BASE_FILE, state)}
        write_manifest(staged, manifest)  # written last: its presence marks a complete artifact
        store.publish(key, staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return state, manifest, True

