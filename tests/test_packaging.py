"""The package as it installs: every package listed in pyproject.toml, and a wheel that carries the search
spaces of every registered method and finds them outside the repository."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_of_the_tree():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "raysweep").rglob("__init__.py")}
    assert tree | {"raysweep.search_spaces"} == listed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    return next(out.glob("raysweep-*.whl"))


def test_the_wheel_carries_every_registered_methods_search_space(wheel):
    from raysweep.unlearn import METHODS

    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [m for m in METHODS.names() if f"raysweep/search_spaces/{m}.yaml" not in names]
    assert not missing, f"search spaces missing from the wheel: {missing}"
    assert "raysweep/data/bundled/cifar10_subset.npz" in names


def test_an_installed_wheel_finds_its_spaces_from_an_empty_folder(wheel, tmp_path):
    """Installed (not editable) into its own folder and run from an empty one: the spaces come from the
    installed package, not from this checkout."""
    target, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    code = ("import raysweep, sys; from raysweep.sweep.spaces import default_dir, load_space; "
            "print(raysweep.__file__); print(default_dir()); print(load_space('gd').method)")
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    # -S keeps this environment's site-packages (and its editable raysweep) out; the dependencies come after
    deps = [p for p in sys.path if p.endswith("site-packages")]
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path += {deps!r}; " + code], cwd=empty,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    pkg_file, spaces, method = out.stdout.split()
    assert Path(pkg_file).is_relative_to(target) and Path(spaces).is_relative_to(target)
    assert method == "gd"
