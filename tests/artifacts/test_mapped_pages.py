"""Giving the store's mapped pages back (artifacts.mapped_pages) changes nothing a read sees;
a page budget gives them back only once they add up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pinrun.artifacts.mapped_pages import PageBudget, release_store_pages
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


LINUX = sys.platform.startswith("linux")


def test_the_map_is_found_again_after_the_store_is_mapped_anew(tmp_path: Path) -> None:
    """The map's bounds kept from one release are checked before the next: a closed store
    gives back nothing, and once opened again (mapped anew) its new map is given back."""
    path = tmp_path / "store"
    with Store.open(path, create=True) as store:
        digest = store.put_value({"n": 1})
        assert (release_store_pages(store.path) > 0) == LINUX
        assert (release_store_pages(store.path) > 0) == LINUX  # the kept bounds, checked
    assert release_store_pages(path) == 0
    with Store.open(path) as store:
        assert store.get_value(digest) == {"n": 1}
        assert (release_store_pages(store.path) > 0) == LINUX
        assert store.get_value(digest) == {"n": 1}


def test_a_page_budget_gives_the_map_back_once_spent(tmp_path: Path) -> None:
    """PageBudget.spend gives nothing back while the process's file pages stay within the
    budget, gives the map back once reads grew them past it (on Linux), and every value
    reads back the same afterwards."""
    with Store.open(tmp_path / "store", create=True, durable=False) as store:
        values = [os.urandom(1500).hex() for _ in range(2000)]  # ~6 MB, incompressible
        with store.batch() as batch:
            digests = [batch.put_value(value) for value in values]
        release_store_pages(store.path)
        with PageBudget(store.path, budget=1 << 20) as budget:
            assert not budget.spend()  # nothing read since
            assert [store.get_value(digest) for digest in digests] == values
            assert budget.spend() == LINUX
            assert not budget.spend()  # counted from the release
            assert [store.get_value(digest) for digest in digests] == values
        assert not budget.spend()  # closed: it reads nothing and gives back nothing
