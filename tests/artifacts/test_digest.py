"""Digests: the immutable 32-byte names of stored objects, and hex prefixes."""

from __future__ import annotations

import copy
import itertools
import pickle
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts.digest import (
    DIGEST_SIZE,
    MIN_PREFIX,
    Digest,
    Kind,
    compute_digest,
    validate_prefix,
)
from pinrun.errors import InputError, InvalidDigestError
from tests.helpers import race

RAW = bytes(range(32))
HEX = RAW.hex()

raw_digests: st.SearchStrategy[bytes] = st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE)


# ------------------------------------------------------------------ shape


def test_hex_raw_and_short() -> None:
    """A digest shows its 32 bytes as 64 lowercase hex characters and a 12-character short form."""
    digest = Digest(RAW)
    assert digest.raw == RAW
    assert digest.hex == HEX
    assert len(digest.hex) == 64
    assert digest.short == HEX[:12]
    assert str(digest) == HEX
    assert repr(digest) == f"Digest('{HEX}')"


def test_hex_is_lowercase() -> None:
    """The hex form is always lowercase."""
    digest = Digest(b"\xab" * 32)
    assert digest.hex == "ab" * 32
    assert digest.short == "ab" * 6


@pytest.mark.parametrize("raw", [b"", b"\x00" * 31, b"\x00" * 33, b"\x00" * 64])
def test_constructor_rejects_wrong_length(raw: bytes) -> None:
    """A digest is built only from exactly 32 bytes."""
    with pytest.raises(InvalidDigestError):
        Digest(raw)


@pytest.mark.parametrize("raw", [bytearray(32), memoryview(bytes(32)), "0" * 32])
def test_constructor_rejects_non_bytes(raw: Any) -> None:
    """A digest is built only from an immutable ``bytes`` object."""
    with pytest.raises(InvalidDigestError):
        Digest(raw)


def test_invalid_digest_error_is_an_input_error() -> None:
    """A bad digest is the user's input problem, reported as InputError."""
    with pytest.raises(InputError):
        Digest.from_hex("nope")


# ------------------------------------------------------------ immutability


def test_setting_an_attribute_raises() -> None:
    """A digest's bytes cannot be replaced after construction."""
    digest = Digest(RAW)
    with pytest.raises(AttributeError):
        digest._raw = b"\x00" * 32
    assert digest.raw == RAW


def test_adding_an_attribute_raises() -> None:
    """A digest accepts no new attributes."""
    digest = Digest(RAW)
    with pytest.raises(AttributeError):
        digest.extra = 1


def test_deleting_an_attribute_raises() -> None:
    """A digest's bytes cannot be deleted either: it stays usable forever."""
    digest = Digest(RAW)
    with pytest.raises(AttributeError):
        del digest.raw
    assert digest.raw == RAW


def test_properties_are_read_only() -> None:
    """The public properties cannot be assigned."""
    digest = Digest(RAW)
    for name in ("raw", "hex", "short"):
        with pytest.raises(AttributeError):
            setattr(digest, name, "x")


# ------------------------------------------------- equality, hash, ordering


def test_equal_bytes_give_equal_digests_and_hashes() -> None:
    """Two digests of the same bytes are equal and hash alike, so they work as dict keys."""
    first, second = Digest(RAW), Digest(bytes(RAW))
    assert first == second
    assert not first != second  # noqa: SIM202
    assert hash(first) == hash(second)
    assert {first: "x"}[second] == "x"
    assert len({first, second}) == 1


def test_different_bytes_give_unequal_digests() -> None:
    """Digests of different bytes are unequal."""
    assert Digest(RAW) != Digest(b"\x00" * 32)


@pytest.mark.parametrize("other", [RAW, HEX, None, 0])
def test_a_digest_never_equals_its_bytes_or_hex(other: object) -> None:
    """A digest equals only another digest, never its raw bytes or its hex text."""
    assert Digest(RAW) != other
    assert other != Digest(RAW)


@settings(max_examples=100, deadline=None)
@given(raw_digests, raw_digests)
def test_ordering_follows_the_raw_bytes(first_raw: bytes, second_raw: bytes) -> None:
    """Digests order exactly as their raw bytes (and so as their hex strings) do."""
    first, second = Digest(first_raw), Digest(second_raw)
    assert (first < second) == (first_raw < second_raw)
    assert (first > second) == (first_raw > second_raw)
    assert (first == second) == (first_raw == second_raw)
    assert sorted([first, second]) == sorted([second, first])
    assert [d.raw for d in sorted([first, second])] == sorted([first_raw, second_raw])
    assert (first.hex < second.hex) == (first_raw < second_raw)


