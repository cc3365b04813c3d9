"""numpy's global random generator's state, read from its memory: what the kept-code
check compares at every pinned replay in a process that imported numpy.

``RandomState.get_state()`` copies the Mersenne Twister's 624 words into a new array
and a tuple (~48 us). The same state lies in two places this reads directly (~3 us):
the bit generator's state struct, inside the ``MT19937`` object at the address numpy
gives for it (``ctypes.state_address``: the words, then the position), and the
``RandomState`` object's own memory, which holds the Gaussian it may have cached (a
second ``standard_normal()`` uses it without touching the words). The read is used only
once proven on generators made for the purpose (:func:`_proven`): the words as
``state`` gives them, before and after draws, and the object's memory changing when
only the cached Gaussian does. Anything else, or any doubt, gives None: the caller
then uses ``get_state()``.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["raw_numpy_state"]

#: id() without its audit event (the world's audit hook would be called for each).
_address: Callable[[object], int] = id
try:
    from pinrun.world._speedups import address as _compiled_address
except ImportError:  # pragma: no cover - no compiler
    pass
else:
    _address = _compiled_address

#: Whether the read is proven for this numpy (empty: not tried yet), and where the words
#: and position lie in the bit generator object (offset, size).
_PROOF: list[tuple[bool, int, int]] = []


def raw_numpy_state(generator: Any) -> tuple[object, ...] | None:
    """(the bit generator, its state words and position, the generator's own memory) of
    numpy's legacy ``RandomState`` ``generator`` over an ``MT19937``, comparable with
    ``==`` (the bit generator held, so that no id is another's); None where this read is
    not proven (then ``get_state()`` decides)."""
    mtrand = sys.modules.get("numpy.random.mtrand")
    random_state = getattr(mtrand, "RandomState", None)
    if random_state is None or type(generator) is not random_state:
        return None
    bit = getattr(generator, "_bit_generator", None)
    if type(bit).__name__ != "MT19937" or type(bit).__module__ != "numpy.random._mt19937":
        return None
    if not _PROOF:
        _PROOF.append(_proven(random_state, type(bit)))
    proven, offset, size = _PROOF[0]
    if not proven:
        return None
    return (bit, _words(bit, offset, size), _own_memory(generator))


def _words(bit: Any, offset: int, size: int) -> bytes:
    """The bit generator's state words and position: ``size`` bytes at ``offset`` in it
    (a numpy type, allocated at its basic size; the proof checked that they lie within)."""
    return ctypes.string_at(_address(bit) + offset, size)


def _own_memory(generator: Any) -> bytes:
    """The generator object's memory past its head (its cached Gaussian among it)."""
    return ctypes.string_at(_address(generator) + object.__basicsize__,
                            type(generator).__basicsize__ - object.__basicsize__)


def _proven(random_state: Any, mt19937: Any) -> tuple[bool, int, int]:
    """Whether the read gives what ``get_state()`` does on generators made here, and
    where the words and position lie in the bit generator (its offset and size)."""
    try:
        offset = size = 0
        for seed in (12345, 67890):
            probe = random_state(mt19937(seed))
            bit = probe._bit_generator
            # (Read once, through ctypes and id(): both raise audit events, the reads
            # after this go through pinrun's own unaudited copy of the object's memory.)
            offset = bit.ctypes.state_address - id(bit)
            for _ in range(2):
                state = bit.state["state"]
                expected = state["key"].astype("<u4").tobytes() + \
                    struct.pack("<i", int(state["pos"]))
                size = len(expected)
                if not 0 < offset <= type(bit).__basicsize__ - size or \
                        _words(bit, offset, size) != expected:
                    return False, 0, 0
                if _own_memory(probe) != _own_memory(probe):
                    return False, 0, 0  # something moves by itself: never kept
                probe.random_sample()
            # Only the cached Gaussian changes with the second draw: the object's memory must.
            probe.standard_normal()
            words, memory = _words(bit, offset, size), _own_memory(probe)
            probe.standard_normal()
            if _words(bit, offset, size) != words or _own_memory(probe) == memory:
                return False, 0, 0
        return True, offset, size
    except Exception:  # another numpy, another layout: get_state() it is
        return False, 0, 0
