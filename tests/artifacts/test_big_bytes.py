"""Large ``bytes`` state values: stored as blobs without base64, read back bounded."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from pinrun.artifacts import codec, trees
from pinrun.artifacts.codec import BytesEntry
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.objects import assembled, build_pending_records, build_records
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError, UnsupportedValueError
from tests.helpers import traced_peak

MiB = 1 << 20


def _data(size: int, seed: bytes = b"seed") -> bytes:
    return blake3.blake3(seed).digest(length=size)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store on disk."""
    with Store.open(tmp_path / "store", create=True) as opened:
        yield opened


@pytest.mark.parametrize("size", [0, 10, 3 * MiB, 4 * MiB, 5 * MiB + 17])
def test_a_bytes_entry_decodes_to_the_value_itself(size: int) -> None:
    """encode_entry of bytes is a stand-in that decodes to the very same object (no copy)."""
    value = _data(size)
    entry = trees.encode_entry(value)
    assert type(entry) is BytesEntry
    assert entry.startswith(BytesEntry.MARKER)
    assert len(entry) == len(BytesEntry.MARKER) + 32
    assert codec.decode(entry) is value


@pytest.mark.parametrize("size", [10, 5 * MiB + 17])
def test_bytes_entries_are_equal_exactly_when_the_values_are(size: int) -> None:
    """Two stand-ins compare equal for equal bytes and differ for one changed byte."""
    value = _data(size)
    changed = bytearray(value)
    changed[size // 2] ^= 1
    assert trees.encode_entry(value) == trees.encode_entry(bytes(value))
    assert trees.encode_entry(value) != trees.encode_entry(bytes(changed))


def test_other_values_keep_their_canonical_encoding() -> None:
    """encode_entry is codec.encode for anything but bytes (bytearray included)."""
    for value in ({"a": b"x"}, [b"y"], bytearray(b"z"), "text", 3):
        assert trees.encode_entry(value) == codec.encode(value)


@pytest.mark.parametrize("size", [10, 4 * MiB, 5 * MiB + 17])
def test_a_stored_entry_names_the_digest_its_stand_in_says(store: Store, size: int) -> None:
    """Storing through the stand-in gives the digest storing the bytes alone gives."""
    value = _data(size)
    entry = trees.bytes_entry(value)
    with store.batch() as batch:
        known = trees.store_entry(batch, value, "state['blob']", entry)
        plain = batch.put_blob(value)
    assert known == plain
    assert bytes(entry)[len(BytesEntry.MARKER):] == known.raw
    assert store.get_value(known) == value


def test_a_snapshot_with_big_bytes_round_trips(store: Store) -> None:
    """A snapshot holding chunked bytes beside other values reads back equal, bytes as bytes."""
    state = {"blob": _data(6 * MiB), "small": b"abc", "n": 1}
    with store.batch() as batch:
        root = batch.put_snapshot(state, payloads={k: trees.encode_entry(v)
                                                   for k, v in state.items()})
    back = store.get_snapshot(root)
    assert back == state
    assert type(back["blob"]) is bytes


def test_a_stand_in_survives_pickling() -> None:
    """A stand-in crossing to a worker process keeps its value and chunk digests."""
    entry = trees.bytes_entry(_data(5 * MiB))
    copy = pickle.loads(pickle.dumps(entry))
    assert type(copy) is BytesEntry
    assert copy == entry
    assert copy.value == entry.value
    assert copy.chunks == entry.chunks


def _crafted_tree(store: Store, size: int, count: int) -> Digest:
    with store.batch() as batch:
        chunk = batch.put(Kind.BLOB, _data(MiB))
        payload = codec.encode({"type": "chunks", "chunks": [chunk] * count, "size": size})
        return batch.put(Kind.TREE, payload)


def test_a_crafted_tree_naming_4_gib_is_refused_before_anything_is_gathered(
        store: Store) -> None:
    """A chunk tree naming one stored chunk 4,096 times (4 GiB) is refused unread."""
    digest = _crafted_tree(store, 4096 * MiB, 4096)

    def load() -> None:
        with pytest.raises(CorruptObjectError, match="not a valid tree"):
            store.get_value(digest)

    assert traced_peak(load) < 16 * MiB
    problems = fsck(store)
    assert any(p.digest == digest and p.kind == "corrupt" for p in problems.problems)


def test_a_tree_whose_chunks_do_not_cover_its_size_is_refused(store: Store) -> None:
    """A chunk tree whose count of chunks disagrees with its size is refused."""
    digest = _crafted_tree(store, 10 * MiB, 3)
    with pytest.raises(CorruptObjectError, match="not a valid tree"):
        store.get_value(digest)


def test_a_chunk_of_the_wrong_size_is_refused(store: Store) -> None:
    """A chunk tree whose last chunk is larger than its size leaves is refused."""
    digest = _crafted_tree(store, 4 * MiB + 1, 5)
    with pytest.raises(CorruptObjectError, match="chunk 4"):
        store.get_value(digest)


def test_bytes_over_the_limit_are_refused_when_stored() -> None:
    """A bytes value longer than MAX_BYTES_SIZE is an UnsupportedValueError naming it."""
    class Huge(bytes):
        def __len__(self) -> int:
            return trees.MAX_BYTES_SIZE + 1

    with pytest.raises(UnsupportedValueError, match="over the 2,048 MiB"):
        trees.store_blob(_NullSink(), Huge(b"x"), "state['huge']")


class _NullSink:
    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        raise AssertionError("nothing may be stored")


def test_deferred_records_assemble_to_the_records_built_at_once() -> None:
    """Large records stored as is are assembled only when written, to the same bytes."""
    items = [(bytes([n]) * 32, Kind.BLOB, payload) for n, payload in
             enumerate([_data(MiB), b"z" * MiB, b"small value of a few bytes" * 4])]
    pending = build_pending_records(items)
    assert any(not isinstance(record, bytes) for _, record in pending)
    assert list(assembled(pending)) == build_records(items)
