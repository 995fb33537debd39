"""Share a sweep: persistent Optuna studies (one per method) and MLflow runs (one per trial).

- `check_optuna_storage` / `open_optuna_storage` / `optuna_study_kwargs` / `StoredOptunaSearch`: one study per method,
  named `<sweep>-<method>`, in an RDB (sqlite, PostgreSQL, MySQL) or a journal file, so that
  `optuna-dashboard URL` and `optuna.load_study` open it and `--resume` continues it.
- `check_mlflow_uri` / `mlflow_callback`: every trial as an MLflow run, through Ray's MLflowLoggerCallback.
Each check runs before any training and fails with one ConfigError naming the field.
"""
from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from ray.tune.search.optuna import OptunaSearch

from ..errors import ConfigError

# ---------------------------------------------------------------------------------------------- Optuna storage

OPTUNA_ALLOWED = ("sqlite:///PATH (e.g. sqlite:///sweeps.db), postgresql://USER:PASS@HOST/DB, "
                  "mysql://USER:PASS@HOST/DB, or journal:///PATH (an Optuna journal file)")


def _shown(url):
    """The URL for messages: a password in it becomes ***."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url) if isinstance(url, str) else url


def _writable_file(path: Path) -> bool:
    """`path` can be created or written: tried for real (os.access says yes to root even on read-only mounts)."""
    try:
        if path.exists():
            if not path.is_file():
                return False
            with open(path, "ab"):
                return True
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return False
        with tempfile.TemporaryFile(dir=parent):
            return True
    except OSError:
        return False


def _local_path(url: str, prefix: str, field_: str, allowed: str) -> Path:
    rest = url[len(prefix):]
    if not rest or rest == ":memory:" or rest.startswith("?"):
        raise ConfigError(field_, url, f"a file path after {prefix} (a persistent store): {allowed}")
    path = Path(rest.split("?", 1)[0]).expanduser().resolve()
    if not _writable_file(path):
        raise ConfigError(field_, url, f"a file path this user can create or write ({path} is not)")
    return path


def check_optuna_storage(url: str) -> str:
    """Validate an Optuna storage URL without opening it; returns it normalised (absolute sqlite/journal path)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("optuna_storage", url, OPTUNA_ALLOWED)
    scheme = url.split("://", 1)[0].lower()
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        if not url.startswith("sqlite:///"):
            raise ConfigError("optuna_storage", url, "sqlite:///PATH (three slashes, four for an absolute path)")
        query = "?" + url.split("?", 1)[1] if "?" in url else ""
        path = _local_path(url, 'sqlite:///', 'optuna_storage', OPTUNA_ALLOWED)
        if path.is_file() and path.stat().st_size and path.read_bytes()[:16] != b"SQLite format 3\x00":
            raise ConfigError("optuna_storage", url, f"a SQLite database file or a new path ({path} is another kind "
                              "of file)")
        return f"sqlite:///{path}{query}"
    if base == "journal":
        if not url.startswith("journal:///"):
            raise ConfigError("optuna_storage", url, "journal:///PATH (three slashes, four for an absolute path)")
        return f"journal:///{_local_path(url, 'journal:///', 'optuna_storage', OPTUNA_ALLOWED)}"
    if base in ("postgresql", "mysql", "mariadb"):
        from sqlalchemy.engine import make_url

        try:
            parsed = make_url(url)
        except Exception as e:  # noqa: BLE001 - sqlalchemy raises several kinds
            raise ConfigError("optuna_storage", _shown(url), f"a database URL sqlalchemy can read ({e})") from None
        if not parsed.host or not parsed.database:
            raise ConfigError("optuna_storage", _shown(url), "a URL with a host and a database: " + OPTUNA_ALLOWED)
        try:
            parsed.get_dialect().import_dbapi()
        except ImportError as e:
            driver = scheme.split("+", 1)[1] if "+" in scheme else \
                "'psycopg[binary]'" if base == "postgresql" else "mysqlclient (or pymysql, with mysql+pymysql://)"
            raise ConfigError("optuna_storage", _shown(url),
                              f"an installed database driver ({e}): pip install {driver}") from None
        return url
    raise ConfigError("optuna_storage", _shown(url), OPTUNA_ALLOWED)


def study_name(sweep_name: str, method: str) -> str:
    return f"{sweep_name}-{method}"


