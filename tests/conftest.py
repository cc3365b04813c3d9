"""Shared fixtures: real LMDB stores in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pinrun.artifacts.store import Store
from tests.helpers import Project

pytest_plugins = ["pytester"]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A folder where a store may be created."""
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    """A fresh, real store on disk."""
    with Store.open(store_path, create=True) as opened:
        yield opened


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Project]:
    """A project folder (with ``.pinrun`` beside its package) whose modules import by name."""
    name = "proj_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    made = Project(tmp_path / "project", name)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def project_store(project: Project) -> Iterator[Store]:
    """The project's own store, ``<project>/.pinrun`` (so the project root is found)."""
    with Store.open(project.root / ".pinrun", create=True) as opened:
        yield opened
