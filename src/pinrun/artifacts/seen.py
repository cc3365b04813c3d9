"""A large plain value's objects, seen beside its canonical encoding: is it still that value?

The engine hands a step a large state value as it is (no decoded copy) once the
value is checked to still encode to its recorded encoding, and checks it again
after the step (a change in place is a hazard). Each check walked the whole
value against the bytes, or encoded it again: about what encoding it costs.

A :class:`Seen` keeps the containers the value was made of when its encoding
was made (:func:`encode_seen`) or checked (:func:`seen_encoding`), each with
what it held then. :meth:`Seen.same` then tells, by identity alone, that the
value is still made of them: each dict unchanged (CPython 3.11 to 3.13 give a
dict a version tag that changes with every change to it; elsewhere, and for an
object's own ``__dict__``, its very keys and values in the same order), each
list holding the very same items. The scalars they hold (a plain value holds
only exact ``str``, ``int``, ``float``, ``bool`` and ``None``) cannot change,
and nothing seen can be freed and its address taken by another object (the
Seen holds each container and each member it compares; an unchanged container
holds the rest): a value that is the same still encodes to the Seen's
encoding, byte for byte. Anything else, a change or an equal value of other
objects, answers False, and the caller checks the slow way.

A :class:`Wide` is the same record for a step's wide outputs, many state keys of
small values (:func:`encode_wide`): the outputs dict, the containers inside its
values, and the dict of the values' encodings, all cut from one encoding of the
whole. A step that reads the whole ``state`` is handed it as it is once every
value is checked to still encode to its encoding
(:func:`~pinrun.artifacts.codec.read_back_all`); a value that is the very object
a Wide's outputs held under its key, beside the very encoding cut for it, while
everything the Wide saw is unchanged, is not walked against its bytes.

The walks are in C (``_seen.c`` and ``_speedups.c``); without a compiler there
are no Seens nor Wides, and every check goes the slow way, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol

import orjson

from pinrun.artifacts import codec

__all__ = ["NO_SEEN", "SEEN_FROM", "WIDE_FROM", "Seen", "Wide", "encode_seen", "encode_wide",
           "seen_encoding"]

#: Encodings shorter than this get no Seen (the engine decodes such a value for a step
#: that reads it: a few microseconds, and nothing to check afterwards).
SEEN_FROM: Final = 4096
#: Outputs of fewer keys get no Wide (they are encoded value by value, or by
#: :func:`~pinrun.artifacts.codec.encode_many`, which applies from the same count).
WIDE_FROM: Final = 64


class Seen(Protocol):
    """The objects a plain value was made of when its encoding was made or checked."""

    @property
    def encoding(self) -> bytes:
        """The canonical encoding the value had then."""

    def same(self, value: Any) -> bool:
        """True when ``value`` is made of the very objects seen, in the same places: then
        it still encodes to :attr:`encoding`. False when it may not."""


class Wide(Protocol):
    """The objects a step's wide outputs were made of when their encodings were made."""

    def unchanged(self) -> bool:
        """True when the outputs dict, every container inside its values and the
        encodings dict hold what they held then."""


#: No Seens (an empty mapping, shared: most steps make none).
NO_SEEN: Final[Mapping[str, Seen]] = MappingProxyType({})

_encode_seen: Callable[..., tuple[bytes, Seen | None] | None] | None = None
_seen_encoding: Callable[[Any, bytes], Seen | None] | None = None
_encode_wide: Callable[..., tuple[dict[str, bytes], Wide] | None] | None = None
try:
    from pinrun.artifacts._speedups import encode_seen as _compiled_encode_seen
    from pinrun.artifacts._speedups import encode_wide as _compiled_encode_wide
    from pinrun.artifacts._speedups import seen_encoding as _compiled_seen_encoding
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    pass
else:
    _encode_seen, _seen_encoding = _compiled_encode_seen, _compiled_seen_encoding
    _encode_wide = _compiled_encode_wide


def encode_seen(value: Any) -> tuple[bytes, Seen | None] | None:
    """``(codec.encode(value), its Seen)`` of a dict or list that reads back as it is
    (:func:`~pinrun.artifacts.codec.reads_back`); the Seen is None when the encoding is
    shorter than :data:`SEEN_FROM`.

    The walk that sees the value and orjson's encoding of it run in one call, with
    no Python code between them, so both are of one and the same value. None when
    this does not apply (another value, one the codec writes in a tagged form, no C
    speedups): the caller encodes it with :func:`~pinrun.artifacts.codec.encode`.
    """
    if _encode_seen is None:
        return None
    # The walk says yes only when every dict's keys are in ascending order already (the
    # order orjson sorts them in, by their UTF-8 bytes), so orjson writes them in their
    # own order without sorting them: the same bytes, for less (a wide map's sort is a
    # quarter of its encoding).
    return _encode_seen(value, orjson.dumps, _IN_ORDER, SEEN_FROM, codec.COMPACT_BELOW)


#: orjson's options for a value whose dicts all have their keys in order: none.
_IN_ORDER: Final = 0


def seen_encoding(value: Any, raw: bytes) -> Seen | None:
    """The Seen of ``value`` when one walk in C finds that it
    :func:`~pinrun.artifacts.codec.still_encodes` to ``raw``; None when that walk is
    not sure (then :func:`~pinrun.artifacts.codec.encodes_again` tells)."""
    return _seen_encoding(value, raw) if _seen_encoding is not None else None



def encode_wide(values: dict[str, Any]) -> tuple[dict[str, bytes], Wide] | None:
    """``({key: codec.encode(value)}, its Wide)`` of a dict of at least
    :data:`WIDE_FROM` keys, each value one that reads back as it is
    (:func:`~pinrun.artifacts.codec.reads_back`, finite floats): the values are
    encoded at once, as :func:`~pinrun.artifacts.codec.encode_many` does (the same
    bytes), right after the walk in C that sees them, with no Python code between.

    None when this does not apply (fewer keys, another value, a key or string that
    starts with ``$``, no C speedups): the caller encodes them as before.
    """
    if _encode_wide is None:
        return None
    return _encode_wide(values, orjson.dumps, WIDE_FROM)
