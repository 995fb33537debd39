"""A name -> factory registry, so that a new dataset, model, attack or unlearner is one file.

Each registry finds its entries itself, the first time it is asked: every module of its own package
(a new file there registers itself on import, no import list to keep), then plug-ins from other
packages (entry points in the group `raysweep.<kind>s`), then the modules or .py files named in
`$RAYSWEEP_PLUGINS` (comma-separated; Ray workers inherit it, so a sweep's trials find them too).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path
from typing import Callable, Generic, TypeVar

from .errors import ConfigError, PluginError, RaysweepError

T = TypeVar("T")
_loaded_plugins: set[str] = set()


def loaded_plugins() -> str:
    """The plug-ins this process loaded, in the form load_plugins takes (for a sweep's workers)."""
    return ",".join(sorted(_loaded_plugins))


def load_plugins(spec: str | None = None, source: str = "RAYSWEEP_PLUGINS") -> None:
    """Import the plug-ins named in `spec` (default $RAYSWEEP_PLUGINS): module names or .py paths.
    `source` names where the list came from in an error (a sweep's sweep.json records its own)."""
    for item in filter(None, (s.strip() for s in (spec if spec is not None else
                                                   os.environ.get("RAYSWEEP_PLUGINS", "")).split(","))):
        if item.endswith(".py"):
            item = str(Path(item).resolve())  # workers elsewhere get the absolute path
        if item in _loaded_plugins:
            continue
        if item.endswith(".py") and not Path(item).is_file():
            raise ConfigError(source, item, "module names or paths of existing .py files")
        _loaded_plugins.add(item)  # first: a plug-in may import raysweep modules that load plug-ins
        try:
            if item.endswith(".py"):
                name = f"raysweep_plugin_{Path(item).stem}"
                mod_spec = importlib.util.spec_from_file_location(name, item)
                module = importlib.util.module_from_spec(mod_spec)
                sys.modules[name] = module  # so pickled references to its classes resolve
                mod_spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
        except RaysweepError:
            _loaded_plugins.discard(item)
            raise
        except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure of a user's file (sys.exit too): one line
            _loaded_plugins.discard(item)
            what = f"called sys.exit({e.code!r})" if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
            raise PluginError(f"plug-in {item} (from {source}) failed to load: {what}".replace("\n", " ")) from None


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package  # the package whose modules register entries of this kind
        self._items: dict[str, T] = {}
        self._found = package is None

    def register(self, name: str, **attrs) -> Callable[[T], T]:
        """Decorator; `attrs` are set on the registered object (e.g. a dataset's `check_params`)."""
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            for k, v in attrs.items():
                setattr(obj, k, v)
            self._items[name] = obj
            return obj

        return deco

    def _discover(self) -> None:
        if self._found:
            return
        self._found = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{self.package}.{info.name}")
        from importlib.metadata import entry_points

        for ep in entry_points(group=f"raysweep.{self.kind}s"):
            ep.load()
        load_plugins()

    def get(self, name: str, field: str | None = None) -> T:
        self._discover()
        if not isinstance(name, str) or name not in self._items:
            raise ConfigError(field or self.kind, name, f"choose one of {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._items
