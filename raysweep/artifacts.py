"""Content-addressed artifact store.

A scenario's artifacts live in `<root>/scenarios/<hash>/`: manifest.json, initial.safetensors,
retrain.safetensors, poison.safetensors; the clean base model a head-fine-tuning victim shares with
other scenarios in `<root>/bases/<hash>/` (prepare/base_model.py). A directory is built under a
temporary name and renamed into place in one step, so a reader sees a whole artifact or none. The
manifest records each file's sha256, checked on load. All I/O goes through `Store`, so a shared
filesystem or object store can stand in for `LocalStore` on a cluster.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import ArtifactError, ConfigError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)` on a uniquely named temp file in `path`'s folder, fsync it, rename it
    onto `path`: a reader sees the old file or the whole new one, and two writers never share a temp."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report or manifest is meant to be shared
        write(Path(tmp))
        fsync_path(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder + rename."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def check_writable_dir(field: str, path, what: str = "a folder raysweep can create and write") -> Path:
    """Refuse, before anything runs, a folder that cannot be written: one under a regular file, on a
    read-only or virtual file system (/proc), a name over the file system's limit, no permission. The
    probe is a temporary file in the nearest existing folder, removed at once: nothing is left behind.
    Returns the absolute path."""
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(field, text, f"{what}: a local or shared (NFS) folder path, or file://PATH")
    p = Path(text.removeprefix("file://")).expanduser().absolute()
    try:
        probe = p
        while not probe.exists():  # a name over the file system's limit raises here (ENAMETOOLONG)
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(field, str(path), f"{what} ({probe} is a file)")
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".raysweep-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(field, str(path), f"{what} ({e.strerror or type(e).__name__} at {probe})") from None
    return p


def read_json(path: Path, remedy: str, expect: type = dict):
    """The one reader of raysweep's JSON files (manifests, sweep.json, params.json, ledger entries): the
    parsed value, or one ArtifactError naming the file, what is wrong and `remedy` (what to do) for any
    damage: unreadable, not UTF-8, truncated or not JSON, or not of the `expect`ed type."""
    path = Path(path)
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise ArtifactError(f"{path} is damaged ({reason}): {remedy}") from None
    if expect is not None and not isinstance(value, expect):
        raise ArtifactError(f"{path} is damaged (a JSON {type(value).__name__}, not a {expect.__name__}): {remedy}")
    return value


def read_json_lines(path: Path) -> list[dict]:
    """A JSON-lines file's records in order ([] when there is none), without a line cut by a kill: a
    resumed writer appends after it (Tune's result.json, the early stoppers' decisions)."""
    rows = []
    lines = Path(path).read_bytes().splitlines() if Path(path).is_file() else []
    for line in filter(bytes.strip, lines):
        try:
            row = json.loads(line.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):  # a line that is not a record is damage, skipped like a cut one
            rows.append(row)
    return rows


def append_json_line(path: Path, record: dict) -> None:
    """`record` as one line at the end of a JSON-lines file, on a line of its own even after a line cut by
    a kill (`read_json_lines` then skips only the cut one)."""
    with open(path, "ab+") as f:
        if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
            f.write(b"\n")
        f.write((json.dumps(record, default=float) + "\n").encode())


def atomic_write_table(df, path: Path) -> Path:
    """A pandas table as .parquet or .csv (by `path`'s suffix), written atomically."""
    path = Path(path)
    if path.suffix == ".parquet":
        atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return path


class Store:
    """The interface: `has`, `open_dir` (a local path to read), `publish` (atomic), and `uri`, which
    `open_store` turns back into the same store (what sweep.json records; a Store also pickles, so
    trials on a cluster receive the object itself)."""

    uri: str = ""

    def has(self, key: str) -> bool:
        raise NotImplementedError

    def open_dir(self, key: str) -> Path:
        raise NotImplementedError

    def staging(self, key: str) -> Path:
        """A fresh local folder to build `key` in."""
        raise NotImplementedError

    def publish(self, key: str, staged: Path) -> Path:
        raise NotImplementedError


def open_store(store: "Store | str | os.PathLike") -> "Store":
    """The one place a store's address becomes a Store: a Store as is, a path (or file://) a LocalStore."""
    if isinstance(store, Store):
        return store
    text = os.fspath(store)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError("store", text, "a local or shared (NFS) folder path, or file://PATH")
    return LocalStore(text.removeprefix("file://"))


class LocalStore(Store):
    """A folder on a local or shared (NFS) filesystem."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    @property
    def uri(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "manifest.json").is_file()

    def open_dir(self, key: str) -> Path:
        p = self.path(key)
        if not p.is_dir():
            raise ArtifactError(f"artifact {key} is not in the store {self.root}: run `raysweep prepare` first")
        return p

    def staging(self, key: str) -> Path:
        """A fresh build folder `.<name>.<host>-<pid>.<random>.tmp`; staging folders left by a process
        of this host that is gone (killed mid-build) are removed first."""
        parent = self.path(key).parent
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(parent)
        host = socket.gethostname().replace(".", "_").replace("-", "_")
        return Path(tempfile.mkdtemp(dir=parent, prefix=f".{Path(key).name}.{host}-{os.getpid()}.", suffix=".tmp"))

    def publish(self, key: str, staged: Path) -> Path:
        final = self.path(key)
        try:
            os.rename(staged, final)
        except OSError:
            if self.has(key):  # built concurrently by someone else: keep theirs
                shutil.rmtree(staged, ignore_errors=True)
            else:
                raise
        fsync_path(final.parent)
        return final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(parent: Path) -> list[Path]:
    """Remove `.*.<host>-<pid>.*.tmp` folders in `parent` whose process (on this host) no longer runs."""
    host = socket.gethostname().replace(".", "_").replace("-", "_")
    removed = []
    for p in parent.glob(".*.tmp"):
        parts = p.name.split(".")
        owner = next((x for x in parts if x.startswith(f"{host}-")), None)
        if not p.is_dir() or owner is None or not owner[len(host) + 1:].isdigit():
            continue
        if not _alive(int(owner[len(host) + 1:])):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def save_tensors(folder: Path, name: str, tensors: dict[str, torch.Tensor]) -> str:
    """Save to folder/name (safetensors); returns its sha256."""
    path = folder / name
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    fsync_path(path)
    return sha256_file(path)


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str))


def read_manifest(folder: Path) -> dict:
    p = folder / "manifest.json"
    if not p.is_file():
        raise ArtifactError(f"artifact {folder} has no manifest.json: delete the folder and run prepare again")
    again = f"delete {folder} and run prepare again"
    manifest = read_json(p, again)
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"artifact {p} lacks {', '.join(missing)}: {again}")
    files = manifest["files"]
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise ArtifactError(f"artifact {p} is damaged (files: a mapping of file names to sha256 expected): {again}")
    for key in ("config", "metrics", "compute"):
        if not isinstance(manifest[key], dict):
            raise ArtifactError(f"artifact {p} is damaged ({key}: a mapping expected): {again}")
    return manifest


MANIFEST_KEYS = ("hash", "config", "metrics", "compute", "files")


def verify(folder: Path, manifest: dict) -> None:
    """Check every file the manifest lists against its sha256 (without loading it)."""
    for name, want in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"artifact file {path} is missing: delete {folder} and run prepare again")
        got = sha256_file(path)
        if got != want:
            raise ArtifactError(f"artifact file {path} fails its checksum (manifest {want}, file {got}): "
                                f"delete {folder} and run prepare again")


def load_tensors(folder: Path, name: str, manifest: dict) -> dict[str, torch.Tensor]:
    """Load folder/name after checking it against the manifest's sha256."""
    path = folder / name
    if not path.is_file():
        raise ArtifactError(f"artifact file {path} is missing: delete {folder} and run prepare again")
    want = manifest.get("files", {}).get(name)
    got = sha256_file(path)
    if want != got:
        raise ArtifactError(f"artifact file {path} fails its checksum (manifest {want}, file {got}): "
                            f"delete {folder} and run prepare again")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own errors on garbage
        raise ArtifactError(f"artifact file {path} is not a tensor file ({type(e).__name__}): delete {folder} and "
                            "run prepare again") from None
