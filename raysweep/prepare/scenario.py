"""A prepared scenario: the poisoned set, θ_initial, θ_retrain and the evidence to judge a model.

`prepare(cfg, store)` builds the artifacts once (content-addressed by the scenario hash);
`Scenario.load(store, cfg_or_hash)` reads them back for `unlearn`, sweeps and reports, and
`Scenario.evaluate(model)` gives every figure, flat, under fixed names.
"""
from __future__ import annotations

import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import SimpleNamespace

import torch

from ..artifacts import Store, load_tensors, open_store, read_manifest, save_tensors, verify, write_manifest
from ..attacks import ATTACKS, Attack, BuildEnv, PoisonedSet, make_attack
from ..config import ScenarioConfig, scenario_from_dict, to_dict
from ..data import Dataset, load_dataset
from ..defaults import PARALLEL_MIN_SAMPLE_GRADS, REFERENCES, check_references
from ..errors import ArtifactError, ConfigError
from ..metrics import evaluate, gus_summary, loss_mia, per_sample_losses
from ..metrics.gus import gus_score_sets
from ..registry import load_plugins, loaded_plugins
from ..runtime import deterministic
from ..stats.evidence import encode_bits
from .base_model import base_key, prepare_base, scenario_model, versions
from .requests import check_discovery, discovered_rows
from .seeds import derive_seed
from .train import TrainResult, train

FILES = ("initial.safetensors", "retrain.safetensors", "poison.safetensors")


def scenario_data(cfg: ScenarioConfig, data_dir: str | None = None) -> Dataset:
    """The scenario's dataset: val split drawn from the test split, training rows subset if asked."""
    data = load_dataset(cfg.dataset, data_dir, cfg.val_size, derive_seed(cfg.seed, "val"), cfg.dataset_params)
    if cfg.train_size:
        if cfg.train_size > len(data.train):
            raise ConfigError("train_size", cfg.train_size, f"at most the {len(data.train)} training rows")
        g = torch.Generator().manual_seed(derive_seed(cfg.data_seed, "train_subset"))  # base_seed fixes the rows
        rows = torch.randperm(len(data.train), generator=g)[: cfg.train_size].sort().values
        data = replace(data, train=data.train.subset(rows))
    return data


def checked_data(cfg: ScenarioConfig, data_dir: str | None = None):
    """(dataset, attack) with every check that needs the data done (val_size against the split,
    train_size, the attack's parameters such as k against the rows): what `prepare` does before it trains,
    and what `raysweep sweep` runs before Ray starts when the scenario is not built yet."""
    data = scenario_data(cfg, data_dir)
    attack = make_attack(cfg.attack, cfg.attack_params)
    attack.check_data(data)
    return data, attack


def store_key(cfg_hash: str) -> str:
    return f"scenarios/{cfg_hash}"


