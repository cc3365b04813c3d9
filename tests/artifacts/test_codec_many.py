"""Many values encoded or decoded at once give exactly what one call per value gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import codec, trees

_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=6) | st.sampled_from(["$5", "a,b", "}", '"', "\ud800"]))
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner) | st.frozensets(
        st.integers(), max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


def _table(keys: int) -> dict[str, Any]:
    return {f"k{i:06d}": {"id": i, "name": f"item {i}", "qty": i % 7} for i in range(keys)}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _VALUES, min_size=1, max_size=6))
def test_encode_many_is_one_encode_per_value(values: dict[str, Any]) -> None:
    """encode_many's bytes are each value's encode, in the map's order, or None."""
    try:
        expected = {key: codec.encode(value) for key, value in values.items()}
    except Exception:  # a value that does not encode: value by value names it
        expected = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "_MANY", 1)  # small maps, so that many are tried
        made = codec.encode_many(values)
    if made is not None:
        assert list(made.items()) == list((expected or {}).items())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _VALUES, min_size=1, max_size=6))
def test_decode_many_is_one_decode_per_value(values: dict[str, Any]) -> None:
    """decode_many's values equal each encoding decoded, in the map's order, or None."""
    try:
        encodings = {key: codec.encode(value) for key, value in values.items()}
    except Exception:
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "_MANY", 1)
        made = codec.decode_many(encodings)
    if made is not None:
        expected = {key: codec.decode(raw) for key, raw in encodings.items()}
        assert list(made) == list(expected)
        assert codec.encode(made) == codec.encode(expected)
        assert {key: type(value) for key, value in made.items()} == \
            {key: type(value) for key, value in expected.items()}


def test_plain_tables_take_the_one_shot_path() -> None:
    """A wide map of plain records is encoded and decoded at once, with fresh values."""
    table = _table(1000)
    encoded = codec.encode_many(table)
    assert encoded is not None
    assert encoded == {key: codec.encode(value) for key, value in table.items()}
    decoded = codec.decode_many(encoded)
    assert decoded == table
    assert decoded is not None
    assert decoded["k000001"] is not table["k000001"]  # a copy: changing it changes nothing
    tagged = dict(table, k000002={"when": (1, 2)})
    encodings = {key: trees.encode_entry(value) for key, value in tagged.items()}
    assert codec.decode_many(encodings) == tagged


@pytest.mark.parametrize("raw", [b'1,"k000001":2', b"1}", b'1},"x":{"y"', b'"a":1', b"",
                                 b'"unclosed', b"[1", b"1]", b'{"a":1}{"b":2}', b"1 2"])
def test_decode_many_refuses_encodings_that_are_not_one_value(raw: bytes) -> None:
    """An encoding that could end its member or add another leaves decode_many (None)."""
    encodings = {key: codec.encode(value) for key, value in _table(100).items()}
    encodings["k000000"] = raw
    assert codec.decode_many(encodings) is None


@pytest.mark.parametrize(("change", "decoded_at_once"), [
    ({"$dollar": 1}, False), ({"quote\"key": 1}, False), ({"raw": b"bytes"}, False),
    ({"big": 2**70}, True), ({"nan": float("nan")}, True),
])
def test_what_needs_a_closer_look_is_left_to_one_call_per_value(
        change: dict[str, Any], decoded_at_once: bool) -> None:
    """Keys JSON escapes or the codec tags, bytes and values needing tags are encoded one
    by one (None); only the keys and bytes keep decoding one by one too."""
    values = {**_table(100), **change}
    encodings = {key: trees.encode_entry(value) for key, value in values.items()}
    assert codec.encode_many(values) is None or "quote\"key" in change
    decoded = codec.decode_many(encodings)
    assert (decoded is not None) is decoded_at_once
    if decoded is not None:
        assert codec.encode(decoded) == codec.encode(values)
    assert codec.encode_many(_table(10)) is None  # small: value by value is as cheap


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _LEAVES, min_size=1, max_size=8))
def test_split_map_cuts_only_members_in_the_maps_own_order(values: dict[str, Any]) -> None:
    """split_map gives each value's encoding when the map's keys are in the order of its
    JSON's members and written as they are; None otherwise."""
    import orjson

    from pinrun.artifacts import _speedups

    try:
        whole = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return
    made = _speedups.split_map(whole, values)
    plain_keys = all(not any(c in key for c in '"\\') and all(ord(c) >= 0x20 for c in key)
                     for key in values)
    if list(values) == sorted(values) and plain_keys:
        assert made is not None
        assert list(made) == list(values)
        assert list(made.values()) == _speedups.split_values(whole)
    else:
        assert made is None


def test_encode_many_of_a_map_in_key_order_needs_no_second_cut(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A map built in key order is cut straight into its dict (split_map), in one pass."""
    table = _table(500)
    monkeypatch.setattr(codec, "_split_values", lambda whole: None)  # not needed
    assert codec.encode_many(table) == {key: codec.encode(value) for key, value in table.items()}
    # In any order of its own, when every map inside is in key order: no sort, one cut.
    backward = dict(reversed(table.items()))
    assert codec.encode_many(backward) == \
        {key: codec.encode(value) for key, value in backward.items()}
    unsorted_inside = {key: dict(reversed(value.items())) for key, value in backward.items()}
    assert codec.encode_many(unsorted_inside) is None  # (the second cut, gone)


def test_plain_in_order_tells_maps_inside_in_key_order() -> None:
    """2 when every map inside (not the container) has exact str keys in order, 1 when
    one has not, 0 when not plain; encode_many is one encode per value either way."""
    from pinrun.artifacts import _speedups

    class Key(str):
        pass

    cases: list[tuple[Any, int]] = [
        ({"b": {"x": 1, "y": [{"a": 1, "b": 2}]}, "a": 1}, 2),
        ({"a": {"y": 1, "x": 2}}, 1), ({"a": [{"b": 1, "a": 2}]}, 1),
        ({"a": {Key("x"): 1}}, 1), ({"a": {"\u00e9": 1, "z": 2}}, 1),
        ({"a": {"z": 1, "\u00e9": 2}}, 2), ({"a": {1.5: 2}}, 1), ({"a": (1,)}, 0),
        ([{"b": 1, "a": 2}], 1), ([{"a": 1}], 2), ({}, 2), ({"a": float("nan")}, 0)]
    for value, told in cases:
        assert _speedups.plain_in_order(value) == told, value
        if type(value) is dict and value:
            many = {f"k{i:03d}": value for i in range(70)}
            try:
                expected: dict[str, bytes] | None = {
                    key: codec.encode(item) for key, item in many.items()}
            except Exception:
                expected = None
            made = codec.encode_many(many)
            assert made is None or made == expected
            assert made is not None or told != 2
