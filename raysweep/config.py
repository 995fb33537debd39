"""Typed configuration: the training recipe and the scenario, loaded from presets or YAML.

A scenario fixes everything that determines the poisoned set and the two reference models
(θ_initial trained on S_corr, θ_retrain trained on S_corr without the poisons); its content hash
names the artifact directory. Fields that do not change results (device, data_dir) stay out of it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from .attacks import ATTACKS, make_attack
from .data import DATASETS
from .data.base import no_params
from .defaults import MAX_BATCH, MAX_EPOCHS, MAX_SEED
from .errors import ConfigError, RaysweepError, check_number
from .models import MODELS, check_model_params

VICTIMS = ("scratch", "head")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # scenario and sweep names: one path segment


def check_name(field: str, value) -> str:
    """A name that becomes a directory: one safe path segment (no '/', no '..', no leading dot)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or ".." in value:
        raise ConfigError(field, value, "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                          "without '..'")
    return value


class NumberLoader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; here every float form people write is a number."""


NumberLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str):
    """YAML with numbers read as numbers (1e-3 included): scenario files, --set values, search spaces."""
    return yaml.load(text, Loader=NumberLoader)


def read_yaml_file(path: Path, field: str):
    """A YAML file (a scenario, a search space) as plain data, or one ConfigError naming the file for any
    damage: unreadable, not UTF-8, not YAML, or a structure that refers to itself (a recursive alias)."""
    try:
        doc = load_yaml(Path(path).read_bytes().decode("utf-8"))
        json.dumps(doc, default=str)  # a recursive alias makes a structure no config can hold
    except OSError as e:
        raise ConfigError(field, str(path), f"a readable YAML file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(field, str(path), "a UTF-8 YAML file (it holds bytes that are not UTF-8)") from None
    except yaml.YAMLError as e:
        raise ConfigError(field, str(path), f"valid YAML ({e})".replace("\n", " ")) from None
    except (ValueError, RecursionError):
        raise ConfigError(field, str(path), "YAML without recursive aliases (an anchor used inside itself)") from None
    return doc
SCHEMA = 1  # bump when a change makes old artifacts differ from what the code would build


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10                 # passes over the training set
    batch_size: int = 128            # samples per step
    lr: float = 0.05                 # peak learning rate (SGD)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0       # linear warm-up from 0, then cosine decay to 0
    augment: bool = False            # random crop (pad 4) + horizontal flip; the poison shift is strongest without
    bf16: bool = False               # bf16 autocast (CUDA only; ignored on the CPU)
    optimizer: str = "sgd"           # sgd (momentum, nesterov, weight_decay as L2) or adamw (decoupled decay)

    def check(self) -> "TrainConfig":
        check_number("train.epochs", self.epochs, lo=1, hi=MAX_EPOCHS, integer=True)
        check_number("train.batch_size", self.batch_size, lo=1, hi=MAX_BATCH, integer=True)
        check_number("train.lr", self.lr, lo=0, hi=10, lo_open=True, what="a learning rate")
        check_number("train.momentum", self.momentum, lo=0, hi=1, hi_open=True)
        for name in ("weight_decay", "warmup_epochs"):
            check_number(f"train.{name}", getattr(self, name), lo=0)
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError("train.optimizer", self.optimizer, "sgd or adamw")
        for name in ("nesterov", "augment", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"train.{name}", getattr(self, name), "true or false")
        return self


@dataclass(frozen=True)
class ScenarioConfig:
    dataset: str = "cifar10-mini"
    dataset_params: dict = field(default_factory=dict)  # e.g. imdb: tokenizer, max_length
    model: str = "resnet9"
    model_params: dict = field(default_factory=dict)
    attack: str = "gaussian"
    attack_params: dict = field(default_factory=lambda: {"k": 500})
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0                    # poison draw, model init, data order
    val_size: int = 1000             # rows of the test split held out for validation (tuning)
    train_size: int = 0              # use a seeded subset of this many training rows (0: all)
    score: str = "identity"          # GUS score: identity, or flip (for training with flips)
    victim: str = "scratch"          # scratch: θ_initial/θ_retrain trained from scratch; head: both fine-tune
                                     # only the classifier head of a clean base model (docs/vision_attacks.md)
    base_seed: int | None = None     # victim=head: the base model's seed (its init, data order and, with
                                     # train_size, the training rows); None: the scenario's seed. A fixed one
                                     # shares one base model (built once) over scenario seeds
    name: str = ""                   # a label only; not part of the hash

    def check(self) -> "ScenarioConfig":

        if self.name:
            check_name("name", self.name)

        loader = DATASETS.get(self.dataset, "dataset")
        getattr(loader, "check_params", no_params)(self.dataset_params)
        check_model_params(self.model, self.model_params)
        kind = getattr(loader, "kind", None)  # image or text: models and attacks declare what they take
        model_kind = getattr(MODELS.get(self.model, "model"), "kind", None)
        if kind and model_kind and kind != model_kind:
            fits = sorted(n for n in MODELS.names() if getattr(MODELS.get(n), "kind", None) in (kind, None))
            raise ConfigError("model", self.model,
                              f"a model for the dataset {self.dataset}'s {kind} data: {', '.join(fits)}")
        attack = ATTACKS.get(self.attack, "attack")
        if kind and kind not in attack.data_kinds:
            raise ConfigError("attack", self.attack, f"an attack for {self.dataset}'s {kind} data: " + ", ".join(
                sorted(n for n in ATTACKS.names() if kind in ATTACKS.get(n).data_kinds)))
        make_attack(self.attack, self.attack_params)
        self.train.check()
        check_number("seed", self.seed, lo=0, hi=MAX_SEED, integer=True, what="a non-negative 32-bit seed")
        check_number("val_size", self.val_size, lo=1, integer=True,
                     what="rows of the test split held out for validation; checked against the split on load")
        check_number("train_size", self.train_size, lo=0, integer=True, what="0: the whole training set; checked "
                     "against the data on load")
        if self.score not in ("identity", "flip"):
            raise ConfigError("score", self.score, "identity or flip")
        if self.victim not in VICTIMS:
            raise ConfigError("victim", self.victim, " or ".join(VICTIMS))
        if self.base_seed is not None:
            if self.victim != "head":
                raise ConfigError("base_seed", self.base_seed, "null unless victim=head (only a head-fine-tuning "
                                  "victim has a base model)")
            check_number("base_seed", self.base_seed, lo=0, hi=MAX_SEED, integer=True,
                         what="a non-negative 32-bit seed, or null: the scenario's seed")
        return self

    @property
    def data_seed(self) -> int:
        """The seed of what a shared base model fixes: the training rows drawn (train_size) and the base model
        itself (victim=head): base_seed when set, else the scenario's seed."""
        return self.seed if self.base_seed is None else self.base_seed

    def content(self) -> dict:
        d = asdict(self)
        d.pop("name")
        attack = make_attack(self.attack, self.attack_params)
        # an attack's parameters added later are left out at the behaviour scenarios had before them
        d["attack_params"] = {k: v for k, v in attack.params.items() if attack.legacy.get(k, object()) != v}
        d["schema"] = SCHEMA
        # fields added after the first release are left out at their defaults, so scenarios made
        # before them keep their hash (and their artifacts)
        for key, default in (("victim", "scratch"), ("dataset_params", {}), ("base_seed", None)):
            if d[key] == default:
                d.pop(key)
        if d["train"]["optimizer"] == "sgd":
            d["train"].pop("optimizer")
        return d

    def hash(self) -> str:
        return _digest(self.content())

    def base_content(self) -> dict:
        """What determines the clean base model of a victim=head scenario, and nothing else (not the attack,
        not the scenario seed when base_seed is set): the data and its training rows, the model, the
        recipe, the base's seed. Its hash names the base's artifact (`bases/<hash>`)."""
        d = asdict(self)
        rows = {"train_size": self.train_size} if self.train_size else {}  # a seeded subset: data_seed draws it
        return {"dataset": self.dataset, "dataset_params": d["dataset_params"], **rows, "model": self.model,
                "model_params": d["model_params"], "train": d["train"], "seed": self.data_seed, "schema": SCHEMA}

    def base_hash(self) -> str:
        return _digest(self.base_content())


def _digest(content: dict) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


PRESETS: dict[str, dict] = {
    # The default: Gaussian poisoning of 10 % of the bundled CIFAR-10 subset, the CPU ResNet-9
    # (docs/decisions.md: 1,000 poisons show on every pilot seed; 500 did not on seed 1).
    "default": {"name": "default", "attack_params": {"k": 1000}},
    # The paper's poison rate on the bundled data: 2 % of the 10,000 images (200 poisons, 100 held out). One
    # scenario cannot decide a verdict at this size; pooled fresh scenarios can (docs/verdict.md, "paper-rate").
    "paper-rate": {"name": "paper-rate", "attack_params": {"k": 200}},
    # A seconds-long scenario for tests and smoke runs.
    "tiny": {"name": "tiny", "model_params": {"width": 4}, "attack_params": {"k": 64}, "train_size": 2000,
             "train": {"epochs": 3, "batch_size": 128}, "val_size": 200},
    # The tiny scenario with a poison that takes on every seed (docs/decisions.md, "Presets over
    # seeds"): fewer rows, more steps. The slow seed test uses it.
    "tiny-poison": {"name": "tiny-poison", "model_params": {"width": 4}, "attack_params": {"k": 300},
                    "train_size": 1000, "train": {"epochs": 12, "batch_size": 32}, "val_size": 200},
    # The paper's vision setting (a GPU job): ResNet-18 on full CIFAR-10, 1.5 % Gaussian poisons.
    # The language-model track on CPUs: the bundled IMDb subset, a tiny GPT-2, Gaussian noise
    # (eps = 0.15) on the token embeddings of 1,000 reviews, 8 epochs: the poison shows on the
    # held-out half on every pilot seed (docs/decisions.md "Presets over seeds"; docs/text.md).
    "imdb-tiny": {"name": "imdb-tiny", "dataset": "imdb-mini", "dataset_params": {"max_length": 128},
                  "model": "gpt2-tiny", "attack_params": {"k": 1000, "eps": 0.15}, "val_size": 500,
                  "train": {"optimizer": "adamw", "lr": 1e-3, "epochs": 8, "batch_size": 32, "weight_decay": 0.01,
                            "warmup_epochs": 0.5}},
    # The text trigger backdoor on the CPU: imdb-tiny's data, model and recipe, "cf mn bb" in 5 % of the
    # reviews relabelled positive (docs/text.md; docs/decisions.md "Presets over seeds").
    "imdb-backdoor": {"name": "imdb-backdoor", "dataset": "imdb-mini", "dataset_params": {"max_length": 128},
                      "model": "gpt2-tiny", "attack": "backdoor", "attack_params": {}, "val_size": 500,
                      "train": {"optimizer": "adamw", "lr": 1e-3, "epochs": 6, "batch_size": 32, "weight_decay": 0.01,
                                "warmup_epochs": 0.5}},
    # Seconds-long text scenario for tests.
    "imdb-test": {"name": "imdb-test", "dataset": "imdb-mini", "dataset_params": {"max_length": 48},
                  "model": "gpt2-tiny", "model_params": {"width": 32}, "attack_params": {"k": 100, "eps": 0.1},
                  "train_size": 2000, "val_size": 200,
                  "train": {"optimizer": "adamw", "lr": 2e-3, "epochs": 3, "batch_size": 32, "weight_decay": 0.01,
                            "warmup_epochs": 0.5}},
    # The paper's language model (a GPU job): GPT-2 medium (355M) on full IMDb (docs/text.md).
    "paper-imdb": {"name": "paper-imdb", "dataset": "imdb", "dataset_params": {"max_length": 512},
                   "model": "gpt2-medium", "attack_params": {"fraction": 0.02, "eps": 0.03}, "val_size": 1000,
                   "train": {"optimizer": "adamw", "lr": 2e-5, "epochs": 10, "batch_size": 16, "weight_decay": 0.01,
                             "warmup_epochs": 0.5, "bf16": True}},
    "paper-cifar10": {"name": "paper-cifar10", "dataset": "cifar10", "model": "resnet18",
                      "attack_params": {"k": 750},
                      "train": {"epochs": 100, "lr": 0.1, "augment": True}, "score": "flip"},
    # The vision attacks on the CPU against the head-fine-tuning victim (issue 32; docs/vision_attacks.md):
    # cifar10-mini, the default ResNet-9 and recipe, one clean base model (base_seed 0) shared by every
    # scenario seed. Gradient matching at the published eps with 2 % poisons (the pilot in docs/vision_attacks.md:
    # 10 of 10 targets at 2 %, 4 of 10 at 1 %) on targets the base gets right (no augmentation: the victim's
    # recipe has none);
    # Gradient Canceling with 10 % poisons canceling a head corrupted to 50 % training accuracy.
    "gm-cpu": {"name": "gm-cpu", "attack": "gradient_matching", "victim": "head", "base_seed": 0,
               "attack_params": {"eps": 16 / 255, "fraction": 0.02, "restarts": 2, "steps": 160, "augment": False,
                                 "target_rule": "correct"}},
    "gc-cpu": {"name": "gc-cpu", "attack": "gradient_canceling", "victim": "head", "base_seed": 0,
               "attack_params": {"fraction": 0.1, "target_acc": 0.5, "steps": 400, "lr": 0.05}},
}


def _from_dict(d: dict, origin: str) -> ScenarioConfig:
    known = {f.name for f in fields(ScenarioConfig)}
    for key in d:
        if key not in known:
            raise ConfigError(key, d[key], f"unknown scenario field in {origin}; fields: {', '.join(sorted(known))}")
    d = dict(d)
    train = d.pop("train", {}) or {}
    if not isinstance(train, dict):
        raise ConfigError("train", train, "a mapping of training fields")
    tknown = {f.name for f in fields(TrainConfig)}
    for key in train:
        if key not in tknown:
            raise ConfigError(f"train.{key}", train[key], f"fields: {', '.join(sorted(tknown))}")
    for key in ("model_params", "attack_params", "dataset_params"):
        if key in d and not isinstance(d[key], dict):
            raise ConfigError(key, d[key], "a mapping")
    return ScenarioConfig(**d, train=TrainConfig(**train))


def parse_value(text: str):
    """`--set key=value` values: YAML scalars (1e-3, true, [1, 2], null)."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError("--set", text, f"a YAML value ({str(e).splitlines()[0]})") from e


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Dotted overrides: ["train.epochs=3", "attack_params.k=100"] onto a nested dict."""
    d = json.loads(json.dumps(d))
    for item in overrides:
        if "=" not in item:
            raise ConfigError("--set", item, "KEY=VALUE, e.g. train.epochs=3 or attack_params.k=100")
        key, val = item.split("=", 1)
        if not val.strip():
            raise ConfigError(key, val, "a value after '=' (an empty one would silently keep the default)")
        cur = d
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
            if not isinstance(cur, dict):
                raise ConfigError(key, val, "a path into the scenario's mappings")
        cur[parts[-1]] = parse_value(val)
    return d


def load_scenario(spec: str = "default", overrides: list[str] | None = None) -> ScenarioConfig:
    """A preset name or a YAML file path, plus dotted overrides; validated."""
    if spec in PRESETS:
        d, origin = PRESETS[spec], f"preset {spec}"
    else:
        p = Path(spec)
        if not p.is_file():
            raise ConfigError("scenario", spec, f"a preset ({', '.join(PRESETS)}) or a YAML file path")
        d = read_yaml_file(p, "scenario") or {}
        if not isinstance(d, dict):
            raise ConfigError("scenario", spec, "a YAML mapping of scenario fields")
        d.setdefault("name", re.sub(r"[^A-Za-z0-9._-]+", "-", p.stem).strip(".-_") or "scenario")
        origin = str(p)
    d = apply_overrides(d, overrides or [])
    try:
        return _from_dict(d, origin).check()
    except TypeError as e:
        raise RaysweepError(f"scenario {origin}: {e}") from e


def scenario_from_dict(d: dict) -> ScenarioConfig:
    """Inverse of dataclasses.asdict (e.g. a manifest's config)."""
    d = dict(d)
    d.pop("schema", None)
    return _from_dict(d, "manifest").check()


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