@dataclass
class Scenario:
    cfg: ScenarioConfig
    manifest: dict
    data: Dataset
    poisoned: PoisonedSet
    control_noise: torch.Tensor        # [k, ...] fresh noise never trained on
    tune_rows: torch.Tensor            # positions (into the k poisons) of the tuning half
    holdout_rows: torch.Tensor         # the other half, for the verdict
    device: torch.device
    weights: dict                      # "initial" / "retrain" -> state dict
    attack: Attack | None = None       # the scenario's attack (its own metrics in `evaluate`)
    tensors: dict = field(default_factory=dict)   # the artifact's files as loaded (for the object store)

    @property
    def hash(self) -> str:
        return self.manifest["hash"]

    @property
    def train_compute(self) -> int:
        """Sample-gradients spent training θ_initial: the reference of every unlearning budget."""
        return int(self.manifest["compute"]["initial_sample_grads"])

    def new_model(self, which: str | None = None):
        """A model of the scenario's architecture, with weights `which` (initial/retrain) or fresh."""
        return scenario_model(self.cfg, self.data, self.device, None if which is None else self.weights[which])

    @classmethod
    def load(cls, store: Store | str, cfg: ScenarioConfig | str, device: torch.device | str = "cpu",
             data_dir: str | None = None) -> "Scenario":
        store = open_store(store)
        key = store_key(cfg if isinstance(cfg, str) else cfg.hash())
        if not store.has(key):
            raise ArtifactError(f"scenario {key} is not prepared in {store.uri}: "
                                "run `raysweep prepare` first")
        folder = store.open_dir(key)
        manifest = read_manifest(folder)
        tensors = {name: load_tensors(folder, name, manifest) for name in FILES}
        cfg = stored_config(scenario_from_dict(manifest["config"]), tensors["poison.safetensors"])
        return cls._assemble(cfg, manifest, tensors, torch.device(device), scenario_data(cfg, data_dir))

    def bundle(self) -> dict:
        """The artifact as plain data (manifest + tensors) for the Ray object store."""
        return {"manifest": self.manifest, "tensors": self.tensors}

    @classmethod
    def from_bundle(cls, bundle: dict, device="cpu", data_dir: str | None = None) -> "Scenario":
        m = bundle["manifest"]
        cfg = stored_config(scenario_from_dict(m["config"]), bundle["tensors"]["poison.safetensors"])
        return cls._assemble(cfg, m, bundle["tensors"], torch.device(device), scenario_data(cfg, data_dir))

    @classmethod
    def _assemble(cls, cfg, manifest, tensors, device, data: Dataset, attack: Attack | None = None,
                  ps: PoisonedSet | None = None) -> "Scenario":
        """The scenario from its artifact's tensors and its (CPU) data; `prepare` passes the attack
        and the poisoned set it has just applied, so nothing is loaded or applied twice."""
        poison = tensors["poison.safetensors"]
        attack = attack or make_attack(cfg.attack, cfg.attack_params)
        if ps is None:
            ps = attack.apply(data, {k: v for k, v in poison.items() if not k.startswith("_")})
        data = _to(data, device)
        ps.train = ps.train.to(device)
        return cls(cfg, manifest, data, ps, poison["_control_noise"], poison["_tune_rows"], poison["_holdout_rows"],
                   device, {"initial": tensors["initial.safetensors"], "retrain": tensors["retrain.safetensors"]},
                   attack, tensors)

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, model, parts: tuple[str, ...] = ("all", "tune", "holdout"), full: bool = True,
                 tune_cap: int | None = None) -> dict:
        """Flat metrics of `model` (numbers and encoded per-item strings: tables and JSON take them).

        full=True: test/val accuracy, forget-set accuracy and loss, loss-threshold MIA, the attack's
        own metrics, and for noise attacks the GUS figures of each part of the poisons (all, tune,
        holdout; keys prefixed tune_/holdout_). full=False (cheap, for budget checkpoints): val
        accuracy, the attack's metrics and the GUS figures of `parts`."""
        return self.scored(model, parts, full, tune_cap)[0]

    def scored(self, model, parts: tuple[str, ...] = ("all", "tune", "holdout"),
               full: bool = True, tune_cap: int | None = None, known: dict | None = None) -> tuple[dict, dict]:
        """(metrics as `evaluate`, {"scores", "control"}: the per-poison GUS scores I_z of the poisons'
        own noise and of the fresh control noise, [k] float64, NaN outside `parts`; {} without noise or
        parts). Every figure is taken on `model.for_eval()` (BatchNorm folded, Classifier.for_eval).
        `known`: figures of this same model taken before ({"val_acc"}, and {"scores", "control"} as this
        returns them, NaN where not taken), used instead of taken again (the after-search evidence reuses
        the trial's final report: sweep/evidence.py)."""
        known = known or {}
        model = model.for_eval() if hasattr(model, "for_eval") else model  # BatchNorm folded: Classifier.for_eval
        out = {"val_acc": float(known["val_acc"]) if "val_acc" in known else evaluate(model, self.data.val)["acc"]}
        ps = self.poisoned
        if self.attack is not None:
            out.update(self.attack.evaluate(model, self.data, ps))
        if full:
            t_loss, t_correct = per_sample_losses(model, self.data.test)  # one pass: accuracy and MIA
            out["test_acc"] = t_correct.float().mean().item()
            out.setdefault("test_correct", encode_bits(t_correct.numpy()))  # the accuracy test pairs the images
            f_loss, f_correct = per_sample_losses(model, ps.forget())
            out["forget_acc"] = f_correct.float().mean().item()
            out["forget_loss"] = f_loss.mean().item()
            out.update(loss_mia(f_loss, t_loss))
        if ps.noise is None or not parts:
            return out, {}
        rows = {"all": torch.arange(ps.k), "tune": self.tune_rows.long(), "holdout": self.holdout_rows.long()}
        if tune_cap and tune_cap < len(rows["tune"]):  # budget checkpoints: a fixed, seeded subset of the half
            pick = torch.randperm(len(rows["tune"]), generator=torch.Generator().manual_seed(self.cfg.seed))
            rows["tune"] = rows["tune"][pick[:tune_cap].sort().values]
        want = torch.cat([rows[p] for p in parts]).unique()
        s = torch.full((ps.k,), float("nan"), dtype=torch.float64)
        c = s.clone()
        if "scores" in known:  # rows scored before are taken as they were
            s[want], c[want] = known["scores"].double()[want], known["control"].double()[want]
        need = want[s[want].isnan() | c[want].isnan()]
        if len(need):
            y = ps.train.y[ps.poison_idx].cpu()
            s[need], c[need] = gus_score_sets(model, ps.clean_x[need], y[need],
                                              [ps.noise[need], self.control_noise[need]], ps.eps,
                                              self.cfg.score, ps.grad_scale)
        for part in parts:
            summ = gus_summary(s[rows[part]], c[rows[part]])
            prefix = "" if part == "all" else f"{part}_"
            out.update({f"{prefix}{k}": v for k, v in summ.items()})
        scores = {"scores": s, "control": c}
        if full and ps.canary_idx is not None and len(ps.canary_idx):  # the positive control (docs/verdict.md)
            (cs,) = gus_score_sets(model, ps.canary_clean_x, ps.train.y[ps.canary_idx].cpu(), [ps.canary_noise],
                                   ps.eps, self.cfg.score, ps.grad_scale)
            summ = gus_summary(cs)
            out.update({"canary_k": summ["k"], "canary_gus": summ["gus"], "canary_z": summ["z"]})
            scores["canary"] = cs
        return out, scores

    def discovered(self, fraction: float) -> "Scenario":
        """The scenario as a defender who found only `fraction` of the poisons sees it: the forget set is a
        seeded subset (nested: the poisons found at 0.1 are among those found at 0.25), the undiscovered
        rest stays in the retain set, and the tuning half is its discovered part. θ_initial, θ_retrain and
        the evidence are the scenario's own (nothing is retrained). fraction 1: the scenario itself."""
        check_discovery(fraction)
        if fraction >= 1:
            return self
        found = discovered_rows(self.cfg.seed, self.poisoned.k, fraction)
        tune = self.tune_rows[torch.isin(self.tune_rows.long(), found)]
        if not len(tune):
            raise ConfigError("discovery", fraction, f"a share that finds at least one tuning poison (of the "
                              f"{self.poisoned.k} poisons, {len(found)} found, none in the tuning half)")
        return replace(self, poisoned=replace(self.poisoned, request=found), tune_rows=tune)

    def holdout_found(self, fraction: float) -> torch.Tensor:
        """[k/2] bool: which held-out poisons (in `holdout_rows` order) a defender at `fraction` found."""
        return torch.isin(self.holdout_rows.long(), discovered_rows(self.cfg.seed, self.poisoned.k, fraction))

    def holdout_scores(self, scores: dict) -> dict:
        """The held-out half's scores as rounded lists (JSON), with every canary's, or {} without noise."""
        out = rounded_scores({k: v for k, v in scores.items() if k != "canary"}, self.holdout_rows.long())
        if "canary" in scores:
            out["canary"] = rounded_scores({"canary": scores["canary"]})["canary"]
        return out


