"""Giving the store's mapped pages back (artifacts.mapped_pages) changes nothing a read sees."""

from __future__ import annotations

import sys
from pathlib import Path

from pinrun.artifacts.mapped_pages import release_store_pages
from pinrun.artifacts.store import Store


def test_released_pages_read_back_the_same_values(tmp_path: Path) -> None:
    """After the store's map is given back, every value reads back equal (and on Linux the
    read-only map of data.mdb was found and released)."""
    with Store.open(tmp_path / "store", create=True) as store:
        values = [{"n": n, "text": "x" * (n % 97)} for n in range(500)]
        digests = [store.put_value(value) for value in values]
        assert [store.get_value(digest) for digest in digests] == values
        released = release_store_pages(store.path)
        if sys.platform.startswith("linux"):
            assert released > 0
        assert [store.get_value(digest) for digest in digests] == values
        assert [payload for _, payload in store.load_many(digests)] == \
            [payload for _, payload in store.load_many(digests)]


def test_a_folder_without_a_mapped_store_releases_nothing(tmp_path: Path) -> None:
    """A path no mapping names gives back nothing, and does not fail."""
    assert release_store_pages(tmp_path / "nowhere") == 0