def test_non_strict_comparisons_work() -> None:
    """``<=`` and ``>=`` are as available as ``<`` and ``>`` (a total order)."""
    low: Any = Digest(b"\x00" * 32)
    high: Any = Digest(b"\xff" * 32)
    assert low <= high
    assert low <= low  # noqa: PLR0124
    assert high >= low
    assert not high <= low


def test_comparing_with_a_non_digest_raises_type_error() -> None:
    """Ordering a digest against something else is a TypeError, as for built-in types."""
    digest: Any = Digest(RAW)
    with pytest.raises(TypeError):
        _ = digest < HEX
    with pytest.raises(TypeError):
        _ = digest > RAW


# ----------------------------------------------------------------- from_hex


@settings(max_examples=100, deadline=None)
@given(raw_digests)
def test_from_hex_inverts_hex(raw: bytes) -> None:
    """Parsing a digest's hex form gives back an equal digest."""
    digest = Digest(raw)
    parsed = Digest.from_hex(digest.hex)
    assert parsed == digest
    assert type(parsed) is Digest


def test_from_hex_accepts_uppercase_and_surrounding_whitespace() -> None:
    """Hex is parsed case-insensitively, ignoring surrounding whitespace."""
    assert Digest.from_hex(HEX.upper()) == Digest(RAW)
    assert Digest.from_hex(f"  {HEX}\n") == Digest(RAW)


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEX[:6],
        HEX[:63],
        HEX + "0",
        HEX + HEX,
        "g" + HEX[1:],
        "x" * 64,
        HEX[:62] + " 0",
        "0x" + HEX[2:],
        "-" + HEX[1:],
        "\u0660" + HEX[1:],  # ARABIC-INDIC DIGIT ZERO: a digit, but not hex
    ],
)
def test_from_hex_rejects_bad_text(text: str) -> None:
    """Only exactly 64 hex characters parse; anything else raises InvalidDigestError."""
    with pytest.raises(InvalidDigestError):
        Digest.from_hex(text)


# ----------------------------------------------------------------- pickling


def test_pickle_round_trip() -> None:
    """A digest survives pickling under every protocol, equal and still immutable."""
    digest = Digest(RAW)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(digest, protocol=protocol))
        assert type(restored) is Digest
        assert restored == digest
        assert hash(restored) == hash(digest)
        with pytest.raises(AttributeError):
            restored._raw = b"\x00" * 32


def test_copy_and_deepcopy_give_equal_digests() -> None:
    """copy and deepcopy give equal digests."""
    digest = Digest(RAW)
    assert copy.copy(digest) == digest
    assert copy.deepcopy(digest) == digest


# ----------------------------------------------------------- compute_digest


def test_compute_digest_is_blake3_of_kind_tag_and_payload() -> None:
    """compute_digest(VALUE, p) is BLAKE3-256 of b"value\\0" followed by p."""
    payload = b'{"a":1}'
    expected = blake3.blake3(b"value\0" + payload).digest()
    assert compute_digest(Kind.VALUE, payload).raw == expected


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_hashes_its_name_and_a_nul(kind: Kind) -> None:
    """Each kind's tag is its lowercase name and a NUL byte, hashed before the payload."""
    payload = b"some payload"
    assert kind.tag == kind.value.encode("ascii") + b"\0"
    expected = blake3.blake3(kind.name.lower().encode("ascii") + b"\0" + payload).digest()
    assert compute_digest(kind, payload) == Digest(expected)


def test_kind_tags_are_the_documented_names() -> None:
    """The kind tags are b"blob\\0", b"value\\0", ... exactly."""
    assert Kind.BLOB.tag == b"blob\0"
    assert Kind.VALUE.tag == b"value\0"
    assert {kind.tag for kind in Kind} == {
        b"blob\0", b"value\0", b"tree\0", b"code\0", b"step\0", b"flow\0", b"env\0", b"run\0"
    }


