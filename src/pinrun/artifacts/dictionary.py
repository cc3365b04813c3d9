"""Trained zstd dictionaries: better compression for the many small values of a store.

zstd compresses a 1 KiB JSON value poorly on its own (~1.5x): the value is
too short to learn from. A dictionary trained on a sample of the store's own
small values holds what they share (keys, common strings), and the same
values then compress ~2.8x, faster. A dictionary is stored as a ``blob``
object and every record compressed with it names it by digest, so records
stay readable after the store moves on to another dictionary, and bundles,
gc and fsck follow the reference like any other.

A store that has not trained one compresses its small records (256 bytes to
4 KiB: trees, run records) with pinrun's own :func:`format_dictionary`,
stored in the store like a trained one the first time a record uses it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import blake3
import zstandard

from pinrun.artifacts.digest import Digest, Kind, compute_digest

__all__ = [
    "DICTIONARY_MAX_PAYLOAD",
    "DICTIONARY_MIN_PAYLOAD",
    "FORMAT_MAX_PAYLOAD",
    "FORMAT_MIN_PAYLOAD",
    "TRAINING_SAMPLES",
    "Dictionary",
    "cached_dictionary",
    "dictionary_for",
    "format_dictionary",
    "train_dictionary",
]

#: Payloads this small or smaller are compressed with the dictionary (larger
#: ones have enough context of their own).
DICTIONARY_MAX_PAYLOAD: Final = 16 * 1024
#: Payloads smaller than this are not compressed at all.
DICTIONARY_MIN_PAYLOAD: Final = 64
#: The payloads the format dictionary compresses: from this size (below it, as without a
#: dictionary, zstd costs more instructions than the bytes it saves are worth)...
FORMAT_MIN_PAYLOAD: Final = 256
#: ... up to this size (larger payloads hold enough context of their own: level 3 alone).
FORMAT_MAX_PAYLOAD: Final = 4095
#: How many small payloads a dictionary is trained on (~60 ms of training).
TRAINING_SAMPLES: Final = 1000
_DICTIONARY_SIZE: Final = 64 * 1024
_ZSTD_LEVEL: Final = 3
# zstd reserves dictionary ids below 32768.
_FIRST_FREE_ID: Final = 1 << 15


class Dictionary:
    """A trained dictionary, named by the digest of the blob that stores it."""

    def __init__(self, digest: Digest, data: bytes, *,
                 min_payload: int = DICTIONARY_MIN_PAYLOAD,
                 max_payload: int = DICTIONARY_MAX_PAYLOAD,
                 tuning: Mapping[str, int] | None = None) -> None:
        self.digest = digest
        self.data = data
        #: The payload sizes (inclusive) writers compress with it.
        self.min_payload = min_payload
        self.max_payload = max_payload
        # zstd parameters set over the level's (ZstdCompressionParameters' names).
        self._tuning = dict(tuning or {})
        self._dict = zstandard.ZstdCompressionDict(data)
        self._local = threading.local()  # zstd contexts are not thread-safe

    def compressor(self, level: int = _ZSTD_LEVEL) -> zstandard.ZstdCompressor:
        """This thread's compressor for the dictionary at ``level`` (the objects module
        asks level 1 for payloads under 4 KiB: with the dictionary's matches and entropy
        tables at hand, level 3's match finder gains next to nothing on them)."""
        made: dict[int, zstandard.ZstdCompressor] | None = getattr(
            self._local, "compressors", None)
        if made is None:
            made = self._local.compressors = {}
        comp = made.get(level)
        if comp is None:
            # The record names the dictionary by digest: zstd's own 4-byte id is redundant.
            if self._tuning:
                comp = zstandard.ZstdCompressor(
                    dict_data=self._dict,
                    compression_params=zstandard.ZstdCompressionParameters.from_level(
                        level, write_dict_id=False, write_content_size=True,
                        **self._tuning))
            else:
                comp = zstandard.ZstdCompressor(level=level, dict_data=self._dict,
                                                write_dict_id=False, write_content_size=True)
            made[level] = comp
        return comp

    def decompressor(self) -> zstandard.ZstdDecompressor:
        """This thread's decompressor for the dictionary."""
        dec: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if dec is None:
            dec = zstandard.ZstdDecompressor(dict_data=self._dict)
            self._local.decompressor = dec
        return dec


