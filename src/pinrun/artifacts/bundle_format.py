"""The bundle file format: its constants, its manifest, and exact, hashing I/O.

Layout (all integers little-endian)::

    b"PINRUN-BUNDLE\\n"  magic, then one byte: bundle format version (1)
    u32 + JSON          manifest: {"format", "pinrun", "refs": {name: hex}, "roots": [hex]}
    repeated:           b"\\x01", 32-byte digest, u64 record length, the stored record
    b"\\x00"             end of records
    u64                 number of records
    32 bytes            BLAKE3 of every byte before these 32

Records are the store's own (header plus compressed payload), so export and
import copy bytes without recompressing.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Final

import blake3
import orjson

from pinrun._version import __version__
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.objects import HEADER, MAX_RAW_SIZE
from pinrun.artifacts.refs import validate_ref_name
from pinrun.errors import BundleError, PinrunError

__all__ = [
    "BUNDLE_FORMAT",
    "INTERNAL_REF_PREFIX",
    "MAGIC",
    "MAX_RECORD",
    "Manifest",
    "Progress",
    "Reader",
    "Writer",
    "no_progress",
    "read_manifest",
    "user_file_mode",
    "write_end",
    "write_head",
]

MAGIC: Final = b"PINRUN-BUNDLE\n"
BUNDLE_FORMAT: Final = 1
#: Refs under this prefix belong to pinrun itself and never travel in bundles.
INTERNAL_REF_PREFIX: Final = "pinrun/"
U32: Final = struct.Struct("<I")
U64: Final = struct.Struct("<Q")
RECORD_TAG: Final = b"\x01"
END_TAG: Final = b"\x00"
_MAX_MANIFEST: Final = 64 * 1024 * 1024
#: No record is larger than the largest payload plus its header and zstd's worst case.
MAX_RECORD: Final = max(MAX_RAW_SIZE.values()) + HEADER.size + 32 + (1 << 20)

#: Called as ``progress(done, total)``; ``total`` is 0 while it is not known yet.
Progress = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """A progress callback that shows nothing."""


@dataclass(frozen=True)
class Manifest:
    """What a bundle says it carries: refs to set and plain roots."""

    refs: dict[str, Digest]
    roots: list[Digest]


class Writer:
    """Writes to a file while hashing every byte (the bundle's closing checksum)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.hasher = blake3.blake3()
        #: Bytes written so far (where the next write lands).
        self.offset = 0

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self.handle.write(data)
        self.offset += len(data)


class Reader:
    """Reads exact byte counts, hashing as it goes; a short read means truncation.

    With ``copy``, every byte read is also written there, at the same offset.
    """

    def __init__(self, handle: IO[bytes], name: str, progress: Progress = no_progress,
                 total: int = 0, copy: IO[bytes] | None = None) -> None:
        self.handle = handle
        self.copy = copy
        self.name = name
        self.hasher = blake3.blake3()
        self.offset = 0
        self._progress = progress
        self._total = total
        self._reported = 0

    def take(self, size: int, what: str, hashed: bool = True) -> bytes:
        """Exactly ``size`` bytes; sizes are bounded by the caller before this allocates."""
        data = self.handle.read(size)
        if len(data) != size:
            raise BundleError(self.name, f"the file is truncated: it ends at byte "
                              f"{self.offset + len(data)} while reading {what}")
        if hashed:
            self.hasher.update(data)
        if self.copy is not None:
            self.copy.write(data)
        self.offset += size
        if self.offset - self._reported >= 1 << 20:
            self._reported = self.offset
            self._progress(self.offset, self._total)
        return data


def write_head(writer: Writer, refs: Mapping[str, Digest], roots: Sequence[Digest]) -> None:
    """The magic, format and manifest that open every bundle (and pack)."""
    manifest = orjson.dumps({"format": BUNDLE_FORMAT, "pinrun": __version__,
                             "refs": {name: d.hex for name, d in sorted(refs.items())},
                             "roots": [d.hex for d in roots]}, option=orjson.OPT_SORT_KEYS)
    writer.write(MAGIC + bytes([BUNDLE_FORMAT]) + U32.pack(len(manifest)) + manifest)


def write_end(writer: Writer, count: int) -> None:
    """The end of the records, their count, and the checksum of every byte before it."""
    writer.write(END_TAG + U64.pack(count))
    writer.handle.write(writer.hasher.digest())


def read_manifest(reader: Reader) -> Manifest:
    """The magic, format and manifest at the start of a bundle, checked."""
    head = reader.take(len(MAGIC) + 1, "the header")
    if head[: len(MAGIC)] != MAGIC:
        raise BundleError(reader.name, "it is not a pinrun bundle (wrong magic bytes)")
    if head[-1] != BUNDLE_FORMAT:
        raise BundleError(reader.name, f"bundle format {head[-1]} is not supported "
                          f"(this pinrun reads format {BUNDLE_FORMAT})")
    (size,) = U32.unpack(reader.take(4, "the manifest size"))
    if size > _MAX_MANIFEST:
        raise BundleError(reader.name, f"its manifest claims {size} bytes, which is implausible")
    text = reader.take(size, "the manifest")  # outside the try: its own errors are clear
    try:
        manifest = orjson.loads(text)
        refs = {validate_ref_name(k): Digest.from_hex(v) for k, v in manifest["refs"].items()}
        roots = [Digest.from_hex(v) for v in manifest["roots"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, PinrunError) as exc:
        raise BundleError(reader.name, f"its manifest is malformed ({exc})") from None
    return Manifest(refs, roots)


def user_file_mode() -> int:
    """The mode a new file of this user gets (0o666 less the umask), for bundles."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