def open_optuna_storage(url: str, sweep_name: str | None = None, methods=(), resume: bool = False):
    """Open (create) the storage once, before any training. A new sweep (resume=False) refuses a storage that
    already holds one of its studies; a resumed one continues them. Returns an optuna BaseStorage."""
    import optuna

    url = check_optuna_storage(url)
    try:
        if url.startswith("journal:///"):
            path = Path(url[len("journal:///"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        else:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///"):].split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.RDBStorage(url)
        existing = {s.study_name for s in storage.get_all_studies()}
    except Exception as e:  # noqa: BLE001 - connection, permissions, a file that is no database
        msg = _shown(str(e).strip().splitlines()[0]) if str(e).strip() else type(e).__name__
        raise ConfigError("optuna_storage", _shown(url), f"a storage that opens ({msg[:200]})") from None
    clash = [study_name(sweep_name, m) for m in methods if study_name(sweep_name, m) in existing] \
        if sweep_name and not resume else []
    if clash:
        raise ConfigError("name", sweep_name, f"a name whose studies are not in {_shown(url)} yet ({', '.join(clash)} "
                          "exist: pass --resume to continue them, or a new --name)")
    return storage


def optuna_study_kwargs(storage, sweep_name: str, method: str) -> dict:
    """Keyword arguments for StoredOptunaSearch: the study `<sweep>-<method>` in `storage` (an opened storage or
    a URL), created or, on resume, loaded (OptunaSearch creates studies with load_if_exists=True)."""
    if isinstance(storage, str):
        storage = open_optuna_storage(storage)
    return {"study_name": study_name(sweep_name, method), "storage": storage}


class StoredOptunaSearch(OptunaSearch):
    """OptunaSearch for a persistent study. The study can be ahead of Tune's last searcher checkpoint (a trial
    that ended after it, then a hard stop); a resumed sweep reruns such a trial, and OptunaSearch would then
    fail the whole run on `report` to a finished Optuna trial. Here the study keeps the trial's first end."""

    def _finished_in_study(self, trial_id: str) -> bool:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or self._storage is None:
            return False
        return self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished()  # noqa: SLF001

    def on_trial_result(self, trial_id: str, result: dict):
        if not self._finished_in_study(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if self._finished_in_study(trial_id):
            self._completed_trials.add(trial_id)
        else:
            super().on_trial_complete(trial_id, result, error)


# ---------------------------------------------------------------------------------------------- MLflow

MLFLOW_ALLOWED = ("a folder (a file store, e.g. ./mlruns), a file:// URI, sqlite:///PATH (MLflow's database store), "
                  "or an http(s):// tracking server")
MLFLOW_INSTALL = "the mlflow package: pip install 'raysweep[mlflow]'"


def check_mlflow_uri(uri: str) -> str:
    """Validate an MLflow tracking URI before any training; returns it normalised (a file store as file://)."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("mlflow", uri, MLFLOW_INSTALL)
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("mlflow", uri, MLFLOW_ALLOWED)
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not parsed.hostname:
            raise ConfigError("mlflow", _shown(uri), f"a server URL with a host: {MLFLOW_ALLOWED}")
        return uri
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise ConfigError("mlflow", uri, "sqlite:///PATH (three slashes, four for an absolute path)")
        return f"sqlite:///{_local_path(uri, 'sqlite:///', 'mlflow', MLFLOW_ALLOWED)}"
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError("mlflow", uri, f"a local file:// URI (file:///PATH): {MLFLOW_ALLOWED}")
        path = Path(parsed.path)
    elif "://" in uri or (scheme and len(scheme) > 1):
        raise ConfigError("mlflow", uri, MLFLOW_ALLOWED)
    else:
        path = Path(uri)
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError("mlflow", uri, f"a folder for the file store: {path} is a file")
    probe = path / "meta.yaml"          # the folder can be created, or written if it exists
    if not _writable_file(probe if path.exists() else path):
        raise ConfigError("mlflow", uri, f"a folder this user can create or write ({path} is not)")
    return path.as_uri()


def mlflow_callback(uri: str, experiment_name: str, method_of: str | Callable | None = None,
                    tags: dict | None = None):
    """Ray Tune's MLflow callback: one MLflow run per trial (its hyperparameters as params, every report as
    metrics) in the experiment `experiment_name` (the sweep's name), tagged with the trial's method. The
    experiment is created (or reused) when the Tuner starts, in the driver process (mlflow_run.py)."""
    uri = check_mlflow_uri(uri)
    try:  # imported here: Ray's MLflow integration imports mlflow itself (slow), wanted only with --mlflow
        from .mlflow_run import MethodTaggedMLflow

        return MethodTaggedMLflow(tracking_uri=uri, experiment_name=experiment_name, tags=dict(tags or {}),
                                  save_artifact=False, method_of=method_of)
    except ImportError:             # Ray imports mlflow when the callback is built
        raise ConfigError("mlflow", uri, MLFLOW_INSTALL) from None


def __getattr__(name: str):
    """`trackers.MethodTaggedMLflow`, where a sweep started before it moved to mlflow_run.py pickled it."""
    if name == "MethodTaggedMLflow":
        from .mlflow_run import MethodTaggedMLflow

        return MethodTaggedMLflow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
