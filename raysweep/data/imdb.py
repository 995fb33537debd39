"""IMDb movie-review sentiment (Maas et al., ACL 2011): 0 = negative, 1 = positive.

`imdb`: Hugging Face `datasets` (`load_dataset("imdb")` when online), or `--data-dir` pointing at a
local JSON Lines / Parquet file (or a folder holding `imdb_subset.jsonl.gz`) with `text`, `label`
and `split` ("train"/"test") columns. `imdb-mini`: the bundled class-balanced subset (5,000 train /
2,000 test reviews of the official split; raysweep/data/bundled/PROVENANCE.md), sha-checked.

Reviews are tokenised with `dataset_params.tokenizer` (a hub name or a local folder for
`AutoTokenizer.from_pretrained`; default the bundled GPT-2 tokenizer), `<br />` turned into spaces,
truncated to `max_length` tokens and right-padded with -1: x is [N, max_length] int64 token ids,
-1 where there is no token (models build their attention mask from x >= 0). Tokenised tensors are
cached on disk (`$RAYSWEEP_CACHE`, default ~/.cache/raysweep), keyed by the file's sha256, the
tokenizer's files and max_length, so trials do not re-tokenise.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import torch

from ..artifacts import sha256_file
from ..errors import ArtifactError, ConfigError, RaysweepError
from . import DATASETS
from .base import Dataset, Split, split_val

BUNDLED = Path(__file__).parent / "bundled" / "imdb_subset.jsonl.gz"
BUNDLED_SHA256 = "b211de7855caa0a329f5d6be76bbee6dc46febe368876028423b1627de5f80ff"
BUNDLED_TOKENIZER = Path(__file__).parent / "bundled" / "gpt2_tokenizer"
CLASSES = ["negative", "positive"]
PAD = -1  # token id marking "no token" (right padding)
TOKENIZE_VERSION = 1  # bump when the text cleaning or padding changes


def check_params(params: dict) -> dict:
    allowed = {"tokenizer", "max_length"}
    for key in params:
        if key not in allowed:
            raise ConfigError(f"dataset_params.{key}", params[key], f"imdb takes {', '.join(sorted(allowed))}")
    p = {"tokenizer": "bundled:gpt2", "max_length": 128, **params}
    if not isinstance(p["max_length"], int) or isinstance(p["max_length"], bool) or p["max_length"] < 8:
        raise ConfigError("dataset_params.max_length", p["max_length"], "an integer >= 8 (tokens per review)")
    if not isinstance(p["tokenizer"], str) or not p["tokenizer"]:
        raise ConfigError("dataset_params.tokenizer", p["tokenizer"],
                          "bundled:gpt2, a Hugging Face name or a local tokenizer folder")
    return p


@lru_cache(maxsize=4)
def load_tokenizer(spec: str):
    """AutoTokenizer.from_pretrained of a hub name or a local folder ("bundled:gpt2": ours)."""
    from transformers import AutoTokenizer

    path = str(BUNDLED_TOKENIZER) if spec == "bundled:gpt2" else spec
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - hub errors, missing files, bad configs
        raise RaysweepError(f"dataset_params.tokenizer={spec!r} could not be loaded ({type(e).__name__}: {e}); "
                            "pass a local tokenizer folder or use bundled:gpt2") from e


def _tokenizer_key(spec: str) -> str:
    p = BUNDLED_TOKENIZER if spec == "bundled:gpt2" else Path(spec)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.iterdir()):
            if f.is_file():
                h.update(f.name.encode() + sha256_file(f).encode())
        return h.hexdigest()
    return spec


def encode(texts: list[str], tokenizer, max_length: int) -> torch.Tensor:
    """Reviews -> [N, max_length] int64 token ids, right-padded with PAD (-1)."""
    clean = [t.replace("<br />", " ") for t in texts]
    ids = tokenizer(clean, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    out = torch.full((len(ids), max_length), PAD, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.as_tensor(row[:max_length], dtype=torch.long)
    return out


def _read_rows(source: str):
    """(train_texts, train_labels, test_texts, test_labels) through Hugging Face `datasets`."""
    import datasets

    if source == "hub":
        ds = datasets.load_dataset("imdb")
        return ds["train"]["text"], ds["train"]["label"], ds["test"]["text"], ds["test"]["label"]
    kind = "parquet" if source.endswith(".parquet") else "json"
    table = datasets.load_dataset(kind, data_files=source, split="train")
    missing = {"text", "label", "split"} - set(table.column_names)
    if missing:
        raise ConfigError("data_dir", source, f"a file with text, label and split columns (missing {sorted(missing)})")
    splits = table["split"]
    pick = lambda col, s: [v for v, sp in zip(table[col], splits) if sp == s]  # noqa: E731
    return pick("text", "train"), pick("label", "train"), pick("text", "test"), pick("label", "test")


@lru_cache(maxsize=4)
def tokenised(source: str, source_key: str, tokenizer: str, max_length: int):
    """(x_train, y_train, x_test, y_test), from the disk cache when present."""
    key = hashlib.sha256(f"{TOKENIZE_VERSION}|{source_key}|{_tokenizer_key(tokenizer)}|{max_length}".encode())
    cache = Path(os.environ.get("RAYSWEEP_CACHE", "~/.cache/raysweep")).expanduser() / "tokenized"
    path = cache / f"imdb-{key.hexdigest()[:20]}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt
            path.unlink(missing_ok=True)
    tok = load_tokenizer(tokenizer)
    tr_t, tr_y, te_t, te_y = _read_rows(source)
    out = (encode(list(tr_t), tok, max_length), torch.as_tensor(list(tr_y), dtype=torch.long),
           encode(list(te_t), tok, max_length), torch.as_tensor(list(te_y), dtype=torch.long))
    try:  # the cache is an optimisation: an unwritable home must not stop the run
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(out, tmp)
        os.replace(tmp, path)
    except OSError:
        pass
    return out


def _build(name: str, source: str, source_key: str, val_size: int, seed: int, params: dict) -> Dataset:
    p = check_params(params)
    xtr, ytr, xte, yte = tokenised(source, source_key, p["tokenizer"], p["max_length"])
    val, test = split_val(xte, yte, val_size, seed)
    return Dataset(name, Split(xtr, ytr), val, test, list(CLASSES), "text",
                   meta={"tokenizer": p["tokenizer"]})


@DATASETS.register("imdb-mini", check_params=check_params, kind="text")
def imdb_mini(data_dir: str | None = None, val_size: int = 1000, seed: int = 0, **params) -> Dataset:
    """The bundled subset; `data_dir` may point at another copy of imdb_subset.jsonl.gz's folder."""
    path = Path(data_dir) / "imdb_subset.jsonl.gz" if data_dir else BUNDLED
    if not path.is_file():
        raise ArtifactError(f"dataset file {path} is missing")
    got = sha256_file(path)
    if got != BUNDLED_SHA256:
        raise ArtifactError(f"dataset file {path} fails its sha256 check (expected {BUNDLED_SHA256}, got {got})")
    return _build("imdb-mini", str(path), got, val_size, seed, params)


@DATASETS.register("imdb", check_params=check_params, kind="text")
def imdb(data_dir: str | None = None, val_size: int = 1000, seed: int = 0, **params) -> Dataset:
    """Full IMDb from the hub (online), or a local jsonl/parquet file or folder via `data_dir`."""
    if data_dir is None:
        source, key = "hub", "hub:imdb"
    else:
        p = Path(data_dir)
        if p.is_dir():
            p = p / "imdb_subset.jsonl.gz"
        if not p.is_file():
            raise ConfigError("data_dir", data_dir, "a .jsonl[.gz] or .parquet file, or a folder holding "
                              "imdb_subset.jsonl.gz")
        source, key = str(p), sha256_file(p)
    try:
        return _build("imdb", source, key, val_size, seed, params)
    except (ConfigError, ArtifactError):
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds when offline
        raise RaysweepError(f"dataset=imdb could not be loaded from {source} ({type(e).__name__}: {e}); "
                            "pass --data-dir with a local copy, or use imdb-mini") from e

