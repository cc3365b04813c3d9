"""Stored objects: a small header, then the payload, compressed when that pays.

A record on disk is::

    byte 0      format version (1)
    byte 1      kind (see Kind.code)
    byte 2      codec: 0 = payload stored as is, 1 = zstd,
                2 = zstd with a trained dictionary
    bytes 3-10  raw (uncompressed) payload size, unsigned 64-bit little-endian
    bytes 11-   codec 2 only: the 32-byte digest of the dictionary's blob
    then        the payload, compressed or not

The digest covers the kind and the *uncompressed* payload, never the header, so
records can be recompressed or re-headed without renaming anything.

Records may come from someone else's store or bundle, so sizes are bounded
before anything is allocated: the header's raw size must be within the
kind's limit (:data:`MAX_RAW_SIZE`, which writers respect too), and a zstd
frame must declare exactly that size, since the decompressor allocates what
the frame declares. :func:`verify_record` proves a record without ever
holding its payload, for records too large to trust yet.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator, Set
from typing import Any, Final

import blake3
import zstandard

from pinrun.artifacts.dictionary import (
    DICTIONARY_MIN_PAYLOAD,
    Dictionary,
    cached_dictionary,
    dictionary_for,
)
from pinrun.artifacts.digest import DIGEST_SIZE, Digest, Kind, compute_digest
from pinrun.data_classes import data_class
from pinrun.errors import (
    CorruptObjectError,
    MissingObjectError,
    ObjectFormatError,
    UnsupportedValueError,
)

__all__ = [
    "AS_IS_BELOW",
    "CODEC_ZSTD_DICT",
    "FORMAT_VERSION",
    "HEADER",
    "MAX_RAW_SIZE",
    "SMALLEST_MAX_RAW_SIZE",
    "EncodedObject",
    "PlainRecord",
    "RecordInfo",
    "assembled",
    "build_pending_records",
    "build_records",
    "check_payload_size",
    "check_record",
    "encode_record",
    "open_record",
    "read_header",
    "record_dictionary",
    "unpack_record",
    "verify_record",
]

#: Reads a dictionary's blob by digest (the store's own loader, usually).
DictionaryLoader = Callable[[Digest], bytes]

FORMAT_VERSION: Final = 1
HEADER: Final = struct.Struct("<BBBQ")
CODEC_NONE: Final = 0
CODEC_ZSTD: Final = 1
CODEC_ZSTD_DICT: Final = 2
_CODEC_NAMES: Final = {CODEC_NONE: "none", CODEC_ZSTD: "zstd", CODEC_ZSTD_DICT: "zstd+dict"}
_KIND_OF: Final = {kind.code: kind for kind in Kind}
# Below this size a zstd frame's own overhead outweighs any gain, even with a dictionary.
_MIN_COMPRESS: Final = DICTIONARY_MIN_PAYLOAD
# Without a dictionary, a payload under 256 bytes is stored as is: zstd alone shrinks so
# short a text by a few dozen bytes at most, at ~4 us per object, and a recorded run's
# commit is mostly such objects (a 5-step run: 10 of its 14 compressed objects; stored as
# is, its records take 1.5% more room). With a trained dictionary they shrink ~2.8x, and
# are still compressed from 64 bytes.
_MIN_COMPRESS_PLAIN: Final = 256
# A record its writer marks short-lived (a running run's link and state tree, garbage once
# the run is whole: see WriteBatch.store_as_is) is stored as is below this size. zstd
# spends ~40 instructions a byte on such records (~95k a record at level 3: its match
# finder and Huffman tables, set up per frame), to save about half of a text that is
# mostly hexadecimal digests, at every durable step. Below this size a record stored as
# is still fits in an LMDB leaf page (a node holds up to ~2,000 bytes on 4 KiB pages), so
# no overflow page is added.
AS_IS_BELOW: Final = 1900
_ZSTD_LEVEL: Final = 3
# Payloads under this size are compressed at level 1 (``_ZSTD_SMALL_LEVEL``). On so
# short an input zstd's level-3 match finder (double fast) finds next to nothing
# that level 1's (fast) misses, and its cost is per byte: measured on a recorded
# run's four records (291 to 2,748 bytes), 246k instead of 295k instructions for
# 1,829 instead of 1,827 bytes; on the benchmark's ~1 KiB JSON records, +0.18 %
# bytes. The frame is a standard zstd frame either way (any reader decodes it).
_SMALL_BELOW: Final = 4096
_ZSTD_SMALL_LEVEL: Final = 1
# Below this many payloads a batch is compressed in this thread: starting
# zstd's worker threads costs more than it saves.
_PARALLEL_MIN_ITEMS: Final = 16
# Starting zstd's threads costs up to milliseconds: below this many bytes a
# plain loop is faster (measured: 64 objects of 100 bytes, 3 ms vs 0.08 ms).
_PARALLEL_MIN_BYTES: Final = 1 << 20
_THREADS: Final = min(os.cpu_count() or 1, 4)
_MiB: Final = 1 << 20
# Payloads are compressed this many bytes at a time, so what zstd hands back
# for a large batch (as large as its input, where it does not pay) is never
# held for the whole batch at once.
_WINDOW_BYTES: Final = 32 * _MiB
# Records stored as is from at least this size are assembled only as they are
# written (see build_pending_records): a large blob is not held twice.
_DEFER_MIN: Final = 256 * 1024

#: The largest uncompressed payload of each kind that pinrun writes or reads.
#: Blobs are chunked at 4 MiB (trees.CHUNK_THRESHOLD); a state value is one
#: canonical encoding; records of structure (trees, runs, code) grow with the
#: number of keys, steps and modules.
MAX_RAW_SIZE: Final = {
    Kind.BLOB: 64 * _MiB, Kind.VALUE: 2048 * _MiB, Kind.TREE: 512 * _MiB,
    Kind.CODE: 256 * _MiB, Kind.STEP: 64 * _MiB, Kind.FLOW: 64 * _MiB, Kind.ENV: 64 * _MiB,
    Kind.RUN: 512 * _MiB,
}
#: No payload this small is over any kind's limit (writers check the limit only above it).
SMALLEST_MAX_RAW_SIZE: Final = min(MAX_RAW_SIZE.values())
# verify_record streams what it decompresses through the hash in pieces this big.
_VERIFY_CHUNK: Final = 1 * _MiB

# zstandard compressor objects are not thread-safe; keep one per thread.
# Per thread: stateless zstd (de)compressors reused for speed; nothing depends on code.
_local = threading.local()


def _compressor(level: int = _ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    """This thread's compressor at ``level`` (``_ZSTD_SMALL_LEVEL`` for payloads under
    :data:`_SMALL_BELOW` bytes), made once per thread and level."""
    made: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if made is None:
        made = _local.compressors = {}
    comp = made.get(level)
    if comp is None:
        comp = made[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dec is None:
        dec = zstandard.ZstdDecompressor()
        _local.decompressor = dec
    return dec


@data_class(frozen=True, slots=True)
class EncodedObject:
    """An object ready to be written: its digest and its on-disk record."""

    digest: Digest
    kind: Kind
    record: bytes
    raw_size: int


@data_class(frozen=True, slots=True)
class PlainRecord:
    """A record stored as is, not assembled yet: its header, and the payload it prefixes."""

    header: bytes
    payload: bytes | memoryview

    def assemble(self) -> bytes:
        """The record's bytes (one copy of the payload)."""
        return self.header + self.payload


