"""Dedup: bytes stored for a series of snapshots that each change one key.

The series (see ``conftest.dedup_series``) is ``DEDUP_SNAPSHOTS`` states of
``DEDUP_KEYS`` values of ~100 KB (~10 MB of JSON each); every state differs
from the previous one in a single key. The figure that matters is bytes, not
time: the sum of record sizes in the store after all snapshots, against the
*reference* = bytes of the first snapshot stored alone + bytes of the changed
values stored alone (each ``put_value`` in one fresh store). Target: ratio
<= 1.2. The timed part is the snapshot puts (one durable commit each) into a
fresh store per round, next to two time baselines:

* ``ideal-incremental``: pinrun storing exactly the reference (the first
  snapshot, then only each changed value): the work a writer that knew what
  changed would do.
* ``raw-lmdb-flat``: the inline pipeline on a flat layout (a root object
  mapping keys to digests): every value of every state is encoded and hashed,
  but compressed and written only when its digest is not in the database yet.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import lmdb
import orjson
import pytest
import zstandard

from benchmarks._harness import BenchmarkFixture, report
from benchmarks.baselines import VALUE_TAG, ZSTD_LEVEL, record_bytes
from benchmarks.conftest import DEDUP_KEYS, DEDUP_SNAPSHOTS, DedupSeries
from pinrun.artifacts.store import Store

TREE_TAG = b"tree\0"
ROUNDS = 3
TARGET_RATIO = 1.2


@pytest.fixture(scope="module")
def reference_bytes(dedup_series: DedupSeries, session_dir: Path) -> dict[str, int]:
    """Bytes of the first snapshot stored alone and of the changed values stored alone."""
    first_dir = session_dir / "dedup-first"
    changed_dir = session_dir / "dedup-changed"
    with Store.open(first_dir, create=True, durable=False) as store:
        store.put_snapshot(dedup_series.states[0])
        first_records, first_bytes = record_bytes(store)
    with Store.open(changed_dir, create=True, durable=False) as store, store.batch() as batch:
        for value in dedup_series.changed:
            batch.put_value(value)
    with Store.open(changed_dir) as store:
        changed_records, changed_bytes = record_bytes(store)
    shutil.rmtree(first_dir)
    shutil.rmtree(changed_dir)
    return {
        "first_snapshot_records": first_records,
        "first_snapshot_bytes": first_bytes,
        "changed_values_records": changed_records,
        "changed_values_bytes": changed_bytes,
        "reference_bytes": first_bytes + changed_bytes,
        "state_json_bytes": sum(len(orjson.dumps(v)) for v in dedup_series.states[0].values()),
    }


def _pinrun_snapshots(store: Store, series: DedupSeries) -> None:
    for state in series.states:
        store.put_snapshot(state)


def _ideal_incremental(store: Store, series: DedupSeries) -> None:
    store.put_snapshot(series.states[0])
    for value in series.changed:
        store.put_value(value)


def _pinrun_bytes(store: Store) -> dict[str, int]:
    records, stored = record_bytes(store)
    return {"records": records, "stored_bytes": stored,
            "data_mdb_bytes": (store.path / "data.mdb").stat().st_size}


def _raw_flat_snapshots(env: Any, series: DedupSeries) -> None:
    dumps, hasher = orjson.dumps, blake3.blake3
    compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
    sort = orjson.OPT_SORT_KEYS
    for state in series.states:
        with env.begin(write=True) as txn:
            get, put = txn.get, txn.put
            entries: dict[str, str] = {}
            for key, value in state.items():
                canonical = dumps(value, option=sort)
                h = hasher(VALUE_TAG)
                h.update(canonical)
                digest = h.digest()
                if get(digest) is None:
                    put(digest, compress(canonical))
                entries[key] = digest.hex()
            root = dumps({"type": "map", "entries": entries}, option=sort)
            h = hasher(TREE_TAG)
            h.update(root)
            put(h.digest(), compress(root), overwrite=False)


def _raw_bytes(env: Any) -> dict[str, int]:
    records = stored = 0
    with env.begin() as txn:
        for _, value in txn.cursor():
            records += 1
            stored += len(value)
    return {"records": records, "stored_bytes": stored}


@pytest.mark.parametrize("impl", ["raw-lmdb-flat", "ideal-incremental", "pinrun-snapshots"])
def test_dedup_snapshots(
    benchmark: BenchmarkFixture,
    fresh_dir: Callable[[], Path],
    dedup_series: DedupSeries,
    reference_bytes: dict[str, int],
    impl: str,
) -> None:
    """Snapshots/s storing the one-key-changed series; stored bytes vs the dedup reference."""
    benchmark.group = (f"dedup ({DEDUP_SNAPSHOTS} snapshots x {DEDUP_KEYS} keys x ~100 KB, "
                       "one key changed each)")
    measured: list[dict[str, int]] = []
    opened: list[tuple[Any, Path]] = []

    if impl == "raw-lmdb-flat":
        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            folder = fresh_dir()
            env = lmdb.open(str(folder), map_size=1 << 36, sync=True, metasync=True,
                            readahead=False)
            opened.append((env, folder))
            return (env, folder), {}

        def run(handle: Any, folder: Any) -> None:
            _raw_flat_snapshots(handle, dedup_series)

        def teardown(handle: Any, folder: Any) -> None:
            measured.append(_raw_bytes(handle))
            handle.close()
            shutil.rmtree(folder)
    else:
        put = _pinrun_snapshots if impl == "pinrun-snapshots" else _ideal_incremental

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            folder = fresh_dir()
            opened.append((Store.open(folder, create=True, durable=True), folder))
            return opened[-1], {}

        def run(handle: Any, folder: Any) -> None:
            put(handle, dedup_series)

        def teardown(handle: Any, folder: Any) -> None:
            measured.append(_pinrun_bytes(handle))
            handle.close()
            shutil.rmtree(folder)

    benchmark.pedantic(run, setup=setup, teardown=teardown, rounds=ROUNDS)
    if not measured:  # --benchmark-disable: one plain call, and pytest-benchmark skips teardown
        teardown(*opened[-1])
    figures = measured[-1]
    ratio = figures["stored_bytes"] / reference_bytes["reference_bytes"]
    notes: dict[str, Any] = {**figures, "stored_over_reference": round(ratio, 4)}
    if impl == "pinrun-snapshots":
        notes.update(reference_bytes)
        notes["naive_bytes_no_dedup"] = DEDUP_SNAPSHOTS * reference_bytes["first_snapshot_bytes"]
        notes["target_ratio_max"] = TARGET_RATIO
        notes["meets_target"] = ratio <= TARGET_RATIO
    print(f"[dedup] {impl}: stored {figures['stored_bytes']:,} B, reference "
          f"{reference_bytes['reference_bytes']:,} B, ratio {ratio:.3f} "
          f"(target <= {TARGET_RATIO})")
    report(benchmark, impl, DEDUP_SNAPSHOTS, unit="snapshots", notes=notes)
