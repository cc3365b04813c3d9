"""Random-read throughput: verified, decoded reads in a fixed random order.

Each implementation's store is filled once per data set (untimed) with the
same values as the ingest benchmark; every round then reads ``READ_COUNT``
objects in one fixed random order (``random.Random(7)``). Every read is
fetched, decompressed, re-hashed and compared with its key, then decoded.
The stores were just written, so this measures reads from the page cache.

pinrun is measured two ways: ``store.get_value`` per object (a read
transaction each, the everyday API) and ``store.load_many`` (one read
transaction for the whole sample) followed by ``codec.decode``.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks._harness import BenchmarkFixture, report
from benchmarks.baselines import IMPLEMENTATIONS, ObjectStore, PinrunStore, open_impl
from benchmarks.conftest import BATCH_SIZE, LARGE_COUNT, READ_COUNT, SMALL_COUNT

VARIANTS = ["raw-lmdb", "sqlite-wal", "fs-objects", "pinrun-get_value", "pinrun-load_many"]
ROUNDS = {"1KiB": 5, "64KiB": 3}
WARMUP_ROUNDS = 1


@dataclass
class ReadSetup:
    """Filled stores for one data set, and each one's keys in the sample order."""

    dataset: str
    count: int
    stores: dict[str, ObjectStore]
    samples: dict[str, list[Any]]
    #: The value the last read of the sample must return.
    last_value: Any


@pytest.fixture(scope="module", params=["1KiB", "64KiB"])
def read_setup(request: pytest.FixtureRequest, session_dir: Path) -> Iterator[ReadSetup]:
    """Every implementation's store filled with one data set (the param), plus the sample."""
    dataset: str = request.param
    fixture_name, count = {"1KiB": ("small_values", SMALL_COUNT),
                           "64KiB": ("large_values", LARGE_COUNT)}[dataset]
    values: list[Any] = request.getfixturevalue(fixture_name)
    order = random.Random(7).sample(range(count), min(READ_COUNT, count))
    stores: dict[str, ObjectStore] = {}
    samples: dict[str, list[Any]] = {}
    folders: list[Path] = []
    raw_keys: list[bytes] | None = None
    for name in IMPLEMENTATIONS:
        folder = session_dir / f"read-{dataset}-{name}"
        folder.mkdir()
        folders.append(folder)
        store = open_impl(name, folder, durable=False)
        keys = store.ingest(values, BATCH_SIZE)
        if raw_keys is None:
            raw_keys = keys
        # Same pipeline, same names: every implementation must derive pinrun's digests.
        assert [getattr(k, "raw", k) for k in keys] == raw_keys, name
        stores[name] = store
        samples[name] = [keys[i] for i in order]
    yield ReadSetup(dataset, count, stores, samples, values[order[-1]])
    for store in stores.values():
        store.close()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _reader(setup: ReadSetup, variant: str) -> tuple[Callable[[list[Any]], Any], list[Any]]:
    if variant.startswith("pinrun"):
        store = setup.stores["pinrun"]
        assert isinstance(store, PinrunStore)
        method = store.read if variant == "pinrun-get_value" else store.read_many
        return method, setup.samples["pinrun"]
    return setup.stores[variant].read, setup.samples[variant]


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_reads(benchmark: BenchmarkFixture, read_setup: ReadSetup, variant: str) -> None:
    """Reads/s of verified, decoded objects fetched in a fixed random order."""
    read, sample = _reader(read_setup, variant)
    benchmark.group = (f"reads-{read_setup.dataset} ({len(sample)} random reads of "
                       f"{read_setup.count} objects)")
    last = benchmark.pedantic(read, args=(sample,), rounds=ROUNDS[read_setup.dataset],
                              warmup_rounds=WARMUP_ROUNDS)
    assert last == read_setup.last_value
    report(benchmark, variant, len(sample), unit="reads")
