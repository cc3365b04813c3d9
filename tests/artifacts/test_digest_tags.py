"""``_speedups.digest_of_tag``: a codec tag ``{"$digest": hex}`` read as a digest in C,
held to ``Digest.from_hex`` for what pinrun writes, and None for anything else."""

from __future__ import annotations

import pytest

from pinrun.artifacts import _speedups
from pinrun.artifacts.digest import Digest, Kind, compute_digest

#: Characters around the ranges a lowercase hex digit is taken from, and some others.
NOT_HEX = "/:`gAFGz \x00\x7f\xe9"


@pytest.mark.parametrize("payload", [b"", b"a", b"pinrun" * 100])
def test_a_tag_gives_the_digest_it_names(payload: bytes) -> None:
    digest = compute_digest(Kind.VALUE, payload)
    made = _speedups.digest_of_tag({"$digest": digest.hex}, Digest)
    assert made == digest
    assert made.raw == digest.raw


def test_every_hex_digit_at_every_place_reads_as_from_hex_does() -> None:
    for place in range(64):
        for digit in "0123456789abcdef":
            text = ("0" * place + digit).ljust(64, "f")
            assert _speedups.digest_of_tag({"$digest": text}, Digest) == Digest.from_hex(text)


def test_anything_else_at_any_place_is_no_tag() -> None:
    for place in range(64):
        for char in NOT_HEX:
            text = "a" * place + char + "b" * (63 - place)
            assert _speedups.digest_of_tag({"$digest": text}, Digest) is None, (place, char)


@pytest.mark.parametrize("value", [
    {"$digest": "a" * 63}, {"$digest": "a" * 65}, {"$digest": "\u0101" * 64},
    {"$digest": b"a" * 64}, {"$digest": "a" * 64, "other": 1}, {"digest": "a" * 64},
    ["$digest", "a" * 64], "a" * 64, None])
def test_other_shapes_are_no_tag(value: object) -> None:
    assert _speedups.digest_of_tag(value, Digest) is None
