"""The import contract: the engine and the verifier reach the world only through pinrun.world."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "pinrun"
GUARDED = [path for part in ("engine", "verifier") for path in sorted((ROOT / part).rglob("*.py"))]

# Modules that read the clock, draw randomness or reach the network or other processes.
FORBIDDEN_MODULES = {
    "random", "secrets", "uuid", "time", "socket", "ssl", "http", "urllib", "requests",
    "httpx", "aiohttp", "subprocess", "asyncio.subprocess", "multiprocessing", "openai",
    "anthropic",
}
# Attributes that read the world through modules the engine may import for other
# reasons, by the object they are read from. (ctx.now() and world.now() are the
# sanctioned doors, so only these owners count.)
FORBIDDEN_ATTRIBUTES = {
    "now": ("datetime", "date"), "utcnow": ("datetime",), "today": ("datetime", "date"),
    "urandom": ("os",), "getenv": ("os",), "environ": ("os",), "getrandom": ("os",),
    "uuid1": ("uuid",), "uuid4": ("uuid",),
}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    type_checking_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking_lines |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        line = getattr(node, "lineno", 0)
        for name in names:
            if line not in type_checking_lines and (
                    name in FORBIDDEN_MODULES or name.split(".")[0] in FORBIDDEN_MODULES):
                found.append(f"{path.name}:{line} imports {name}")
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            owner = ast.unparse(node.value).rsplit(".", 1)[-1]
            if owner in FORBIDDEN_ATTRIBUTES[node.attr]:
                found.append(f"{path.name}:{node.lineno} uses {owner}.{node.attr}")
    return found


def test_there_is_engine_code_to_check() -> None:
    """The contract covers real modules (it would pass vacuously on an empty engine)."""
    assert any(path.name == "context.py" for path in GUARDED)


@pytest.mark.parametrize("path", GUARDED, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_and_replay_import_no_world(path: Path) -> None:
    """No engine or replay module imports a clock, randomness or network module itself."""
    assert _violations(path) == []


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    """The checker really flags forbidden imports and calls (so the test above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import random\nimport datetime\nfrom time import time\n"
                   "x = datetime.datetime.now()\nimport os\ny = os.environ['X']\n"
                   "z = ctx.now()\n")
    assert _violations(bad) == [
        "bad.py:1 imports random", "bad.py:3 imports time", "bad.py:4 uses datetime.now",
        "bad.py:6 uses os.environ",
    ]
