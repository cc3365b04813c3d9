"""Proving a stored record holds an object the caller has (a replay's outputs): by equal
bytes, with the same refusals as a read that hashes it again."""

from __future__ import annotations

from typing import Any

import pytest

from pinrun.artifacts import objects
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.objects import CODEC_NONE, HEADER, build_records, check_record
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError, MissingObjectError, ObjectFormatError

#: Payloads stored as is (short), at zstd level 1 (~1 KiB) and at level 3 (~8 KiB).
PAYLOADS = [b'{"n":1}', b'{"text":"' + b"abc" * 300 + b'"}', b'"' + b"xyz" * 3000 + b'"']


def _record(kind: Kind, payload: bytes) -> tuple[Digest, bytes]:
    digest = compute_digest(kind, payload)
    ((_, record),) = build_records([(digest.raw, kind, payload)])
    return digest, record


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_whole_record_holds_its_payload(payload: bytes) -> None:
    """A record as written, stored as is or compressed, holds the payload it was made of."""
    digest, record = _record(Kind.VALUE, payload)
    check_record(digest, record, Kind.VALUE, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_damaged_record_is_refused_as_a_read_refuses_it(payload: bytes) -> None:
    """Bad bytes at the end of a record raise the CorruptObjectError a read raises."""
    digest, record = _record(Kind.VALUE, payload)
    damaged = record[:-3] + b"BAD"
    with pytest.raises(CorruptObjectError) as read:
        objects.open_record(digest, damaged)
    with pytest.raises(CorruptObjectError) as checked:
        check_record(digest, damaged, Kind.VALUE, payload)
    assert type(checked.value) is type(read.value)
    assert str(checked.value) == str(read.value)


def test_a_record_of_other_bytes_with_the_same_header_is_refused() -> None:
    """A record stored as is whose bytes differ from the payload is hashed, and refused."""
    payload = b'{"n":1}'
    digest = compute_digest(Kind.VALUE, payload)
    other = HEADER.pack(objects.FORMAT_VERSION, Kind.VALUE.code, CODEC_NONE, 7) + b'{"n":2}'
    with pytest.raises(CorruptObjectError, match=digest.hex):
        check_record(digest, other, Kind.VALUE, payload)


def test_a_record_of_an_unknown_format_is_refused_as_a_read_refuses_it() -> None:
    """A header this pinrun cannot read raises ObjectFormatError, as a read does."""
    payload = b'{"n":1}'
    digest, record = _record(Kind.VALUE, payload)
    with pytest.raises(ObjectFormatError):
        check_record(digest, b"\x09" + record[1:], Kind.VALUE, payload)


def test_check_many_compares_instead_of_hashing(store: Store,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects given with their payloads are compared, not opened and hashed again; one
    given without (None) is opened and hashed as a read would."""
    given = {}
    with store.batch() as batch:
        for payload in PAYLOADS:
            given[batch.put(Kind.VALUE, payload)] = (Kind.VALUE, payload)
        large = batch.put(Kind.VALUE, b'"' + b"q" * 100 + b'"')
    opened: list[Digest] = []
    real = objects.open_record

    def counting(digest: Digest, record: Any, load: Any = None) -> Any:
        opened.append(digest)
        return real(digest, record, load)

    monkeypatch.setattr("pinrun.artifacts.store.open_record", counting)
    monkeypatch.setattr(objects, "open_record", counting)
    store.check_many({**given, large: (Kind.VALUE, None)})
    assert opened == [large]


def test_check_many_refuses_a_missing_object(store: Store) -> None:
    """An object that is not stored raises MissingObjectError naming it."""
    payload = b'{"gone":true}'
    digest = compute_digest(Kind.VALUE, payload)
    with pytest.raises(MissingObjectError, match=digest.hex):
        store.check_many({digest: (Kind.VALUE, payload)})


@pytest.mark.parametrize("text", ["ab" * 32, "AB" * 32, " " + "ab" * 32 + " "])
def test_a_digest_tag_decodes_to_its_digest_in_every_form_it_did(text: str) -> None:
    """The codec's $digest tag read in C (lowercase hex, as pinrun writes it) and by
    Digest.from_hex (any other form it took before) gives the same Digest."""
    from pinrun.artifacts import codec

    decoded = codec.decode(b'{"$digest":"' + text.encode() + b'"}')
    assert type(decoded) is Digest
    assert decoded == Digest(bytes.fromhex("ab" * 32))


@pytest.mark.parametrize("payload", [b'{"$digest":"abc"}', b'{"$digest":5}',
                                     b'{"$digest":"' + b"zz" * 32 + b'"}'])
def test_a_bad_digest_tag_is_still_refused(payload: bytes) -> None:
    """A $digest tag that names no digest is refused as before (InvalidDigestError for a
    string that is not one, UndecodableValueError for anything else)."""
    from pinrun.artifacts import codec
    from pinrun.errors import InvalidDigestError, UndecodableValueError

    with pytest.raises((InvalidDigestError, UndecodableValueError)):
        codec.decode(payload)