def stored_config(cfg: ScenarioConfig, poison: dict) -> ScenarioConfig:
    """A stored scenario's config with its attack's parameters as its artifact was built
    (`Attack.stored_params`: an older artifact lacks what later defaults add, e.g. canaries)."""
    params = ATTACKS.get(cfg.attack, "attack").stored_params(dict(cfg.attack_params), set(poison))
    return cfg if params == cfg.attack_params else replace(cfg, attack_params=params)


def rounded_scores(scores: dict, rows: torch.Tensor | None = None) -> dict:
    """Per-poison scores ({"scores", "control"}: tensors) as lists rounded to 5 decimals, for JSON;
    only `rows` when given."""
    return {k: [round(float(v), 5) for v in (t if rows is None else t[rows])] for k, t in scores.items()}


def _to(data: Dataset, device) -> Dataset:
    return replace(data, train=data.train.to(device), val=data.val.to(device), test=data.test.to(device))


def reference_mode(sample_grads: int, device, references: str = REFERENCES) -> str:
    """parallel or sequential: how `prepare` trains θ_initial and θ_retrain. auto: parallel on a CPU with
    at least 2 threads when each model's training is at least PARALLEL_MIN_SAMPLE_GRADS sample-gradients
    (the two processes' start, a few seconds, is then repaid; docs/performance.md)."""
    if references != "auto":
        return references
    big = sample_grads >= PARALLEL_MIN_SAMPLE_GRADS  # θ_initial's training (the larger of the two)
    return "parallel" if torch.device(device).type == "cpu" and torch.get_num_threads() >= 2 and big else "sequential"


