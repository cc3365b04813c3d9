"""Digests: the names of stored objects.

A digest is the BLAKE3-256 hash of an object's kind tag followed by its
canonical, uncompressed bytes. Putting the kind in the hash keeps a blob and a
value with the same bytes apart, and compression never changes a digest
because it is applied after hashing.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Final

import blake3

from pinrun.errors import InvalidDigestError

__all__ = ["DIGEST_SIZE", "MIN_PREFIX", "TREE_KIND", "VALUE_KIND", "Digest", "Kind",
           "checked_digest", "compute_digest"]

#: Bytes in a digest (BLAKE3-256).
DIGEST_SIZE: Final = 32
#: The fewest hex characters a digest prefix may have (as in git).
MIN_PREFIX: Final = 6
# Above this size BLAKE3's own threads pay for themselves.
_PARALLEL_HASH_THRESHOLD: Final = 1 << 20
#: Payloads shorter than this are hashed joined to their kind's tag in one call (a copy
#: of a few bytes costs less than a second call); longer ones in two, without a copy.
_JOINED_BELOW: Final = 4096
_HEX_DIGITS: Final = frozenset("0123456789abcdef")


class Kind(enum.Enum):
    """What an object is. The value is the kind tag hashed before the bytes."""

    #: The bytes hashed before the content: the kind name and a NUL.
    tag: bytes
    #: The one-byte number that stands for this kind in a record header.
    code: int

    BLOB = "blob"
    VALUE = "value"
    TREE = "tree"
    CODE = "code"
    STEP = "step"
    FLOW = "flow"
    ENV = "env"
    RUN = "run"

    def __init__(self, name: str) -> None:
        # Plain attributes, not properties: they are read for every object hashed.
        self.tag = name.encode("ascii") + b"\0"
        self.code = len(type(self).__members__) + 1  # 1 for the first member, and so on

    @classmethod
    def from_code(cls, code: int) -> Kind:
        """The kind a header byte stands for; ``KeyError`` when unknown."""
        return _KINDS_BY_CODE[code]


_KINDS_BY_CODE: Final = {kind.code: kind for kind in Kind}
#: ``Kind.VALUE`` and ``Kind.TREE`` as module constants, for the paths that name them for
#: every object (a tree's values, a page): on Python 3.11 each read of an Enum member
#: through its class goes through ``EnumType``'s attribute hook (~950 instructions).
VALUE_KIND: Final = Kind.VALUE
TREE_KIND: Final = Kind.TREE


@functools.total_ordering
class Digest:
    """The immutable name of a stored object: 32 bytes shown as lowercase hex."""

    # The bytes are a slot read as ``digest.raw`` (a plain attribute, not a property: a
    # recorded run reads it about a hundred times); __setattr__ keeps it immutable.
    __slots__ = ("raw",)
    #: The 32 digest bytes.
    raw: bytes

    def __init__(self, raw: bytes) -> None:
        if type(raw) is not bytes or len(raw) != DIGEST_SIZE:
            raise InvalidDigestError(repr(raw)[:80], f"a digest is exactly {DIGEST_SIZE} bytes")
        object.__setattr__(self, "raw", raw)

    @classmethod
    def from_hex(cls, text: str) -> Digest:
        """Parse a full 64-character hex digest."""
        cleaned = text.strip().lower()
        if len(cleaned) != 2 * DIGEST_SIZE or not set(cleaned) <= _HEX_DIGITS:
            raise InvalidDigestError(text, f"a full digest is {2 * DIGEST_SIZE} hex characters")
        return cls(bytes.fromhex(cleaned))

    @property
    def hex(self) -> str:
        """The digest as 64 lowercase hex characters."""
        return self.raw.hex()

    @property
    def short(self) -> str:
        """A 12-character prefix for tables and messages."""
        return self.raw[:6].hex()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Digest is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Digest is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digest) and other.raw == self.raw

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Digest):
            return NotImplemented
        return self.raw < other.raw


    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"Digest('{self.hex}')"

    def __str__(self) -> str:
        return self.hex

    def __reduce__(self) -> tuple[type[Digest], tuple[bytes]]:
        return (Digest, (self.raw,))


def compute_digest(kind: Kind, payload: bytes | memoryview) -> Digest:
    """The digest of ``payload`` stored as ``kind``."""
    if _small is not None and type(payload) is bytes:
        made = _small(Digest, kind.tag, payload)  # its tag and it in one BLAKE3 chunk
        if made is not None:
            return made
    if len(payload) >= _PARALLEL_HASH_THRESHOLD:
        hasher = blake3.blake3(kind.tag, max_threads=blake3.blake3.AUTO)
        hasher.update(payload)
        raw = hasher.digest()
    else:
        try:
            hasher = _take_hasher()
        except IndexError:
            hasher = blake3.blake3()
        if len(payload) < _JOINED_BELOW:
            hasher.update(kind.tag + payload)  # one call: cheaper for small ones
        else:  # (a large page: two calls, not a copy of it)
            hasher.update(kind.tag)
            hasher.update(payload)
        raw = hasher.digest()
        hasher.reset()
        _give_back(hasher)
    if _made is not None:
        return _made(Digest, raw)
    return _checked_digest(raw)  # 32 bytes from BLAKE3: no need to validate them again


# Making a hasher (``blake3.blake3()``) costs more than hashing a small payload with one:
# ~600 of the ~1,100 ns a 100-byte object took, and a recorded run hashes ~20 such
# objects. Hashers are reused, from a free list: ``list.pop`` and ``list.append`` are
# atomic, so each hasher is in one caller's hands at a time (another thread, or a nested
# call from a finalizer or a signal handler, takes another one, or makes one), and one
# goes back only once reset. The list holds at most as many as ever hashed at once.
_FREE_HASHERS: list[blake3.blake3] = []
_take_hasher = _FREE_HASHERS.pop
_give_back = _FREE_HASHERS.append


def _checked_digest(raw: bytes) -> Digest:
    digest = _new_digest(Digest)
    _set_raw(digest, "raw", raw)
    return digest


_new_digest = object.__new__
_set_raw = object.__setattr__
_made: Callable[[type[Digest], bytes], Digest] | None
_small: Callable[[type[Digest], bytes, bytes], Digest | None] | None
try:
    # new_digest: the same two steps in one C call (~2,500 instructions less, for each
    # of the ~20 objects a recorded run hashes); 32 bytes from BLAKE3 need no validating
    # either. small_digest: a kind's tag and a payload that fit in one BLAKE3 chunk (1 KiB:
    # most of the objects a run stores) hashed in C, the digest made there too: the
    # package's binding, and the hasher taken and given back, cost more than hashing them.
    from pinrun.artifacts._speedups import new_digest as _made
    from pinrun.artifacts._speedups import small_digest as _small
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _made = _small = None


def _small_agrees(small: Callable[[type[Digest], bytes, bytes], Digest | None]) -> bool:
    """Whether the C BLAKE3 gives the package's digests on inputs that end at, inside and
    across its 64-byte blocks, up to a full chunk: checked once at import, because a
    wrong digest (a compiler's or a platform's fault) would be a wrong content address."""
    pattern = bytes(range(7, 256)) * 5
    for size in (0, 1, 57, 58, 59, 121, 122, 500, 1017, 1018):
        payload = pattern[size % 7:size % 7 + size]
        made = small(Digest, b"value\0", payload)
        if made is not None and made.raw != blake3.blake3(b"value\0" + payload).digest():
            return False
    return True


if _small is not None and not _small_agrees(_small):  # pragma: no cover - a broken build
    _small = None

#: The digest of ``raw``, exactly 32 ``bytes`` the caller has checked already: what
#: ``Digest(raw)`` gives, without checking them again (a loaded run record reads ~25).
checked_digest: Callable[[bytes], Digest] = (
    _checked_digest if _made is None else functools.partial(_made, Digest))


def validate_prefix(text: str) -> str:
    """Normalise a hex prefix typed by a user, or raise ``InvalidDigestError``."""
    cleaned = text.strip().lower()
    if not cleaned or not set(cleaned) <= _HEX_DIGITS:
        raise InvalidDigestError(text, "a digest is written in hexadecimal (0-9, a-f)")
    if len(cleaned) < MIN_PREFIX:
        raise InvalidDigestError(text, f"give at least {MIN_PREFIX} characters")
    if len(cleaned) > 2 * DIGEST_SIZE:
        raise InvalidDigestError(text, f"a digest has only {2 * DIGEST_SIZE} characters")
    return cleaned