def test_the_digest_depends_on_the_kind() -> None:
    """The same payload stored as a blob and as a value gets different digests."""
    payload = b"same bytes"
    assert compute_digest(Kind.BLOB, payload) != compute_digest(Kind.VALUE, payload)
    digests = {compute_digest(kind, payload) for kind in Kind}
    assert len(digests) == len(Kind)


def test_kind_tags_cannot_be_confused_by_shifting_bytes() -> None:
    """The NUL after the tag keeps kind and payload apart (b"run" + b"\\0x" vs b"ru" ...)."""
    for first, second in itertools.combinations(Kind, 2):
        assert compute_digest(first, b"") != compute_digest(second, b"")


def test_compute_digest_of_empty_payload() -> None:
    """An empty payload still hashes the kind tag."""
    assert compute_digest(Kind.BLOB, b"").raw == blake3.blake3(b"blob\0").digest()


def test_compute_digest_accepts_memoryview() -> None:
    """A memoryview payload hashes like the bytes it views."""
    payload = b"x" * 1000
    assert compute_digest(Kind.BLOB, memoryview(payload)) == compute_digest(Kind.BLOB, payload)


@pytest.mark.parametrize("size", [(1 << 20) - 1, 1 << 20, (1 << 20) + 12345])
def test_large_payloads_hash_the_same_with_threads(size: int) -> None:
    """Payloads big enough for multi-threaded hashing give the single-threaded digest."""
    payload = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    expected = blake3.blake3(b"blob\0" + payload).digest()
    assert compute_digest(Kind.BLOB, payload).raw == expected
    assert compute_digest(Kind.BLOB, memoryview(payload)).raw == expected


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(list(Kind)))
def test_compute_digest_matches_reference_blake3(payload: bytes, kind: Kind) -> None:
    """For any payload and kind, the digest is blake3(kind tag + payload)."""
    assert compute_digest(kind, payload).raw == blake3.blake3(kind.tag + payload).digest()


def test_kind_codes_round_trip() -> None:
    """Every kind has a distinct one-byte code that maps back to it."""
    codes = [kind.code for kind in Kind]
    assert len(set(codes)) == len(codes)
    assert all(0 < code < 256 for code in codes)
    for kind in Kind:
        assert Kind.from_code(kind.code) is kind
    with pytest.raises(KeyError):
        Kind.from_code(0)


# ---------------------------------------------------------- validate_prefix


@pytest.mark.parametrize("length", [MIN_PREFIX, 7, 12, 63, 64])
def test_validate_prefix_accepts_six_to_sixty_four_hex_characters(length: int) -> None:
    """Prefixes of 6 to 64 hex characters are accepted unchanged."""
    assert validate_prefix(HEX[:length]) == HEX[:length]


def test_validate_prefix_is_case_insensitive() -> None:
    """Uppercase prefixes are accepted and normalised to lowercase."""
    assert validate_prefix("ABCDEF") == "abcdef"
    assert validate_prefix("AbCdEf012") == "abcdef012"


def test_validate_prefix_strips_whitespace() -> None:
    """Whitespace around a typed prefix is ignored."""
    assert validate_prefix("  abcdef12\n") == "abcdef12"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a",
        "abcde",
        "abcdeg",
        "xyz123",
        "abc def",
        "0xabcdef",
        "abcdef-",
        HEX + "0",
        "\u0660" * 6,
    ],
)
def test_validate_prefix_rejects_short_non_hex_or_too_long(text: str) -> None:
    """Prefixes shorter than 6, not hexadecimal, or longer than 64 raise InvalidDigestError."""
    with pytest.raises(InvalidDigestError):
        validate_prefix(text)


def test_validate_prefix_error_keeps_the_text() -> None:
    """The error names the text the user typed."""
    with pytest.raises(InvalidDigestError) as info:
        validate_prefix("abc")
    assert info.value.text == "abc"
    assert "abc" in str(info.value)


def test_a_checked_digest_is_the_digest_of_its_bytes() -> None:
    """checked_digest (the shape check's maker: no second check) gives what Digest gives."""
    from pinrun.artifacts.digest import checked_digest

    raw = bytes(range(32))
    made = checked_digest(raw)
    assert type(made) is Digest
    assert made == Digest(raw)
    assert hash(made) == hash(Digest(raw))
    assert made.raw is raw
    with pytest.raises(AttributeError):
        made.raw = bytes(32)


