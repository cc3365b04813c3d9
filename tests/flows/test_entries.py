"""Flows named by run records are imported only from the recorded project."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pinrun.errors import InputError, UntrustedEntryError
from pinrun.flows.entries import import_entry, import_recorded_entry
from tests.helpers import Project

FLOW = """
import pinrun

@pinrun.step
def one(x: int) -> dict:
    return {"y": x + 1}

flow = pinrun.Flow("entries", [one])
"""


def test_a_project_module_named_by_a_record_is_imported(project: Project) -> None:
    """The recorded project's own flow module imports as usual."""
    project.write("flows", FLOW)
    flow = import_recorded_entry(project.entry("flows"), project.root)
    assert flow.name == "entries"


@pytest.mark.parametrize(("entry", "reason"), [
    ("venv.__main__:flow", "standard library"),
    ("antigravity:flow", "standard library"),
    ("pinrun.no_such_module:flow", "pinrun itself"),
    ("mypy.build:flow", "distribution"),  # installed for the tests, never imported by them
    ("not a module:flow", "not a valid"),
    ("os.path:", "module:attribute"),
    ("flows", "module:attribute"),
])
def test_modules_that_are_not_the_projects_are_refused_unimported(
        project: Project, entry: str, reason: str) -> None:
    """The standard library, pinrun, other distributions and bad names are refused first."""
    before = set(sys.modules)
    with pytest.raises(UntrustedEntryError, match=reason):
        import_recorded_entry(entry, project.root)
    assert set(sys.modules) == before


def test_a_module_outside_the_project_folder_is_refused_unimported(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module importable from elsewhere on sys.path is not the project's: never imported."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "entry_evil_xyz.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('x')\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    with pytest.raises(UntrustedEntryError, match="neither in the project folder"):
        import_recorded_entry("entry_evil_xyz:flow", project.root)
    assert "entry_evil_xyz" not in sys.modules
    assert not (elsewhere / "entry_evil_xyz.ran").exists()


def test_an_import_that_exits_is_an_input_error(project: Project) -> None:
    """A module calling sys.exit() while it is imported cannot end pinrun."""
    project.write("exits", "import sys\nsys.exit(0)\n")
    with pytest.raises(InputError, match="SystemExit"):
        import_entry(project.entry("exits"))


def test_a_recorded_entry_that_is_not_text_is_refused(project: Project) -> None:
    """A record holding anything but text as its entry is refused."""
    with pytest.raises(UntrustedEntryError):
        import_recorded_entry(["venv"], project.root)


def test_an_already_imported_flow_module_is_used_wherever_it_lives(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module the caller imported already runs nothing again: it is used as it is."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "entry_loaded_xyz.py").write_text(FLOW)
    monkeypatch.syspath_prepend(str(elsewhere))
    import importlib

    importlib.import_module("entry_loaded_xyz")
    try:
        assert import_recorded_entry("entry_loaded_xyz:flow", project.root).name == "entries"
        with pytest.raises(InputError, match=r"not a pinrun\.Flow"):
            import_recorded_entry("entry_loaded_xyz:missing", project.root)
    finally:
        sys.modules.pop("entry_loaded_xyz", None)


def test_a_module_in_the_working_folder_is_the_users_own(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the store elsewhere, a flow in the folder pinrun runs in is still imported."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "entry_work_xyz.py").write_text(FLOW)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    try:
        assert import_recorded_entry("entry_work_xyz:flow", tmp_path / "store-home").name \
            == "entries"
    finally:
        sys.modules.pop("entry_work_xyz", None)


BOOM = "open({marker!r}, 'w').close()\nflow = None\n"


@pytest.mark.parametrize("entry", [
    ".venv/lib/python3.11/site-packages/sidefx/boom.py:flow",  # an installed package's file
    "../outside.py:flow",
    "/etc/passwd.py:flow",
])
def test_a_script_path_entry_loads_only_a_project_file(tmp_path: Path, entry: str) -> None:
    """A recorded path entry (a script named by its path) is refused unless it is one of
    the project's own files: not a file of a virtualenv inside the project folder, not
    outside it; nothing of the file runs."""
    root = tmp_path / "project"
    marker = tmp_path / "BOOM"
    for file in (root / ".venv/lib/python3.11/site-packages/sidefx/boom.py",
                 tmp_path / "outside.py"):
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(BOOM.format(marker=str(marker)))
    with pytest.raises(UntrustedEntryError):
        import_recorded_entry(entry, root)
    assert not marker.exists()


def test_a_script_path_entry_comes_only_from_the_pinned_code_when_replaying_it(
        tmp_path: Path) -> None:
    """While pinned code is loaded, a path entry the pin does not hold is refused, even
    when the file exists in the project folder."""
    from pinrun.flows.loader import pinned_modules

    root = tmp_path / "project"
    marker = tmp_path / "BOOM"
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "run-it.py").write_text(BOOM.format(marker=str(marker)))
    sources = {"shop": {"module": "shop", "path": "shop.py", "source": "X = 1\n"}}
    with pinned_modules(sources, root), \
            pytest.raises(UntrustedEntryError, match="pinned code does not hold"):
        import_recorded_entry("jobs/run-it.py:flow", root)
    assert not marker.exists()
