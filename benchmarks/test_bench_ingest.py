"""Ingest throughput: pinrun against the raw pipeline, SQLite and a git-like file store.

Each round writes every value of the data set into a fresh, empty store (a new
folder made in the round's setup and removed after it), committing once per
``BATCH_SIZE`` objects with fsync on commit. Opening the store happens in the
setup and is not timed; encoding, hashing, compression, writing and the
commits are.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks._harness import BenchmarkFixture, report
from benchmarks.baselines import IMPLEMENTATIONS, ObjectStore, open_impl
from benchmarks.conftest import BATCH_SIZE, LARGE_COUNT, SMALL_COUNT

DATASETS = {
    "1KiB": ("small_values", SMALL_COUNT),
    "64KiB": ("large_values", LARGE_COUNT),
}
ROUNDS = 3
WARMUP_ROUNDS = 1


def _run_ingest(
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    fresh_dir: Callable[[], Path],
    dataset: str,
    impl: str,
) -> None:
    fixture_name, count = DATASETS[dataset]
    values: list[Any] = request.getfixturevalue(fixture_name)
    benchmark.group = f"ingest-{dataset} ({count} objects, commit every {BATCH_SIZE})"

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = fresh_dir()
        return (open_impl(impl, folder, durable=True), folder), {}

    def ingest(store: ObjectStore, folder: Path) -> int:
        return len(store.ingest(values, BATCH_SIZE))

    def teardown(store: ObjectStore, folder: Path) -> None:
        store.close()
        shutil.rmtree(folder)

    stored = benchmark.pedantic(ingest, setup=setup, teardown=teardown, rounds=ROUNDS,
                                warmup_rounds=WARMUP_ROUNDS)
    assert stored == count
    benchmark.extra_info.update(batch_size=BATCH_SIZE, durable=True)
    report(benchmark, impl, count)


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_ingest_1kib(
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    fresh_dir: Callable[[], Path],
    impl: str,
) -> None:
    """Objects/s ingesting the ~1 KiB JSON values into a fresh store, durable commits."""
    _run_ingest(benchmark, request, fresh_dir, "1KiB", impl)


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_ingest_64kib(
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    fresh_dir: Callable[[], Path],
    impl: str,
) -> None:
    """Objects/s ingesting the ~64 KiB JSON values into a fresh store, durable commits."""
    _run_ingest(benchmark, request, fresh_dir, "64KiB", impl)
