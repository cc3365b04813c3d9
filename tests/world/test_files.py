"""The file watch from Python: what counts as a step's file input, and what a record may hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts.digest import Kind, compute_digest
from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.errors import CorruptObjectError
from pinrun.world.file_inputs import MOST_FILES, MOST_NAMES, load_inputs, parse_inputs
from pinrun.world.files import FileSetup
from tests.helpers import Project

FLOW = """\
import threading
from pathlib import Path

import pinrun


def read(path):
    return Path(path).read_text()


@pinrun.step
def threaded(n: int) -> dict:
    found = []
    worker = threading.Thread(target=lambda: found.append(read("inputs/a.txt")))
    worker.start()
    worker.join()
    return {"a": found[0]}


@pinrun.step
def effect(n: int, ctx: pinrun.Context) -> dict:
    return {"b": ctx.effect("read", read, "inputs/b.txt")}


@pinrun.step
def globbed(n: int) -> dict:
    return {"names": sorted(p.name for p in Path("inputs").glob("*.txt"))}


flow = pinrun.Flow("files", [threaded, effect, globbed])
"""


def _inputs(store: Store, run: Any, step: str) -> tuple[list[str], list[str]]:
    found = next(item for item in run.steps if item.name == step)
    if found.files is None:
        return [], []
    inputs = load_inputs(store, found.files)
    return [f.path for f in inputs.files], [f.path for f in inputs.listings]


def test_threads_effects_and_pathlib_globs(project: Project, project_store: Store,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A file read in a thread the step started is its input; one read inside ctx.effect
    is the effect's, not an input; Path.glob is a listing of its folder."""
    monkeypatch.chdir(project.root)
    (project.root / "inputs").mkdir()
    for name in ("a.txt", "b.txt"):
        (project.root / "inputs" / name).write_text(name)
    project.write("flows", FLOW)
    run = record(project.load("flows"), {"n": 1}, store=project_store)
    assert _inputs(project_store, run, "threaded") == (["inputs/a.txt"], [])
    assert _inputs(project_store, run, "effect") == ([], [])
    assert _inputs(project_store, run, "globbed") == ([], ["inputs"])


def test_ignore_patterns_match_paths_folders_and_names(tmp_path: Path) -> None:
    """``logs/**`` excludes the folder and all under it; ``*.tmp`` any such file anywhere."""
    setup = FileSetup(tmp_path, ignored=("logs/**", "*.tmp"))
    assert setup.is_ignored("logs")
    assert setup.is_ignored("logs/a/b.log")
    assert setup.is_ignored("deep/down/x.tmp")
    assert not setup.is_ignored("config/settings.ini")
    assert setup.shown(str(tmp_path / "config" / "a.ini")) == "config/a.ini"
    assert setup.shown("/elsewhere/a.ini") == "/elsewhere/a.ini"


GOOD: dict[str, Any] = {"format": 1, "more": 0, "listings": [], "files": [
    {"path": "config/settings.ini", "digest": "ab" * 32, "file": "p/steps.py", "line": 3}]}
ENTRY = GOOD["files"][0]


@pytest.mark.parametrize("bad", [
    {**GOOD, "format": 2},
    {**GOOD, "files": [ENTRY] * (MOST_FILES + 1)},
    {**GOOD, "files": [{**ENTRY, "path": "x" * 5000}]},
    {**GOOD, "files": [{**ENTRY, "path": "a\0b"}]},
    {**GOOD, "files": [{**ENTRY, "path": "../outside"}]},
    {**GOOD, "files": [{**ENTRY, "digest": "XYZ"}]},
    {**GOOD, "files": [{**ENTRY, "line": "3"}]},
    {**GOOD, "listings": [{**ENTRY, "names": ["n"] * (MOST_NAMES + 1), "count": 999}]},
    {**GOOD, "listings": [{**ENTRY, "names": ["a", "b"], "count": 1}]},
    {**GOOD, "more": -1},
    ["not", "an", "object"],
])
def test_a_crafted_file_inputs_value_is_refused(bad: Any) -> None:
    """Every field is checked and every size bounded before a path is read or shown."""
    digest = compute_digest(Kind.VALUE, b"x")
    with pytest.raises(CorruptObjectError, match="file inputs"):
        parse_inputs(bad, digest)
    assert parse_inputs(GOOD, digest).files[0].path == "config/settings.ini"


def test_ignore_patterns_follow_an_edited_pyproject(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """pyproject.toml is parsed once per change: an edit (or a file made later) is read
    at the next replay of the same process."""
    from pinrun.world.files import ignore_patterns

    monkeypatch.delenv("PINRUN_IGNORE_FILES", raising=False)
    assert ignore_patterns(tmp_path) == ()
    settings = tmp_path / "pyproject.toml"
    settings.write_text('[tool.pinrun]\nignore_files = ["a/*"]\n')
    assert ignore_patterns(tmp_path) == ("a/*",)
    settings.write_text('[tool.pinrun]\nignore_files = ["a/*", "data/cache/*"]\n')
    assert ignore_patterns(tmp_path) == ("a/*", "data/cache/*")


def test_an_ignore_list_edited_between_runs_applies_to_the_next_run(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process recording the same flow again follows an edited ignore_files at once (its
    file setup is kept per flow, but not past a change of the patterns)."""
    monkeypatch.chdir(project.root)
    monkeypatch.delenv("PINRUN_IGNORE_FILES", raising=False)
    (project.root / "inputs").mkdir()
    for name in ("a.txt", "b.txt"):
        (project.root / "inputs" / name).write_text(name)
    project.write("flows", FLOW)
    flow = project.load("flows")
    assert _inputs(project_store, record(flow, {"n": 1}, store=project_store),
                   "threaded") == (["inputs/a.txt"], [])
    settings = project.root / "pyproject.toml"
    settings.write_text('[tool.pinrun]\nignore_files = ["inputs/*"]\n')
    assert _inputs(project_store, record(flow, {"n": 2}, store=project_store),
                   "threaded") == ([], [])
    settings.write_text('[tool.pinrun]\nignore_files = ["inputs/b.txt"]\n')
    assert _inputs(project_store, record(flow, {"n": 3}, store=project_store),
                   "threaded") == (["inputs/a.txt"], [])


def test_a_relative_project_root_is_the_working_folder_of_each_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file setup kept per process names the project folder a relative root means at
    each run, not the one it meant when first made."""
    store_path = tmp_path / ".pinrun"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        assert FileSetup.for_store(store_path, Path(".")).root == tmp_path / folder
