"""Shared fixtures: real LMDB stores in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pinrun.artifacts.store import Store


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A folder where a store may be created."""
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    """A fresh, real store on disk."""
    with Store.open(store_path, create=True) as opened:
        yield opened