# Owner-free on purpose: keyed by the dictionary's content digest; holds no user code.
_CACHE: dict[bytes, Dictionary] = {}
_CACHE_LOCK = threading.Lock()


def cached_dictionary(raw_digest: bytes) -> Dictionary | None:
    """The dictionary with these 32 digest bytes, if this process has loaded it."""
    return _CACHE.get(raw_digest)


def dictionary_for(digest: Digest, load: Callable[[Digest], bytes]) -> Dictionary:
    """The dictionary stored as ``digest``, loaded once per process through ``load``."""
    cached = _CACHE.get(digest.raw)
    if cached is not None:
        return cached
    data = load(digest)
    loaded = Dictionary(digest, data)
    with _CACHE_LOCK:
        return _CACHE.setdefault(digest.raw, loaded)


_FORMAT: list[Dictionary] = []
# How the format dictionary compresses (at level 1: it takes payloads under 4 KiB).
# force_max_window makes zstd copy the dictionary's tables into each frame's context
# instead of attaching them: its plain match loop then runs instead of the one that looks
# in two tables at every position (~30 instructions a byte against ~25), and a 1,024-entry
# hash table is cheap to copy. Measured on a recorded run's four records (291 to 2,748
# bytes): with these, 187k instructions a run instead of zstd alone's 241k, for 13 %
# fewer bytes; attached, 210k and 14 %. (A frame is a standard zstd frame either way.)
_FORMAT_TUNING: Final = {"force_max_window": 1, "hash_log": 10, "min_match": 6}


def format_dictionary() -> Dictionary:
    """pinrun's own dictionary, for stores that have not trained one (2 KiB, made once per
    process): it holds the keys of pinrun's formats (trees, run records) and zstd tables
    fitted to their hexadecimal digests, learnt from generated flows (see
    ``tests/format_dictionary.py``), nothing of any one project.

    On a recorded run's trees, timings and run record (291 to 2,748 bytes) it stores
    13 % fewer bytes than zstd alone, in 22 % fewer instructions, and they decompress in
    about half the instructions: each frame reuses the dictionary's entropy tables
    instead of building and describing its own. It compresses payloads of
    :data:`FORMAT_MIN_PAYLOAD` to :data:`FORMAT_MAX_PAYLOAD` bytes.
    """
    if _FORMAT:
        return _FORMAT[0]
    import base64

    from pinrun.artifacts._format_dictionary import DATA

    data = base64.b64decode(DATA)
    made = Dictionary(compute_digest(Kind.BLOB, data), data,
                      min_payload=FORMAT_MIN_PAYLOAD, max_payload=FORMAT_MAX_PAYLOAD,
                      tuning=_FORMAT_TUNING)
    with _CACHE_LOCK:
        if not _FORMAT:
            _FORMAT.append(made)
        # Readers find it here by digest (the same bytes as the blob stores keep of it).
        _CACHE.setdefault(made.digest.raw, made)
        return _FORMAT[0]


def train_dictionary(samples: Sequence[bytes]) -> Dictionary:
    """Train a dictionary on ``samples`` (small payloads); its blob is ``.data``.

    The dictionary id comes from the samples, so the same samples give the
    same bytes.
    """
    seed = blake3.blake3(b"".join(samples[:64])).digest()
    dict_id = _FIRST_FREE_ID + int.from_bytes(seed[:4], "little") % ((1 << 31) - _FIRST_FREE_ID)
    trained = zstandard.train_dictionary(_DICTIONARY_SIZE, list(samples), dict_id=dict_id,
                                         level=_ZSTD_LEVEL)
    data = trained.as_bytes()
    digest = compute_digest(Kind.BLOB, data)
    with _CACHE_LOCK:
        return _CACHE.setdefault(digest.raw, Dictionary(digest, data))