def _train_reference(job: dict, say=None) -> tuple[dict, TrainResult]:
    """θ_initial or θ_retrain: (its weights on the CPU, TrainResult). With job["threads"] set it runs in a
    process of its own (prepare's parallel path): plug-ins, threads and determinism are set up here."""
    if job["threads"] is not None:

        load_plugins(job["plugins"])
        torch.set_num_threads(job["threads"])
        deterministic(job["device"])
        say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if job["verbose"] else (lambda msg: None)
    cfg, device = job["cfg"], torch.device(job["device"])
    model = scenario_model(cfg, job["shape"], device, job["base_state"])
    head = None if job["base_state"] is None else model.layer_groups()[-1]
    res = train(model, job["split"].to(device), cfg.train, derive_seed(cfg.seed, "order"), label=job["which"],
                progress=say, only=head)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, res


def prepare(cfg: ScenarioConfig, store: Store | str, device: torch.device | str = "cpu",
            data_dir: str | None = None, log=None, references: str = REFERENCES) -> tuple[dict, bool]:
    """Build (or find) the scenario's artifacts. Returns (manifest, built_now). references: how θ_initial
    and θ_retrain are trained (`reference_mode`); a scenario found in the store is used as it is."""
    check_references(references)
    store = open_store(store)
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    key = store_key(cfg.hash())
    if store.has(key):
        manifest = read_manifest(store.open_dir(key))
        verify(store.open_dir(key), manifest)
        say(f"scenario {cfg.hash()} already prepared in {store.open_dir(key)}: nothing to train")
        return manifest, False
    device = torch.device(device)

    deterministic(device)  # here, not in every command: a sweep's driver trains only when it prepares (a slow import)
    t0 = time.perf_counter()
    data, attack = checked_data(cfg, data_dir)
    weights, compute, wall = {}, {}, {}
    base_state, base = None, {}
    if cfg.victim == "head":  # the clean base model: its own artifact, shared by every scenario with the same one
        base_state, base_manifest, built = prepare_base(cfg, data, store, device, say)
        say("victim=head: θ_initial and θ_retrain fine-tune only the base model's head")
        compute["base_sample_grads"] = base_manifest["compute"]["base_sample_grads"]
        base = {"key": base_key(cfg), "hash": base_manifest["hash"], "built_now": built}
        if built:
            wall["train_base_s"] = base_manifest["wall_s"]["train_base_s"]
    say(f"poisoning {cfg.dataset} with {cfg.attack} {attack.params}")
    env = BuildEnv(
        new_model=lambda: scenario_model(cfg, data, device, tag="surrogate"),
        train=lambda m, split: train(m, split.to(device), cfg.train, derive_seed(cfg.seed, "surrogate_order"),
                                     label="surrogate", progress=say),
        device=device, log=say, weight_decay=cfg.train.weight_decay,
        base=None if base_state is None else (lambda: scenario_model(cfg, data, device, base_state)))
    stored = attack.build(data, derive_seed(cfg.seed, "poison"), env)
    ps = attack.apply(data, stored)
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, "control"))
    control = torch.zeros(0)
    if ps.noise is not None:  # fresh noise on the same support as the poisons' own (text: real tokens only)
        control = torch.randn(ps.noise.shape, generator=g) * ps.eps * (ps.noise != 0)
    perm = torch.randperm(ps.k, generator=g)
    tune_rows, holdout_rows = perm[: ps.k // 2].sort().values, perm[ps.k // 2:].sort().values
    poison_file = {**stored, "_control_noise": control, "_tune_rows": tune_rows, "_holdout_rows": holdout_rows}

    splits = {"initial": ps.train, "retrain": ps.retain()}
    # a head fine-tuned without augmentation trains on its inputs computed once: about one pass (prepare/train.py)
    passes = 1 if base_state is not None and not cfg.train.augment else cfg.train.epochs
    mode = reference_mode(len(ps.train) * passes, device, references)
    shape = SimpleNamespace(num_classes=data.num_classes, input_shape=data.input_shape)  # what scenario_model reads
    jobs = {which: {"cfg": cfg, "shape": shape, "split": split, "device": str(device),
                    "base_state": base_state, "which": which, "plugins": loaded_plugins(),
                    "threads": max(1, torch.get_num_threads() // (2 if mode == "parallel" else 1))}
            for which, split in splits.items()}
    at_once = f", at once with the other on {jobs['initial']['threads']} thread(s)" if mode == "parallel" else ""
    for which, split in splits.items():
        say(f"training θ_{which} on {len(split)} samples ({cfg.train.epochs} epochs, "
            f"{'head only' if base_state is not None else 'all layers'}, {device}{at_once})")
    if mode == "parallel":  # each in a process of its own (docs/performance.md, "Training the references")
        ctx = torch.multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            runs = pool.map(_train_reference, [{**j, "verbose": log is None} for j in jobs.values()])
            trained = dict(zip(jobs, runs))
    else:
        trained = {which: _train_reference({**j, "threads": None}, say) for which, j in jobs.items()}
    for which, (state, res) in trained.items():
        weights[which] = state
        # the budget's reference: the victim's whole training, base model included (docs/budget.md)
        compute[f"{which}_sample_grads"] = res.sample_grads + compute.get("base_sample_grads", 0)
        wall[f"train_{which}_s"] = round(res.wall_s, 2)
        compute[f"{which}_final_train_loss"] = res.final_loss

    manifest = {"schema": 1, "hash": cfg.hash(), "name": cfg.name, "config": to_dict(cfg),
                "attack_params": attack.params, "seed": cfg.seed, "versions": versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "device": str(device), "compute": compute, "k": ps.k,
                "n_train": len(ps.train), "n_val": len(data.val), "n_test": len(data.test),
                "references": {"mode": mode, "threads": jobs["initial"]["threads"]}, **({"base": base} if base else {})}
    tensors = {"initial.safetensors": weights["initial"], "retrain.safetensors": weights["retrain"],
               "poison.safetensors": poison_file}
    scen = Scenario._assemble(cfg, manifest, tensors, device, data, attack, ps)
    metrics, ref_scores = {}, {}
    for which, ref in (("initial", "none"), ("retrain", "retrain")):
        t1 = time.perf_counter()
        metrics[which], scores = scen.scored(scen.new_model(which))
        if scores:  # every poison's score and its control's: each sweep's references, computed once here
            ref_scores[ref] = rounded_scores(scores)
        wall[f"evaluate_{which}_s"] = round(time.perf_counter() - t1, 2)
    manifest["metrics"], manifest["reference_scores"] = metrics, ref_scores  # {} for an attack without noise

    staged = store.staging(key)
    try:
        manifest["files"] = {name: save_tensors(staged, name, t) for name, t in tensors.items()}
        wall["prepare_s"] = round(time.perf_counter() - t0, 2)
        manifest["wall_s"] = wall
        write_manifest(staged, manifest)  # written last: its presence marks a complete artifact
        final = store.publish(key, staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    say(f"scenario {cfg.hash()} written to {final} in {wall['prepare_s']:.0f}s")
    return manifest, True
