"""Which loaded modules a replay counts as the project's (the ones its guards watch)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from pinrun.flows import project
from pinrun.flows.project import home_distributions, is_project_local, may_install_project
from pinrun.verifier import replay_code
from pinrun.verifier.replay_code import project_modules

#: The checkout pinrun is installed from (editable: its direct_url.json names it).
CHECKOUT = Path(project.__file__).resolve().parents[3]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """project_modules answers from nothing it kept, and no distribution is named."""
    monkeypatch.setattr(replay_code, "_MODULES_SEEN", {})
    monkeypatch.setattr(replay_code, "_LOCALITY", {})
    monkeypatch.delenv("PINRUN_DISTRIBUTIONS", raising=False)


def test_whether_an_installed_distribution_may_be_the_projects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    """None may for a plain folder; one may when named by the environment, by
    pyproject.toml or for the block, or installed from inside the folder."""
    assert not may_install_project(tmp_path)
    monkeypatch.setenv("PINRUN_DISTRIBUTIONS", "pytest")
    assert may_install_project(tmp_path)
    monkeypatch.delenv("PINRUN_DISTRIBUTIONS")
    with home_distributions(tmp_path, sys.modules["pytest"]):
        assert may_install_project(tmp_path)
    assert may_install_project(CHECKOUT)  # pinrun, installed from there
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "shop"\n')
    assert may_install_project(tmp_path)


def test_with_no_project_distribution_no_owner_is_looked_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    """With no installed distribution that may be the project's, a module's place
    decides, with the same answers as looking up each module's distribution."""
    modules = [module for module in list(sys.modules.values()) if isinstance(module, ModuleType)]
    expected = [module for module in modules if is_project_local(module, tmp_path)]

    def looked_up(module: ModuleType) -> str | None:
        raise AssertionError(f"looked up the distribution of {module.__name__}")

    monkeypatch.setattr(project, "distribution_of", looked_up)
    found = project_modules(tmp_path)
    assert [module for module in found if module in modules] == expected


def test_a_project_distribution_is_still_looked_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    """Named as the project's, an installed distribution's modules are the project's."""
    monkeypatch.setenv("PINRUN_DISTRIBUTIONS", "pytest")
    assert sys.modules["_pytest.python"] in project_modules(tmp_path)
    monkeypatch.delenv("PINRUN_DISTRIBUTIONS")
    assert sys.modules["_pytest.python"] not in project_modules(tmp_path)


def test_what_pyproject_toml_names_is_read_again_when_it_changes(
        tmp_path: Path, fresh: None) -> None:
    """The same modules loaded, another name in pyproject.toml: another answer (the
    modules found last time are not given again)."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pytest"\n')
    project_modules(tmp_path)  # (anything the first look imports, imported)
    count = len(sys.modules)
    assert sys.modules["_pytest.python"] in project_modules(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "a-shop"\n')
    assert sys.modules["_pytest.python"] not in project_modules(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pytest"\n\n')
    assert sys.modules["_pytest.python"] in project_modules(tmp_path)
    assert len(sys.modules) == count  # the same modules throughout
