"""Stored objects: a small header, then the payload, compressed when that pays.

A record on disk is::

    byte 0      format version (1)
    byte 1      kind (see Kind.code)
    byte 2      codec: 0 = payload stored as is, 1 = zstd
    bytes 3-10  raw (uncompressed) payload size, unsigned 64-bit little-endian
    bytes 11-   the payload, compressed or not

The digest covers the kind and the *uncompressed* payload, never the header, so
records can be recompressed or re-headed without renaming anything.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Final

import zstandard

from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.errors import CorruptObjectError, ObjectFormatError

__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "EncodedObject",
    "RecordInfo",
    "encode_record",
    "open_record",
    "read_header",
]

FORMAT_VERSION: Final = 1
HEADER: Final = struct.Struct("<BBBQ")
CODEC_NONE: Final = 0
CODEC_ZSTD: Final = 1
_CODEC_NAMES: Final = {CODEC_NONE: "none", CODEC_ZSTD: "zstd"}
# Below this size a zstd frame's own overhead outweighs any gain.
_MIN_COMPRESS: Final = 64
_ZSTD_LEVEL: Final = 3

# zstandard compressor objects are not thread-safe; keep one per thread.
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    comp: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if comp is None:
        comp = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True)
        _local.compressor = comp
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dec is None:
        dec = zstandard.ZstdDecompressor()
        _local.decompressor = dec
    return dec


@dataclass(frozen=True, slots=True)
class EncodedObject:
    """An object ready to be written: its digest and its on-disk record."""

    digest: Digest
    kind: Kind
    record: bytes
    raw_size: int


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """What a record's header says, without decompressing the payload."""

    kind: Kind
    codec: str
    raw_size: int
    stored_size: int


def encode_record(kind: Kind, payload: bytes) -> EncodedObject:
    """Hash ``payload`` as ``kind`` and build its record, compressing when smaller."""
    digest = compute_digest(kind, payload)
    return build_record(digest, kind, payload)


def build_record(digest: Digest, kind: Kind, payload: bytes) -> EncodedObject:
    """Build the record for a payload whose digest is already known."""
    size = len(payload)
    codec, body = CODEC_NONE, payload
    if size >= _MIN_COMPRESS:
        packed = _compressor().compress(payload)
        if len(packed) < size:
            codec, body = CODEC_ZSTD, packed
    return EncodedObject(digest, kind, HEADER.pack(FORMAT_VERSION, kind.code, codec, size) + body,
                         size)


def read_header(digest: Digest, record: bytes | memoryview) -> RecordInfo:
    """Parse a record's header; ``ObjectFormatError`` when it is not one this version reads."""
    if len(record) < HEADER.size:
        raise CorruptObjectError(digest, None, "its record is shorter than a header")
    version, kind_code, codec, raw_size = HEADER.unpack_from(record)
    if version != FORMAT_VERSION:
        raise ObjectFormatError(digest, f"record format version {version} is not supported "
                                f"(this pinrun reads version {FORMAT_VERSION})")
    try:
        kind = Kind.from_code(kind_code)
    except KeyError:
        raise ObjectFormatError(digest, f"unknown kind code {kind_code}") from None
    if codec not in _CODEC_NAMES:
        raise ObjectFormatError(digest, f"unknown compression codec {codec}")
    return RecordInfo(kind, _CODEC_NAMES[codec], raw_size, len(record))


def open_record(digest: Digest, record: bytes | memoryview) -> tuple[Kind, bytes]:
    """Decompress a record and prove it hashes to ``digest``; return kind and payload."""
    info = read_header(digest, record)
    body = memoryview(record)[HEADER.size:]
    if info.codec == "zstd":
        try:
            payload = _decompressor().decompress(body, max_output_size=info.raw_size)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(digest, None, f"its compressed data is damaged ({exc})") \
                from None
    else:
        payload = bytes(body)
    if len(payload) != info.raw_size:
        raise CorruptObjectError(
            digest, None, f"it holds {len(payload)} bytes where its header says {info.raw_size}"
        )
    actual = compute_digest(info.kind, payload)
    if actual != digest:
        raise CorruptObjectError(digest, actual)
    return info.kind, payload
