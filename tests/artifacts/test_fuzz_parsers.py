"""Fuzzing what reads stored bytes: only PinrunError subclasses ever escape."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinrun.artifacts.bundle import export_bundle, scan_bundle
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.objects import (
    FORMAT_VERSION,
    HEADER,
    encode_record,
    open_record,
    read_header,
    verify_record,
)
from pinrun.artifacts.store import Store
from pinrun.errors import PinrunError

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SAMPLE = encode_record(Kind.VALUE, b'{"items":[' + b'"abc",' * 200 + b'"z"]}')
DIGEST = SAMPLE.digest


def _read_everything(digest: Digest, record: bytes) -> None:
    for reader in (read_header, open_record, verify_record):
        with contextlib.suppress(PinrunError):
            reader(digest, record)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_a_record(record: bytes) -> None:
    """Any bytes at all, read as a record, give a result or a PinrunError."""
    _read_everything(DIGEST, record)


@FUZZ
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
       st.integers(0, (1 << 64) - 1), st.binary(max_size=64))
def test_any_header_in_front_of_a_real_frame(version: int, kind: int, codec: int, size: int,
                                              tail: bytes) -> None:
    """Every header field value, sizes from 0 to 2**64-1, before a real zstd frame."""
    frame = SAMPLE.record[HEADER.size:]
    _read_everything(DIGEST, struct.pack("<BBBQ", version, kind, codec, size) + frame + tail)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE.record) - 1), st.integers(1, 255)),
                min_size=1, max_size=6))
def test_flipped_bits_in_a_real_record(flips: list[tuple[int, int]]) -> None:
    """A real compressed record with bits flipped is read or refused as a PinrunError."""
    record = bytearray(SAMPLE.record)
    for offset, mask in flips:
        record[offset] ^= mask
    _read_everything(DIGEST, bytes(record))
    if bytes(record[:3]) == SAMPLE.record[:3] and bytes(record) != SAMPLE.record:
        with pytest.raises(PinrunError):
            open_record(DIGEST, bytes(record))  # a changed record never passes as the original


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small real bundle (snapshots, a large value, a blob)."""
    folder = tmp_path_factory.mktemp("fuzz")
    with Store.open(folder / "s", create=True) as store:
        with store.batch() as batch:
            root = batch.put_snapshot({"a": [1, 2, 3], "b": "x" * 5000, "c": b"\x00" * 300})
            batch.set_ref("snaps/one", root)
        export_bundle(store, None, folder / "b.pinrun")
    return (folder / "b.pinrun").read_bytes()


@FUZZ
@given(data=st.data())
def test_damaged_bundles_are_refused_as_pinrun_errors(real_bundle: bytes, tmp_path: Path,
                                                      data: st.DataObject) -> None:
    """A real bundle cut short, with bytes flipped or spliced, scans or raises PinrunError."""
    body = bytearray(real_bundle)
    action = data.draw(st.sampled_from(["flip", "cut", "splice"]))
    if action == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            body[data.draw(st.integers(0, len(body) - 1))] ^= data.draw(st.integers(1, 255))
    elif action == "cut":
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    else:
        at = data.draw(st.integers(0, len(body)))
        body[at:at] = data.draw(st.binary(min_size=1, max_size=32))
    path = tmp_path / "fuzzed.pinrun"
    path.write_bytes(bytes(body))
    try:
        scan_bundle(path)
    except PinrunError:
        return
    assert bytes(body) == real_bundle  # only an unchanged body scans (two flips may cancel)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_files_as_bundles(tmp_path: Path, content: bytes) -> None:
    """Any file given to import, with or without the magic in front, is a PinrunError."""
    for prefix in (b"", b"PINRUN-BUNDLE\n\x01"):
        path = tmp_path / "any.pinrun"
        path.write_bytes(prefix + content)
        with pytest.raises(PinrunError):
            scan_bundle(path)


def test_the_sample_record_is_compressed() -> None:
    """The fuzzed record goes through zstd, so the frame checks are exercised."""
    assert SAMPLE.record[2] == 1
    assert read_header(DIGEST, SAMPLE.record).raw_size > len(SAMPLE.record)
    assert SAMPLE.record[0] == FORMAT_VERSION
