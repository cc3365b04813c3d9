"""pinrun's own zstd dictionary: what it compresses, where it is kept, who can read it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from pinrun.artifacts import dictionary as dictionary_module
from pinrun.artifacts._format_dictionary import DATA
from pinrun.artifacts.dictionary import (
    FORMAT_MAX_PAYLOAD,
    FORMAT_MIN_PAYLOAD,
    TRAINING_SAMPLES,
    format_dictionary,
)
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.maintenance import fsck, gc
from pinrun.artifacts.objects import HEADER, record_dictionary
from pinrun.artifacts.store import DICTIONARY_REF, Store
from tests.helpers import python_child


@pytest.fixture(autouse=True)
def fresh_dictionary_cache() -> Iterator[None]:
    """Each test reads dictionaries as a new process would (the format one stays made)."""
    dictionary_module._CACHE.clear()
    yield
    dictionary_module._CACHE.clear()


def _tree_like(n: int, entries: int) -> bytes:
    """A value's payload shaped like a snapshot tree: keys and hexadecimal digests (that
    name nothing: fsck follows no reference from a value)."""
    body = {f"key_{n}_{i}": {"sha": compute_digest(Kind.BLOB, f"{n}/{i}".encode()).hex}
            for i in range(entries)}
    return json.dumps({"entries": body, "type": "map"}, separators=(",", ":"),
                      sort_keys=True).encode()


def _put(store: Store, payload: bytes) -> Digest:
    with store.batch() as batch:
        return batch.put(Kind.VALUE, payload)


def _record(store: Store, digest: Digest) -> bytes:
    record = store.environment.get("objects", digest.raw)
    assert record is not None
    return bytes(record)


def test_shipped_dictionary_is_a_zstd_dictionary() -> None:
    """The shipped bytes are a 2 KiB zstd dictionary, named by their blob digest."""
    data = base64.b64decode(DATA)
    made = format_dictionary()
    assert made.data == data
    assert made.digest == compute_digest(Kind.BLOB, data)
    assert len(data) == 2048
    zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)


def test_fresh_store_compresses_small_records_with_it(store: Store) -> None:
    """Without a trained dictionary, a 256-byte to 4 KiB record uses the format dictionary,
    whose blob the same commit stores; both read back and fsck is clean."""
    payload = _tree_like(1, 8)
    assert FORMAT_MIN_PAYLOAD <= len(payload) <= FORMAT_MAX_PAYLOAD
    digest = _put(store, payload)
    assert store.info(digest).codec == "zstd+dict"
    assert record_dictionary(_record(store, digest)) == format_dictionary().digest
    assert store.has(format_dictionary().digest)
    assert store.get_ref(DICTIONARY_REF) is None  # the ref names trained dictionaries only
    assert store.load(digest) == (Kind.VALUE, payload)
    assert fsck(store).ok


def test_smaller_and_larger_records_do_not_use_it(store: Store) -> None:
    """Below 256 bytes a record is stored as is and from 4 KiB it is zstd alone; a store
    none of whose records use the format dictionary does not hold its blob."""
    small = _put(store, _tree_like(2, 1)[:200])
    large = _put(store, _tree_like(3, 80))
    assert len(_tree_like(3, 80)) > FORMAT_MAX_PAYLOAD
    assert store.info(small).codec == "none"
    assert store.info(large).codec == "zstd"
    assert not store.has(format_dictionary().digest)


def test_the_dictionary_is_written_once(store: Store) -> None:
    """Later commits find the dictionary stored (known, or looked up after a reopen)."""
    first = _put(store, _tree_like(4, 8))
    count = store.object_count()
    second = _put(store, _tree_like(5, 8))
    assert store.object_count() == count + 1
    assert {record_dictionary(_record(store, d)) for d in (first, second)} == \
        {format_dictionary().digest}


def test_its_frames_are_plain_zstd_with_the_stored_blob(store: Store) -> None:
    """Any zstd decoder given the stored blob as a dictionary reads the records (what an
    earlier pinrun does with a dictionary it finds in the store)."""
    payload = _tree_like(6, 12)
    digest = _put(store, payload)
    blob = store.load(format_dictionary().digest)
    assert blob[0] is Kind.BLOB
    record = _record(store, digest)
    frame = record[HEADER.size + 32:]
    decoder = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(blob[1]))
    assert decoder.decompress(frame) == payload


def test_a_new_process_reads_them(store: Store, store_path: Path) -> None:
    """A process reads format-dictionary records of a store another process wrote."""
    payload = _tree_like(7, 8)
    digest = _put(store, payload)
    out = python_child(
        """
        import sys
        from pinrun.artifacts.store import Store
        from pinrun.artifacts.digest import Digest
        with Store.open(sys.argv[1]) as store:
            print(len(store.load(Digest.from_hex(sys.argv[2]))[1]))
        """,
        str(store_path), digest.hex,
    )
    assert out.stdout.strip() == str(len(payload))


def test_gc_keeps_it_while_a_record_uses_it(store: Store) -> None:
    """gc keeps the format dictionary as long as a reachable record names it."""
    digest = _put(store, _tree_like(8, 8))
    store.set_ref("tags/tree", digest)
    gc(store)
    assert store.has(format_dictionary().digest)
    store.delete_ref("tags/tree")
    gc(store)
    assert not store.has(format_dictionary().digest)
    again = _put(store, _tree_like(9, 8))  # written again with its next user
    assert store.has(format_dictionary().digest)
    assert store.load(again)[0] is Kind.VALUE
    assert fsck(store).ok


def test_a_trained_dictionary_comes_first(store: Store) -> None:
    """A store that trained its own dictionary compresses with that one, not pinrun's."""
    with store.batch() as batch:
        for n in range(TRAINING_SAMPLES + 100):
            batch.put(Kind.VALUE, _tree_like(n, 3))
    trained = store.ref(DICTIONARY_REF)
    digest = _put(store, _tree_like(99_999, 8))
    assert record_dictionary(_record(store, digest)) == trained
