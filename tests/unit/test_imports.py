"""Imports run one way: config -> results -> images/registry -> hosts -> cells -> session/plugin -> cli.

Each module of harness/ has a layer; importing a module of a higher layer fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[2] / "harness"

# (module prefix, layer); the longest matching prefix wins. Modules of one layer may import each other.
LAYERS = [
    ("harness", 0),  # the package's __init__: its version
    ("harness.config", 0),
    ("harness.cache", 1),
    ("harness.mmdebstrap", 1),
    ("harness.daemon", 1),
    ("harness.progress", 1),
    ("harness.runs", 1),
    ("harness.context", 1),
    ("harness.results", 2),
    ("harness.supportability", 2),
    ("harness.report", 2),
    ("harness.images", 3),
    ("harness.registry", 3),
    ("harness.engines", 3),
    ("harness.hosts", 4),
    ("harness.setup", 4),
    ("harness.cleanup", 4),
    ("harness.cells", 5),
    ("harness.supply", 5),
    ("harness.session", 6),
    ("harness.reproduce", 6),
    ("harness.pytest_plugin", 6),
    ("harness.plugin", 6),
    ("harness.cli", 7),
]


def layer(module: str) -> int:
    matches = [(len(prefix), rank) for prefix, rank in LAYERS if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} has no layer: add it to LAYERS"
    return max(matches)[1]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every harness import in the file, at any depth (inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name == "harness" or name.startswith("harness.")]


def upward_imports(root: Path = HARNESS) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for line, imported in imports(path):
            if layer(imported) > layer(importer):
                found.append(f"{path.relative_to(root.parent)}:{line}: {importer} (layer {layer(importer)}) imports {imported} (layer {layer(imported)})")
    return found


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_an_upward_import_is_found(tmp_path):
    """The check itself can fail: a results module importing a host module is reported."""
    fake = tmp_path / "harness" / "results"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from harness.hosts.fleet import Fleet\n")
    assert upward_imports(tmp_path / "harness") == ["harness/results/bad.py:2: harness.results.bad (layer 2) imports harness.hosts.fleet (layer 4)"]