@data_class(frozen=True, slots=True)
class RecordInfo:
    """What a record's header says, without decompressing the payload."""

    kind: Kind
    codec: str
    raw_size: int
    stored_size: int


def check_payload_size(kind: Kind, size: int, what: str = "value") -> None:
    """Refuse to write a payload larger than any reader accepts (``UnsupportedValueError``)."""
    limit = MAX_RAW_SIZE[kind]
    if size > limit:
        raise UnsupportedValueError(what, kind.value, f"its encoding is {size:,} bytes, over "
                                    f"the {limit // _MiB:,} MiB pinrun stores as one {kind.value}")


def encode_record(kind: Kind, payload: bytes) -> EncodedObject:
    """Hash ``payload`` as ``kind`` and build its record, compressing when smaller."""
    digest = compute_digest(kind, payload)
    ((_, record),) = build_records([(digest.raw, kind, payload)])
    return EncodedObject(digest, kind, record, len(payload))


def build_records(items: list[tuple[bytes, Kind, bytes]],
                  dictionary: Dictionary | None = None) -> list[tuple[bytes, bytes]]:
    """``(key, record)`` for each ``(key, kind, payload)``, compressing where it pays.

    With a ``dictionary``, small payloads are compressed with it. A large
    batch is compressed by zstd's own threads, which spreads the costliest
    step of a write over every core; each record keeps the compressed form
    only when it is smaller.
    """
    return list(assembled(build_pending_records(items, dictionary)))


