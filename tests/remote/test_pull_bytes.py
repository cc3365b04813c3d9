"""A pull reads what the selected runs need of a pack, once, not the pack."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from pinrun.artifacts.store import Store
from pinrun.remote.client import ObjectClient
from pinrun.remote.remotes import open_remote
from pinrun.remote.selection import RemoteSelection, select_remote_runs
from pinrun.remote.transfer import pull_runs
from tests.remote.conftest import ok, pinrun
from tests.remote.scenario import production


class _Reading:
    """Delegates to a remote's client, keeping every range it reads."""

    def __init__(self, inner: ObjectClient) -> None:
        self.inner, self.url = inner, inner.url
        self.ranges: list[tuple[str, int, int]] = []

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        self.ranges += [(key, start, end) for start, end in ranges]
        return self.inner.get_ranges(key, ranges)

    def put_new(self, key: str, data: bytes) -> bool:
        return self.inner.put_new(key, data)

    def list(self, prefix: str):  # type: ignore[no-untyped-def]
        return self.inner.list(prefix)


@pytest.mark.slow
def test_one_run_of_a_big_pack_reads_a_small_part_of_it_and_no_byte_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulling 1 run of 40 pushed in one pack reads a fraction of the pack; pulling all of
    them reads each byte of the pack at most once across the walk's rounds. (The gap that
    merges nearby records into one request is made small, as this pack is small.)"""
    from pinrun.remote import transfer

    monkeypatch.setattr(transfer, "SPAN_GAP", 256)
    remote_path = tmp_path / "remote"
    prod, ids = production(tmp_path / "prod", 40)
    ok(pinrun(prod, "push", "--remote", str(remote_path), "--all"))
    [pack] = (remote_path / "packs").iterdir()
    size = pack.stat().st_size
    for wanted, store_name in (([ids[7]], "one"), (ids, "all")):
        remote = open_remote(None, str(remote_path))
        reading = _Reading(remote.client)
        remote.client = reading
        catalog = remote.catalog()
        runs = select_remote_runs(catalog, RemoteSelection(run_ids=wanted))
        with Store.open(tmp_path / store_name, create=True) as store:
            report = pull_runs(store, remote, runs, catalog=catalog)
        assert sorted(report.runs) == sorted(wanted)
        read = sum(end - start for _, start, end in reading.ranges)
        spans = sorted((start, end) for _, start, end in reading.ranges)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # no byte twice
        if store_name == "one":
            assert read < size / 4, (read, size)
        else:
            assert read <= size
