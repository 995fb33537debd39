"""The house's layers (docs/architecture.md) hold: a module imports from another package only if that package
is in a layer above it, no import cycle (imports inside functions counted), no private name across packages."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def layers(root: Path = ROOT) -> dict[str, int]:
    """name -> layer, read from docs/architecture.md's ```layers block."""
    text = (root / "docs" / "architecture.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S).group(1)
    out = {}
    for line in block.splitlines():
        m = re.match(r"(\d+)\s+(.+?)(?:\s{2,}|$)", line)
        for name in m.group(2).split(","):
            out[name.strip()] = int(m.group(1))
    return out


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for f in (root / "raysweep").rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """module -> {(imported raysweep module, names imported from it)}, every import statement of the file."""
    out = {}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        found = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom):
                if n.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                    target = ".".join(base + ([n.module] if n.module else []))
                else:
                    target = n.module or ""
                for a in n.names:
                    full = f"{target}.{a.name}"
                    found.add((full, ()) if full in mods else (target, (a.name,)))
            elif isinstance(n, ast.Import):
                found |= {(a.name, ()) for a in n.names}
        resolved = set()
        for target, names in found:
            while target and target not in mods:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            # a module's own parent packages are imported by Python anyway: not an edge, unless names are
            # taken from the package's namespace (`from raysweep import X`: the package face)
            if target and target != m and (names or not m.startswith(target + ".")):
                resolved.add((target, names))
        out[m] = resolved
    return out


def layer_of(module: str, table: dict[str, int]) -> int | None:
    if module == "raysweep":
        return table.get("raysweep")
    first = module.split(".")[1]
    return table.get(first)


def package_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "raysweep"


def check_layers(root: Path) -> None:
    table, mods = layers(root), modules(root)
    unplaced = sorted(m for m in mods if layer_of(m, table) is None)
    assert not unplaced, f"modules without a layer in docs/architecture.md: {unplaced}"
    against = [f"{m} (layer {layer_of(m, table)}) imports {t} (layer {layer_of(t, table)})"
               for m, targets in imports(mods).items() for t, _ in targets
               if package_of(t) != package_of(m) and layer_of(t, table) >= layer_of(m, table)]
    assert not against, "imports against the layer order:\n" + "\n".join(sorted(against))


def check_cycles(root: Path) -> None:
    mods = modules(root)
    edges = {m: {t for t, _ in targets} for m, targets in imports(mods).items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(mods):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def check_private_names(root: Path) -> None:
    mods = modules(root)
    crossing = []
    for m, targets in imports(mods).items():
        home = m.split(".")[1] if "." in m else ""
        for t, names in targets:
            there = t.split(".")[1] if "." in t else ""
            crossing += [f"{m} imports {t}.{n}" for n in names if n.startswith("_") and not n.startswith("__")
                         and there != home]
    assert not crossing, "private names used across packages:\n" + "\n".join(crossing)


def test_every_module_has_a_layer_and_imports_only_from_its_own_or_earlier_layers():
    check_layers(ROOT)


def test_no_import_cycle_counting_imports_inside_functions():
    check_cycles(ROOT)


def test_no_private_name_is_imported_from_another_package():
    check_private_names(ROOT)


def test_each_check_fails_on_a_package_that_breaks_its_rule(tmp_path):
    """Made-up packages that break each rule: an upward import inside a function (which also closes a
    cycle), a private name taken across packages, an import from the package face, and one between two
    packages of the same layer: every check must fail on its case."""
    pkg = tmp_path / "raysweep"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("_hidden = 1\n\n\ndef f():\n    from ..high import b\n")
    (pkg / "high.py").write_text("from .low.a import _hidden, f\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.md").write_text("```layers\n0  low  the lower\n1  high  the upper\n"
                                                      "2  raysweep  the face\n```\n")
    for check in (check_layers, check_cycles, check_private_names):
        with pytest.raises(AssertionError):
            check(tmp_path)
    face = tmp_path / "face"
    (face / "raysweep" / "low").mkdir(parents=True)
    (face / "raysweep" / "__init__.py").write_text("from .low.a import f\nFACE = 1\n")
    (face / "raysweep" / "low" / "__init__.py").write_text("")
    (face / "raysweep" / "low" / "a.py").write_text("def f():\n    from raysweep import FACE\n")
    (face / "raysweep" / "side.py").write_text("from .low import a\n")  # same layer as low
    (face / "docs").mkdir()
    (face / "docs" / "architecture.md").write_text("```layers\n0  low, side  the lower\n1  raysweep  the face\n```\n")
    for check in (check_layers, check_cycles):
        with pytest.raises(AssertionError):
            check(face)


def test_the_package_face_names_shadow_no_subpackage_or_module():
    """`raysweep.prepare_scenario` may not be called `raysweep.prepare`: that name is the subpackage, and
    binding a function to it breaks `import raysweep.prepare.scenario` and every dotted path into it."""
    import raysweep

    inner = {p.stem if p.is_file() else p.name for p in (ROOT / "raysweep").iterdir() if p.suffix == ".py" or
             (p / "__init__.py").is_file()}
    assert not inner & set(raysweep.__all__)
    for name in inner - {"__init__", "__main__"}:
        assert not callable(getattr(raysweep, name, None)) or isinstance(getattr(raysweep, name), type(raysweep))


def test_the_readme_python_example_uses_only_the_package_face():
    import raysweep

    text = (ROOT / "README.md").read_text()
    block = text[text.index("```python"):].split("```")[1]
    assert "import raysweep" in block and "from raysweep" not in block
    used = set(re.findall(r"raysweep\.([A-Za-z_]+)", block))
    assert used and used <= set(raysweep.__all__), used - set(raysweep.__all__)