def assembled(records: list[tuple[bytes, bytes | PlainRecord]]
              ) -> Iterator[tuple[bytes, bytes]]:
    """Each ``(key, record)`` with its record assembled, one at a time as it is asked for."""
    for key, record in records:
        yield key, (record if isinstance(record, bytes) else record.assemble())


def build_pending_records(items: list[tuple[bytes, Kind, bytes]],
                          dictionary: Dictionary | None = None,
                          as_is: Set[bytes] = frozenset(),
                          ) -> list[tuple[bytes, bytes | PlainRecord]]:
    """Like :func:`build_records`, but a large record stored as is stays a
    :class:`PlainRecord` until :func:`assembled` writes it (no second copy of a
    large blob waits for the transaction). ``as_is``: keys of short-lived records,
    stored uncompressed when under :data:`AS_IS_BELOW` bytes."""
    plain_indexes: list[int] = []
    small_indexes: list[int] = []
    dict_indexes: list[int] = []
    dict_small_indexes: list[int] = []
    # (A trained dictionary compresses 64 bytes to 16 KiB, the format dictionary 256 bytes
    # to 4 KiB: see Dictionary.min_payload.)
    dict_min, dict_max = (dictionary.min_payload, dictionary.max_payload) \
        if dictionary is not None else (0, -1)
    for index, item in enumerate(items):
        size = len(item[2])
        if size >= _MIN_COMPRESS and (size >= AS_IS_BELOW or item[0] not in as_is):
            if dict_min <= size <= dict_max:
                (dict_small_indexes if size < _SMALL_BELOW else dict_indexes).append(index)
            elif size >= _SMALL_BELOW:
                plain_indexes.append(index)
            elif size >= _MIN_COMPRESS_PLAIN:
                small_indexes.append(index)
    packed = _compress_all(items, plain_indexes, _compressor()) if plain_indexes else {}
    if small_indexes:
        packed.update(_compress_all(items, small_indexes, _compressor(_ZSTD_SMALL_LEVEL)))
    if dictionary is not None and dict_indexes:
        packed.update(_compress_all(items, dict_indexes, dictionary.compressor()))
    if dictionary is not None and dict_small_indexes:
        # (Level 1 below 4 KiB, as without a dictionary: measured on a recording store's
        # records, 0.7x the instructions, and no more bytes.)
        packed.update(_compress_all(items, dict_small_indexes,
                                    dictionary.compressor(_ZSTD_SMALL_LEVEL)))
    pack_header = HEADER.pack
    dict_tag = dictionary.digest.raw if dictionary is not None else b""
    out: list[tuple[bytes, bytes | PlainRecord]] = []
    for index, (key, kind, payload) in enumerate(items):
        size = len(payload)
        body = packed.get(index)
        if body is None or len(body) >= size:
            header = pack_header(FORMAT_VERSION, kind.code, CODEC_NONE, size)
            out.append((key, PlainRecord(header, payload) if size >= _DEFER_MIN
                        else header + payload))
        elif dict_min <= size <= dict_max:
            out.append((key, pack_header(FORMAT_VERSION, kind.code, CODEC_ZSTD_DICT, size) +
                        dict_tag + body))
        else:
            out.append((key, pack_header(FORMAT_VERSION, kind.code, CODEC_ZSTD, size) + body))
    return out


def _compress_all(items: list[tuple[bytes, Kind, bytes]], indexes: list[int],
                  compressor: zstandard.ZstdCompressor) -> dict[int, bytes]:
    """The compressed payloads that came out smaller, by index; a window at a time."""
    out: dict[int, bytes] = {}
    window: list[int] = []
    size = 0
    for index in indexes:
        window.append(index)
        size += len(items[index][2])
        if size >= _WINDOW_BYTES:
            _compress_window(items, window, compressor, out)
            window, size = [], 0
    if window:
        _compress_window(items, window, compressor, out)
    return out


