"""Review of eb93752: ``_is_local_path``'s text fast path answers what the code before it
answered (``resolved_file``, ``Path.resolve``), for odd paths, links and roots.

The code before the fast path is kept here (``_before``) and asked with its caches
cleared; so is the plain reference (``Path.resolve`` of both sides).
"""

from __future__ import annotations

import itertools
import os
import random
import sysconfig
from pathlib import Path

import pytest

from pinrun.flows import project


def _clear() -> None:
    for cached in (project._is_local_path, project.resolved_file, project._resolved_folder,
                   project._resolved_folder_text, project._resolved_text, project._resolved,
                   project.is_library_file):
        cached.cache_clear()


def _before(path: str, root: Path) -> bool:
    """``_is_local_path`` as it was before eb93752 (no text fast path), uncached."""
    resolved, resolved_root = Path(path).resolve(), root.resolve()
    if not str(resolved).startswith(str(resolved_root)):
        return False
    return resolved.is_relative_to(resolved_root) and not _library(path)


def _library(path: str) -> bool:
    resolved = Path(path).resolve()
    places = [Path(place).resolve() for key, place in sysconfig.get_paths().items()
              if key in ("stdlib", "platstdlib", "purelib", "platlib")]
    return bool({"site-packages", "dist-packages"} & set(resolved.parts)) or \
        any(resolved.is_relative_to(place) for place in places)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Folders, links to folders (absolute, relative, to a parent, dangling, looping),
    links to files (chains of them), odd names."""
    real = tmp_path / "real"
    (real / "pkg" / "deep").mkdir(parents=True)
    for file in ("pkg/mod.py", "pkg/deep/d.py", "other.py", "pkg/a b.py", "pkg/é.py",
                 "pkg/x.", "pkg/...", "top.py"):
        (real / file).write_text("")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    (tmp_path / "rel").symlink_to("real", target_is_directory=True)
    (real / "pkg" / "up").symlink_to("..", target_is_directory=True)
    (real / "pkg" / "down").symlink_to("deep", target_is_directory=True)
    (real / "pkg" / "alias.py").symlink_to(real / "other.py")
    (real / "pkg" / "chain.py").symlink_to("alias.py")
    (real / "pkg" / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    (real / "pkg" / "loop_a").symlink_to("loop_b")
    (real / "pkg" / "loop_b").symlink_to("loop_a")
    (tmp_path / "into.py").symlink_to(real / "pkg" / "mod.py")
    (tmp_path / "root_file_link").symlink_to(real / "top.py")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "back").symlink_to(real / "pkg", target_is_directory=True)
    (tmp_path / "realx").mkdir()  # its text starts with real's
    (tmp_path / "realx" / "m.py").write_text("")
    return tmp_path


def _paths(base: Path) -> list[str]:
    parts = ["real", "linked", "rel", "pkg", "up", "down", "deep", "..", ".", "", "outside",
             "back", "realx", "REAL", "nowhere"]
    names = ["mod.py", "d.py", "other.py", "alias.py", "chain.py", "dangling.py", "a b.py",
             "é.py", "x.", "...", "top.py", "m.py", "into.py", "root_file_link", "loop_a",
             "..", ".", "missing.py"]
    found = {str(base / name) for name in names}
    for depth in (1, 2, 3):
        for middle in itertools.product(parts, repeat=depth):
            for name in names:
                found.add("/".join([str(base), *middle, name]))
    chosen = sorted(found)
    random.Random(1234).shuffle(chosen)
    return [*chosen[:6000], "/", "//", "/x.py", "//x.py", f"{base}/", f"{base}/.",
            f"{base}//real/top.py", f"{base}/real/./top.py"]


def _roots(base: Path) -> list[Path]:
    return [base / "real", base / "linked", base / "rel", base, base / "real" / "pkg",
            Path(f"{base}/real/"), Path(f"{base}/real/pkg/../pkg"), base / "real" / "pkg" / "up",
            base / "root_file_link", base / "outside" / "back", base / "REAL", Path("/")]


def _ask(path: str, root: Path) -> object:
    try:
        return project.is_project_file(path, root)
    except (RuntimeError, OSError, ValueError) as exc:
        return type(exc)


def _ask_before(path: str, root: Path) -> object:
    try:
        return _before(path, root)
    except (RuntimeError, OSError, ValueError) as exc:
        return type(exc)


def test_the_fast_path_answers_what_the_code_before_it_answered(tree: Path) -> None:
    paths = _paths(tree)
    for root in _roots(tree):
        _clear()  # fresh, as a worker asks: each path once, the folders' answers shared
        wrong = [(path, _ask(path, root), _ask_before(path, root)) for path in paths
                 if _ask(path, root) != _ask_before(path, root)]
        assert wrong == [], (root, wrong[:5], len(wrong))


def test_a_relative_root_answers_as_the_code_before_it(tree: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    paths = _paths(tree)
    for root in (Path("real"), Path("linked"), Path("real/"), Path("."), Path("rel/pkg/..")):
        _clear()
        wrong = [path for path in paths if _ask(path, root) != _ask_before(path, root)]
        assert wrong == [], (root, wrong[:5])


def _before_commit(path: str, root: Path) -> object:
    """Exactly the code before eb93752 (resolved_file's folder answers: a name with a NUL
    in it is not resolved, where Path.resolve raises)."""
    try:
        resolved, resolved_root = project.resolved_file(path), project._resolved(root)
        if not str(resolved).startswith(str(resolved_root)):
            return False
        return resolved.is_relative_to(resolved_root) and not project.is_library_file(path)
    except (RuntimeError, OSError, ValueError) as exc:
        return type(exc)


def test_a_path_with_an_embedded_nul_answers_as_before(tree: Path) -> None:
    for path in (f"{tree}/real/pkg/m\0d.py", f"{tree}/re\0al/pkg/mod.py",
                 f"{tree}/elsewhere/m\0d.py"):
        _clear()
        expected = _before_commit(path, tree / "real")
        _clear()
        assert _ask(path, tree / "real") == expected, path


def test_the_answers_hold_in_every_order(tree: Path) -> None:
    """The caches fill in the order a process asks: the answers must not depend on it."""
    paths = _paths(tree)[:1500]
    roots = _roots(tree)
    expected = {(path, root): _ask_before(path, root) for root in roots for path in paths}
    pairs = list(expected)
    random.Random(99).shuffle(pairs)
    _clear()
    wrong = [pair for pair in pairs if _ask(*pair) != expected[pair]]
    assert wrong == [], wrong[:5]


def test_the_environment_of_this_test_has_links() -> None:
    """(The tree above is made with links: the test means nothing without them.)"""
    assert hasattr(os, "symlink")