def test_small_payloads_reuse_hashers(monkeypatch: Any) -> None:
    """compute_digest makes no hasher while one is free (making one costs more than a small
    hash), and every digest is still BLAKE3 of the kind's tag and the payload."""
    from pinrun.artifacts import digest as digest_module

    made: list[object] = []
    real = blake3.blake3

    class Counting:
        @staticmethod
        def blake3(*args: Any, **kwargs: Any) -> Any:
            made.append(args)
            return real(*args, **kwargs)

    monkeypatch.setattr(digest_module, "_small", None)  # the package's path (no compiler)
    compute_digest(Kind.VALUE, b"warm")  # at least one hasher is free
    monkeypatch.setattr(digest_module, "blake3", Counting)
    for number in range(50):
        payload = b"payload %d" % number * number
        for kind in (Kind.VALUE, Kind.TREE, Kind.RUN):
            assert compute_digest(kind, payload).raw == real(kind.tag + payload).digest()
    assert made == []


@pytest.mark.parametrize("compiled", [True, False])
def test_hashers_are_not_shared_between_threads(compiled: bool, monkeypatch: Any) -> None:
    """Threads hashing at once each get the digest of their own payload (no hasher is in
    two callers' hands), with the C hash of one chunk and without it."""
    from pinrun.artifacts import digest as digest_module

    if not compiled:
        monkeypatch.setattr(digest_module, "_small", None)
    errors: list[bytes] = []

    def work(seed: int) -> None:
        for number in range(2000):
            payload = b"%d:%d" % (seed, number) * (number % 7 + 1)
            if compute_digest(Kind.VALUE, payload).raw != \
                    blake3.blake3(Kind.VALUE.tag + payload).digest():
                errors.append(payload)

    race(work, 4)
    assert errors == []


def test_one_chunk_in_c_is_blake3_at_every_length() -> None:
    """The C hash of a kind's tag and a payload that fit in one BLAKE3 chunk (1,024 bytes)
    is the blake3 package's, at every length (each block boundary, the chunk's end, the
    empty payload), for every kind's tag and odd tags; past one chunk it answers None
    (compute_digest then hashes with the package)."""
    speedups = pytest.importorskip("pinrun.artifacts._speedups")
    noise = bytes((n * 7919 + 13) % 256 for n in range(1100))
    tags = [kind.tag for kind in Kind] + [b"", b"\xff" * 63, b"t" * 1024]
    for tag in tags:
        for size in range(1100):
            payload = noise[:size]
            made = speedups.small_digest(Digest, tag, payload)
            if len(tag) + size > 1024:
                assert made is None
                continue
            assert type(made) is Digest
            assert made.raw == blake3.blake3(tag + payload).digest(), (tag, size)


@pytest.mark.parametrize("compiled", [True, False])
def test_compute_digest_is_the_same_with_and_without_the_c_hash(compiled: bool,
                                                                monkeypatch: Any) -> None:
    """compute_digest gives blake3(tag + payload) on both sides of one chunk, with the C hash
    and without it (bytes and memoryview alike)."""
    from pinrun.artifacts import digest as digest_module

    if not compiled:
        monkeypatch.setattr(digest_module, "_small", None)
    for size in (0, 1, 63, 64, 65, 1017, 1018, 1019, 1024, 1025, 5000):
        payload = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
        expected = blake3.blake3(Kind.VALUE.tag + payload).digest()
        assert compute_digest(Kind.VALUE, payload).raw == expected
        assert compute_digest(Kind.VALUE, memoryview(payload)).raw == expected


def test_the_c_blake3_is_checked_against_the_package_at_import() -> None:
    """A build whose C BLAKE3 disagrees with the package (a compiler's or a platform's
    fault) is not used: its check at import fails, and the package hashes everything."""
    from pinrun.artifacts import digest as digest_module

    if digest_module._small is None:
        # (test_compiled_plain_check_is_built_where_a_compiler_is fails if a compiler
        # is here and the module is not built: CI always runs this test.)
        pytest.skip("no C compiler on this machine, so pinrun's C module is not built")
    assert digest_module._small_agrees(digest_module._small)

    def off_by_one_block(kind: type[Digest], tag: bytes, payload: bytes) -> Digest | None:
        made = digest_module._small(kind, tag, payload)  # type: ignore[misc]
        return compute_digest(Kind.BLOB, payload) if len(payload) > 500 else made

    assert not digest_module._small_agrees(off_by_one_block)