def _compress_window(items: list[tuple[bytes, Kind, bytes]], indexes: list[int],
                     compressor: zstandard.ZstdCompressor, out: dict[int, bytes]) -> None:
    if len(indexes) >= _PARALLEL_MIN_ITEMS and _THREADS > 1 and \
            sum(len(items[i][2]) for i in indexes) >= _PARALLEL_MIN_BYTES:
        results = compressor.multi_compress_to_buffer([items[i][2] for i in indexes],
                                                      threads=_THREADS)
        for n, index in enumerate(indexes):
            if len(results[n]) < len(items[index][2]):  # copied out only when it pays
                out[index] = results[n].tobytes()
        return
    compress = compressor.compress
    for index in indexes:
        body = compress(items[index][2])
        if len(body) < len(items[index][2]):
            out[index] = body


def record_dictionary(record: bytes | memoryview) -> Digest | None:
    """The dictionary a record was compressed with, if any (a reference gc must keep)."""
    if len(record) >= HEADER.size + DIGEST_SIZE and record[2] == CODEC_ZSTD_DICT:
        return Digest(bytes(record[HEADER.size : HEADER.size + DIGEST_SIZE]))
    return None


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
    _check_raw_size(digest, kind, raw_size)
    return RecordInfo(kind, _CODEC_NAMES[codec], raw_size, len(record))


def _check_raw_size(digest: Digest, kind: Kind, raw_size: int) -> None:
    if raw_size > MAX_RAW_SIZE[kind]:
        raise CorruptObjectError(digest, None, f"its header claims {raw_size:,} bytes, more "
                                 f"than any {kind.value} pinrun writes")


def _frame(digest: Digest, record: bytes | memoryview, codec: int, raw_size: int) -> Any:
    """The zstd frame of a record, once its declared size is proven to be ``raw_size``."""
    start = HEADER.size + (DIGEST_SIZE if codec == CODEC_ZSTD_DICT else 0)
    frame = record[start:]
    try:
        declared = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(digest, None, f"its compressed data is damaged ({exc})") \
            from None
    if declared != raw_size:
        # The decompressor allocates what the frame declares: never trust it alone.
        raise CorruptObjectError(digest, None, f"its compressed frame declares {declared:,} "
                                 f"bytes where its header says {raw_size:,}")
    return frame


def open_record(
    digest: Digest, record: bytes | memoryview, load_dictionary: DictionaryLoader | None = None
) -> tuple[Kind, bytes]:
    """Decompress a record and prove it hashes to ``digest``; return kind and payload.

    A record compressed with a dictionary needs ``load_dictionary`` to fetch
    that dictionary's blob the first time it is met in this process.
    """
    kind, payload = _unpacked(digest, record, load_dictionary)
    # compute_digest: one C call for a payload of one BLAKE3 chunk (most records a replay
    # reads), a reused hasher otherwise; a fresh hasher cost more than hashing them.
    made = compute_digest(kind, payload)
    if made.raw != digest.raw:
        raise CorruptObjectError(digest, made)
    return kind, payload


def check_record(digest: Digest, record: bytes, kind: Kind, payload: bytes | memoryview,
                 load_dictionary: DictionaryLoader | None = None) -> None:
    """Prove ``record`` holds the object ``digest``, which the caller has: ``kind`` and
    ``payload``, that it hashed to ``digest`` itself (a replay's outputs, say).

    The same proof as :func:`open_record`'s, by equal bytes instead of a second hash:
    the record's header and payload are what :func:`build_records` writes for them as
    is, or it decompresses to ``payload``. A record that is not raises what
    :func:`open_record` raises for it (a damaged or crafted one).
    """
    size = len(payload)
    if len(record) == HEADER.size + size and record[2] == CODEC_NONE:
        if record == HEADER.pack(FORMAT_VERSION, kind.code, CODEC_NONE, size) + payload:
            return
    # (A damaged compressed record raises in _unpacked what open_record would.)
    elif len(record) >= HEADER.size and record[0] == FORMAT_VERSION and \
            record[1] == kind.code and HEADER.unpack_from(record)[3] == size and \
            _unpacked(digest, record, load_dictionary)[1] == payload:
        return
    open_record(digest, record, load_dictionary)  # raises: damaged, or not this object


