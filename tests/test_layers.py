"""The layers check: each part of pinrun imports only the parts below it.

From the bottom: the leaf modules (``errors``, ``safe_text``, ``_version``,
``data_classes``, ``_data_class_code``),
``artifacts/`` (the store), ``remote/`` (moving packs and refs to a shared
store), ``flows/`` (what gets pinned), ``world/`` (the only
door to the outside: clock, entropy, guards, stand-ins, processes),
``engine/`` (the level walker), ``verifier/``, ``cli/``, and on top the
package's front (``pinrun/__init__.py``, ``__main__``, the pytest plugin).
Imports under ``TYPE_CHECKING`` are annotations only, never run: they are
not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "pinrun"

#: Each part's height: a module may import a part of its own height or lower.
LAYERS = {
    "errors": 0, "safe_text": 0, "_version": 0, "data_classes": 0, "_data_class_code": 0,
    "artifacts": 1, "remote": 2, "flows": 3, "world": 4, "engine": 5, "verifier": 6,
    "cli": 7, "pytest_plugin": 8, "__main__": 8, "": 8,
}
MODULES = sorted(ROOT.rglob("*.py"))


def _part(dotted: str) -> str:
    """The part of a ``pinrun...`` module name: its first component after pinrun."""
    pieces = dotted.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def violations(path: Path, name: str) -> list[str]:
    """Every import in the file at ``path`` (module ``name``) of a part above its own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotations_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            annotations_only |= {id(inner) for inner in ast.walk(node)}
    mine = LAYERS[_part(name)]
    found = []
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # from pinrun import world: the names may be parts themselves
            targets = [f"{node.module}.{alias.name}" if node.module == "pinrun" else node.module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "pinrun":
                continue
            part = _part(target)
            if LAYERS.get(part, LAYERS[""]) > mine:
                found.append(f"{name}:{node.lineno} imports {target} "
                             f"({part or 'pinrun'} is above {_part(name) or 'pinrun'})")
    return found


def test_every_part_has_a_layer() -> None:
    """A new folder or top-level module must be given its place before it can be used."""
    parts = {_part(_module_name(path)) for path in MODULES}
    assert parts <= set(LAYERS), f"give these a layer: {sorted(parts - set(LAYERS))}"
    assert {"artifacts", "flows", "world", "engine", "verifier", "cli"} <= parts


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_only(path: Path) -> None:
    """No module imports a part above its own."""
    assert violations(path, _module_name(path)) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The check really flags what it must (so the test above can fail), and lets
    annotations and downward imports through."""
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\n"
                   "from pinrun.artifacts.digest import Digest\n"
                   "from pinrun.engine.walk import walk\n"
                   "import pinrun.verifier.report\n"
                   "from pinrun import world\n"
                   "if TYPE_CHECKING:\n    from pinrun.cli.main import main\n")
    assert violations(bad, "pinrun.flows.bad") == [
        "pinrun.flows.bad:3 imports pinrun.engine.walk (engine is above flows)",
        "pinrun.flows.bad:4 imports pinrun.verifier.report (verifier is above flows)",
        "pinrun.flows.bad:5 imports pinrun.world (world is above flows)",
    ]
    assert violations(bad, "pinrun.cli.bad") == []
