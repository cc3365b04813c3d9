"""still_encodes: one walk of a value against a canonical encoding says yes only when
``reads_back(value) and encode(value) == encoding`` (the check it stands in for)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import _speedups, codec

_TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(
    ['"', "\\", "\n", "\x01", "\x7f", "\u2028", "$", "\ud800", "é"]), max_size=6)
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-9, 9)
            | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
                [0.0, -0.0, 1.0, 1e16, 1e-7, 0.1, 2.5]) | _TEXT)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    _TEXT, inner, max_size=4), max_leaves=12)


def _reference(value: Any, raw: bytes) -> bool:
    if not codec.reads_back(value):
        return False
    try:
        return codec.encode(value) == raw
    except Exception:
        return False


def _mutations(value: Any) -> list[Any]:
    """Values near ``value``: the ones a changed state holds."""
    out: list[Any] = [[value], {"k": value}]
    if type(value) is dict and value:
        key = next(iter(value))
        out += [{k: v for k, v in value.items() if k != key}, {**value, key: [value[key]]},
                dict(reversed(list(value.items())))]
    if type(value) is list and value:
        out += [value[:-1], [*value, None], list(reversed(value))]
    if type(value) is float and math.isfinite(value):
        out += [int(value) if abs(value) < 2**60 else 0, math.nextafter(value, math.inf)]
    if type(value) is int and not isinstance(value, bool):
        out += [float(value) if abs(value) < 2**53 else 0.5, value + 1, str(value)]
    return out


@settings(max_examples=600, deadline=None)
@given(_VALUES, _VALUES)
def test_still_encodes_never_says_yes_where_the_check_says_no(value: Any, other: Any) -> None:
    """Against its own encoding, a changed one, another value's: yes only if the reference
    says yes, and yes whenever the reference does for values it can tell."""
    try:
        raw = codec.encode(value)
    except Exception:
        return
    for candidate in [value, other, *_mutations(value)]:
        said = _speedups.still_encodes(candidate, raw)
        if said:
            assert _reference(candidate, raw), (candidate, raw)
        assert codec.still_encodes(candidate, raw) == _reference(candidate, raw)
    assert _speedups.still_encodes(value, raw) or not _plainly_told(value) or \
        not _reference(value, raw)


def _plainly_told(value: Any) -> bool:
    """Values the walk tells without help: no string JSON escapes, ints within 64 bits,
    finite floats."""
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is str:
        return not any(c in value for c in '"\\') and all(ord(c) >= 0x20 for c in value)
    if type(value) is int:
        return -(2**63) <= value < 2**63
    if type(value) is list:
        return all(_plainly_told(item) for item in value)
    if type(value) is dict:
        return all(_plainly_told(k) and _plainly_told(v) for k, v in value.items())
    return True


@pytest.mark.parametrize(("value", "raw", "expected"), [
    (1.0, b"1", False), (1, b"1.0", False), (-0.0, b"0.0", False), (-0.0, b"-0.0", True),
    (1e16, b"1e+16", True), (True, b"1", False), (1, b"true", False), ("a", b'"a"', True),
    ({"b": 1, "a": 2}, b'{"a":2,"b":1}', False), ({"a": 2, "b": 1}, b'{"a":2,"b":1}', True),
    ({"$a": 1}, b'{"$a":1}', False), ([1, 2], b"[1,2]", True), ([1, 2], b"[1,2]x", False),
    ([1, 2], b"[1,2", False), ("a\"b", b'"a\\"b"', False), (2**63, b"9223372036854775808", False),
    (float("nan"), b"null", False), ((1,), b"[1]", False), ({"a": 1}, bytearray(b'{"a":1}'),
                                                            False),
    # Ints are read off the bytes: leading zeros, signs, digits past a long long.
    (0, b"0", True), (0, b"00", False), (0, b"-0", False), (7, b"07", False), (-7, b"-7", True),
    (-7, b"7", False), (7, b"-7", False), (7, b"+7", False), (12, b"1", False), (1, b"12", False),
    (-(2**63), b"-9223372036854775808", True), (2**63 - 1, b"9223372036854775807", True),
    (1, b"00000000000000000001", False), (0, b"0" * 25, False), (1, b"1.0e0", False),
    ([12, 3], b"[1,23]", False), ({"a": 10}, b'{"a":1}', False),
    # Texts: compared byte for byte with no byte JSON escapes, short and long.
    ("ab", b'"ab"', True), ("ab", b'"ac"', False), ("a", b'"ab"', False), ("", b'""', True),
    ("x" * 100, b'"' + b"x" * 100 + b'"', True), ("x" * 100, b'"' + b"x" * 99 + b'y"', False),
    ("x" * 99 + '"', b'"' + b"x" * 99 + b'\""', False), ("\u00e9", '"\u00e9"'.encode(), True),
    (["a", "b"], b'["a","b"]', True), (['a","b'], b'["a","b"]', False),
    ({"a": 'x","b":"y'}, b'{"a":"x","b":"y"}', False),
    # Keys: in order by their bytes, none a prefix out of place.
    ({"a": 1, "ab": 2}, b'{"a":1,"ab":2}', True), ({"ab": 1, "a": 2}, b'{"ab":1,"a":2}', False),
    ({"a": 1, "\u00e9": 2}, '{"a":1,"\u00e9":2}'.encode(), True)])
def test_still_encodes_answers_the_cases_it_must(value: Any, raw: Any, expected: bool) -> None:
    """Floats against ints, -0.0, key order, tagged keys, trailing bytes, escapes, big ints."""
    assert _speedups.still_encodes(value, raw) is expected


def test_all_still_encode_checks_every_value_against_its_own_encoding() -> None:
    """Every key's value against that key's encoding; a missing or changed one is False."""
    values = {f"k{i}": {"id": i, "tags": ["a", i / 2]} for i in range(100)}
    encodings = {key: codec.encode(value) for key, value in values.items()}
    assert _speedups.all_still_encode(values, encodings)
    values["k7"]["id"] = -1
    assert not _speedups.all_still_encode(values, encodings)
    assert not _speedups.all_still_encode({"x": 1}, {})
    assert not codec.read_back_all(values, encodings)
    values["k7"]["id"] = 7
    assert codec.read_back_all(values, encodings)


def test_all_still_encode_reads_maps_in_any_order_alike() -> None:
    """The encodings read side by side when in the values' order, looked up otherwise."""
    values = {f"k{i}": [i, str(i)] for i in range(200)}
    encodings = {key: codec.encode(value) for key, value in values.items()}
    reordered = dict(reversed(list(encodings.items())))
    shifted = dict([*list(encodings.items())[1:], next(iter(encodings.items()))])
    for other in (encodings, reordered, shifted):
        assert _speedups.all_still_encode(values, other)
        assert not _speedups.all_still_encode(values, {**other, "k150": b"[150]"})


def test_all_still_encode_survives_a_key_that_runs_code_when_looked_up() -> None:
    """Encodings in another order are looked up: a key of theirs that is not an exact str
    (whose __eq__ could change the values mid-walk) makes the walk unsure (False), never a
    crash or a yes for a value it did not check."""

    class Sly(str):
        def __eq__(self, other: object) -> bool:
            values["k0"] = ["changed"]
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    values: dict[str, Any] = {f"k{i}": [i] for i in range(50)}
    encodings: dict[str, bytes] = {key: codec.encode(value) for key, value in
                                   reversed(list(values.items()))}
    assert _speedups.all_still_encode(values, encodings)
    encodings[Sly("k49")] = encodings.pop("k49")
    assert not _speedups.all_still_encode(values, encodings)
    assert values["k0"] == [0]  # nothing ran