def unpack_record(digest: Digest, record: bytes | memoryview,
                  load_dictionary: DictionaryLoader | None = None) -> tuple[Kind, bytes]:
    """A record's kind and payload, decompressed and its sizes checked, but not proven
    to hash to ``digest`` (:func:`open_record` proves it): only for a hint that a
    proven read confirms later."""
    return _unpacked(digest, record, load_dictionary)


def _unpacked(
    digest: Digest, record: bytes | memoryview, load_dictionary: DictionaryLoader | None
) -> tuple[Kind, bytes]:
    """A record's kind and payload, decompressed and its sizes checked (not hashed)."""
    if len(record) < HEADER.size:
        raise CorruptObjectError(digest, None, "its record is shorter than a header")
    version, kind_code, codec, raw_size = HEADER.unpack_from(record)
    kind = _KIND_OF.get(kind_code) if version == FORMAT_VERSION else None
    if kind is None or codec > CODEC_ZSTD_DICT:
        read_header(digest, record)  # raises the precise ObjectFormatError
    assert kind is not None
    _check_raw_size(digest, kind, raw_size)
    try:
        if codec == CODEC_ZSTD:
            payload = _decompressor().decompress(_frame(digest, record, codec, raw_size),
                                                 allow_extra_data=False)
        elif codec == CODEC_ZSTD_DICT:
            dictionary = _dictionary_of(digest, record, load_dictionary)
            payload = dictionary.decompressor().decompress(
                _frame(digest, record, codec, raw_size), allow_extra_data=False)
        else:
            payload = bytes(record[HEADER.size:])
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(digest, None, f"its compressed data is damaged ({exc})") \
            from None
    if len(payload) != raw_size:
        raise CorruptObjectError(
            digest, None, f"it holds {len(payload)} bytes where its header says {raw_size}"
        )
    return kind, payload


def verify_record(
    digest: Digest, record: bytes | memoryview, load_dictionary: DictionaryLoader | None = None
) -> RecordInfo:
    """Prove a record hashes to ``digest`` without holding its payload in memory.

    The payload is decompressed and hashed in 1 MiB pieces, and the stream
    is cut off as soon as it runs past the header's size, so a record that
    lies about its size costs at most one piece to refuse.
    """
    info = read_header(digest, record)  # bounds raw_size by the kind's limit
    hasher = blake3.blake3(info.kind.tag)
    if info.codec == "none":
        hasher.update(record[HEADER.size:])
        produced = len(record) - HEADER.size
    else:
        codec = CODEC_ZSTD if info.codec == "zstd" else CODEC_ZSTD_DICT
        frame = _frame(digest, record, codec, info.raw_size)
        decompressor = (_dictionary_of(digest, record, load_dictionary).decompressor()
                        if codec == CODEC_ZSTD_DICT else _decompressor())
        produced = 0
        try:
            # A stream reader hands out at most what is asked for: decompressobj
            # would inflate a bomb whole in one call. Reading across frames makes
            # bytes after the frame an error (or more output than declared).
            reader = decompressor.stream_reader(frame, read_size=_VERIFY_CHUNK // 8,
                                                read_across_frames=True)
            while produced <= info.raw_size:
                piece = reader.read(_VERIFY_CHUNK)
                if not piece:
                    break
                produced += len(piece)
                hasher.update(piece)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(digest, None, f"its compressed data is damaged ({exc})") \
                from None
    if produced != info.raw_size:
        raise CorruptObjectError(digest, None, f"it holds at least {produced:,} bytes where "
                                 f"its header says {info.raw_size:,}")
    if hasher.digest() != digest.raw:
        raise CorruptObjectError(digest, None, "its content does not hash to its digest")
    return info


def _dictionary_of(digest: Digest, record: bytes | memoryview,
                   load_dictionary: DictionaryLoader | None) -> Dictionary:
    cached = cached_dictionary(bytes(record[HEADER.size : HEADER.size + DIGEST_SIZE]))
    if cached is not None:  # the common case: skip building a Digest per read
        return cached
    dictionary_digest = record_dictionary(record)
    if dictionary_digest is None:
        raise CorruptObjectError(digest, None, "its record is too short to name a dictionary")

    def load(wanted: Digest) -> bytes:
        if load_dictionary is None:
            raise MissingObjectError(wanted, referenced_by=digest.hex)
        return load_dictionary(wanted)

    try:
        return dictionary_for(dictionary_digest, load)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(dictionary_digest, None,
                                 f"it is not a usable zstd dictionary ({exc})") from None
