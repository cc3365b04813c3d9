"""Object records: header, compression, and corruption found on read and by fsck."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import zstandard

from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.objects import (
    AS_IS_BELOW,
    HEADER,
    build_pending_records,
    encode_record,
    open_record,
    read_header,
)
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError, ObjectFormatError


def test_record_header_and_round_trip() -> None:
    """A record starts with version, kind, codec and raw size, and opens to its payload."""
    payload = b"x" * 1000
    obj = encode_record(Kind.BLOB, payload)
    version, kind, codec, size = HEADER.unpack_from(obj.record)
    assert (version, kind, codec, size) == (1, Kind.BLOB.code, 1, 1000)
    assert open_record(obj.digest, obj.record) == (Kind.BLOB, payload)


def test_compression_never_changes_the_digest() -> None:
    """The digest is the same whether or not the payload was compressed."""
    small = encode_record(Kind.VALUE, b"1")
    assert read_header(small.digest, small.record).codec == "none"
    assert small.digest == encode_record(Kind.VALUE, b"1").digest


def test_unknown_version_and_kind_are_format_errors() -> None:
    """A header this version cannot read raises ObjectFormatError, not a crash."""
    obj = encode_record(Kind.VALUE, b"1")
    for bad in (b"\x09" + obj.record[1:], obj.record[:1] + b"\x63" + obj.record[2:],
                obj.record[:2] + b"\x07" + obj.record[3:]):
        with pytest.raises(ObjectFormatError):
            open_record(obj.digest, bad)


def test_damaged_records_are_corrupt() -> None:
    """A flipped payload byte, a damaged zstd frame or a short record is CorruptObjectError."""
    obj = encode_record(Kind.VALUE, b'"' + b"abc" * 200 + b'"')
    damaged = bytearray(obj.record)
    damaged[-5] ^= 0xFF
    for bad in (bytes(damaged), obj.record[:HEADER.size + 3], obj.record[:4]):
        with pytest.raises(CorruptObjectError) as caught:
            open_record(obj.digest, bad)
        assert caught.value.digest == obj.digest


def _flip_in_file(store_path: Path, needle: bytes) -> None:
    """Flip one bit in every copy of ``needle`` (LMDB's copy-on-write leaves stale copies)."""
    data = bytearray((store_path / "data.mdb").read_bytes())
    at = data.find(needle)
    assert at >= 0, "record not found in data.mdb"
    while at >= 0:
        data[at + len(needle) // 2] ^= 0x01
        at = data.find(needle, at + 1)
    (store_path / "data.mdb").write_bytes(bytes(data))


@pytest.mark.parametrize("compressible", [True, False])
def test_flipped_byte_in_lmdb_file_is_reported(store_path: Path, compressible: bool) -> None:
    """One byte flipped inside data.mdb: reading and fsck both name the damaged digest."""
    text = "pricing " * 400 if compressible else "".join(chr(0x41 + n % 57) for n in range(300))
    with Store.open(store_path, create=True) as store:
        target = store.put_value({"note": text})
        healthy = store.put_value("healthy")
        store.set_ref("tags/target", target)
        _, record = next((k, r) for k, r in store.iter_records() if k == target.raw)
    _flip_in_file(store_path, record[HEADER.size:])
    with Store.open(store_path) as store:
        with pytest.raises(CorruptObjectError) as caught:
            store.get_value(target)
        assert caught.value.digest == target
        assert target.hex in str(caught.value)
        assert store.get_value(healthy) == "healthy"
        report = fsck(store)
    assert [(p.kind, p.digest) for p in report.problems] == [("corrupt", target)]


def test_fsck_reports_missing_referenced_object(store: Store) -> None:
    """An object deleted behind the store's back is reported as missing, with its holder."""
    root = store.put_snapshot({"a": "value a", "b": "value b"})
    store.set_ref("tags/root", root)
    victim = store.put_value("value a")
    env = store.environment
    env.write(lambda txn: txn.delete(victim.raw, db=env.dbs["objects"]))
    report = fsck(store)
    assert [(p.kind, p.digest, p.referenced_by) for p in report.problems] == [
        ("missing", victim, root.hex)
    ]


def test_fsck_clean_store(store: Store) -> None:
    """fsck on a healthy store reports no problem and counts what it checked."""
    store.set_ref("tags/s", store.put_snapshot({"x": 1, "y": [1, 2]}))
    report = fsck(store)
    assert report.ok
    assert (report.objects_checked, report.refs_checked) == (3, 1)


def test_bad_key_reported(store: Store) -> None:
    """A key that is not a 32-byte digest is reported, not crashed on."""
    env = store.environment
    env.write(lambda txn: txn.put(b"short", b"junk", db=env.dbs["objects"]))
    report = fsck(store)
    assert [(p.kind, p.digest) for p in report.problems] == [("bad-key", None)]


def test_short_payload_is_stored_as_is_without_a_dictionary() -> None:
    """Without a dictionary, a payload under 256 bytes is stored as is; from 256, zstd."""
    short = encode_record(Kind.VALUE, b'"' + b"ab" * 100 + b'"')
    assert read_header(short.digest, short.record).codec == "none"
    assert open_record(short.digest, short.record) == (Kind.VALUE, b'"' + b"ab" * 100 + b'"')
    longer = encode_record(Kind.VALUE, b'"' + b"ab" * 128 + b'"')
    assert read_header(longer.digest, longer.record).codec == "zstd"


def test_short_lived_records_are_stored_as_is() -> None:
    """Records a writer marks short-lived are stored as is under AS_IS_BELOW bytes, where
    others of their size are compressed; at that size and above, compressed anyway."""
    text = b'"' + b"0123456789abcdef" * 80 + b'"'  # 1,282 bytes, very compressible
    large = text * 2
    items = [(compute_digest(Kind.RUN, p).raw, Kind.RUN, p) for p in (text, large)]
    marked = frozenset(key for key, _, _ in items)
    (_, kept), (_, packed) = build_pending_records(items, as_is=marked)
    assert isinstance(kept, bytes)
    assert isinstance(packed, bytes)
    assert HEADER.unpack_from(kept)[2] == 0  # stored as is
    assert HEADER.unpack_from(packed)[2] == 1  # zstd
    assert open_record(Digest(items[0][0]), kept) == (Kind.RUN, text)
    ((_, unmarked),) = build_pending_records(items[:1])
    assert isinstance(unmarked, bytes)
    assert HEADER.unpack_from(unmarked)[2] == 1
    assert len(large) >= AS_IS_BELOW > len(text)


def test_small_payloads_are_compressed_at_level_one() -> None:
    """A payload under 4 KiB is compressed at zstd level 1 (cheaper, next to no bytes
    lost on so short an input), a larger one at level 3; both are standard frames that
    open, and decode with any zstd decoder, to the payload."""
    rng = random.Random(7)
    words = ["order", "item", "price", "total", "customer", "street", "tag", "blue"]
    small, large = (json.dumps([{rng.choice(words): rng.randrange(10**6), "at": rng.random()}
                                for _ in range(count)]).encode() for count in (40, 400))
    assert 256 <= len(small) < 4096 <= len(large)
    records = dict(build_pending_records(
        [(compute_digest(Kind.VALUE, p).raw, Kind.VALUE, p) for p in (small, large)]))
    for payload, level in ((small, 1), (large, 3)):
        key = compute_digest(Kind.VALUE, payload).raw
        record = records[key]
        assert isinstance(record, bytes)
        assert HEADER.unpack_from(record)[2] == 1  # zstd
        body = record[HEADER.size:]
        expected = zstandard.ZstdCompressor(level=level, write_content_size=True)
        assert body == expected.compress(payload)
        assert zstandard.ZstdDecompressor().decompress(body) == payload
        assert open_record(Digest(key), record) == (Kind.VALUE, payload)
