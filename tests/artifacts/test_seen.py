"""Seen: a large plain value's objects, kept beside its encoding, tell by identity alone that
the value still encodes to it; any change, or an equal value of other objects, says no."""

from __future__ import annotations

import gc
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from pinrun.artifacts import _speedups, codec, seen
from tests.artifacts.test_still_encodes import _VALUES, _mutations

pytestmark = pytest.mark.skipif(not hasattr(_speedups, "encode_seen"),
                                reason="no C compiler here, so pinrun's C module (and Seen) is not "
                                "built; test_compiled_plain_check_is_built_where_a_"
                                "compiler_is fails where one is and it is not (CI has one)")


def _table(keys: int = 300) -> dict[str, Any]:
    return {f"k{i:05d}": {"id": i, "name": f"item {i}", "tags": ["a", i / 2, None, True]}
            for i in range(keys)}


def _encode_seen(value: Any, least: int = 0) -> tuple[bytes, Any] | None:
    return _speedups.encode_seen(value, orjson.dumps, orjson.OPT_SORT_KEYS, least,
                                 codec.COMPACT_BELOW)


def test_encode_seen_gives_the_codecs_bytes_and_a_seen_of_them() -> None:
    """The encoding is codec.encode's, byte for byte; the Seen holds it and says the
    value is the same."""
    value = _table()
    made = seen.encode_seen(value)
    assert made is not None
    encoding, found = made
    assert encoding == codec.encode(value)
    assert found is not None
    assert found.encoding is encoding
    assert found.same(value)


def test_a_short_encoding_gets_no_seen_and_is_compact() -> None:
    """Below SEEN_FROM bytes: the encoding alone, copied to an exact-size bytes."""
    made = seen.encode_seen({"a": [1, 2]})
    assert made == (b'{"a":[1,2]}', None)
    assert sys.getsizeof(made[0]) < 100


@pytest.mark.parametrize("value", [
    {"b": 1, "a": 2},            # keys out of order: decoding would reorder them
    {"$a": 1},                   # a key the codec tags
    {"a": "\ud800"},             # a lone surrogate
    {"a": float("nan")},         # a float the codec tags
    {"a": 2**70},                # an int orjson refuses
    {"a": (1, 2)},               # not plain
    {"a": "x\"$y"},              # '"$' in the output: the codec's tagged walk decides
    "text", 3, None,             # not a dict or a list
])
def test_encode_seen_declines_what_the_codec_writes_otherwise(value: Any) -> None:
    """None, and the caller encodes the codec's way."""
    assert _encode_seen(value) is None


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_encode_seen_agrees_with_the_codec(value: Any) -> None:
    """Whenever it answers, the bytes are codec.encode's and the value reads back as it is."""
    made = _encode_seen(value)
    if made is None:
        return
    assert made[0] == codec.encode(value)
    assert codec.reads_back(value)
    assert made[1].same(value)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_same_never_says_yes_to_a_value_that_encodes_otherwise(value: Any) -> None:
    """Against the value's changed forms (built from its own objects, so identity alone
    cannot tell them apart), yes only when the value encodes to the seen encoding."""
    made = _encode_seen(value)
    found = _speedups.seen_encoding(value, made[0]) if made is not None else None
    for check in (made[1] if made is not None else None, found):
        if check is None:
            continue
        for candidate in _mutations(value):
            if check.same(candidate):
                assert codec.still_encodes(candidate, check.encoding)


def test_every_change_in_place_is_seen() -> None:
    """A changed scalar, an added, removed or reordered key or item, a nested container
    swapped for an equal copy, a value set again to itself: each says no (undone, it may
    say either, and says yes only when the value encodes as seen)."""
    value = _table(50)
    record = value["k00007"]
    tags = record["tags"]
    name, ident = record["name"], record["id"]
    changes = [
        (lambda: record.__setitem__("name", "other"), lambda: record.__setitem__("name", name)),
        (lambda: tags.append(1), tags.pop),
        (lambda: record.__setitem__("extra", 1), lambda: record.pop("extra")),
        (tags.reverse, tags.reverse),
        (lambda: value.__setitem__("k00007", dict(record)),
         lambda: value.__setitem__("k00007", record)),
        (lambda: record.__setitem__("id", 7.0), lambda: record.__setitem__("id", ident)),
        (lambda: record.__setitem__("id", ident + 1), lambda: record.__setitem__("id", ident)),
    ]
    for change, undo in changes:
        made = _encode_seen(value)
        assert made is not None
        change()
        assert not made[1].same(value)
        undo()
        assert not made[1].same(value) or codec.encode(value) == made[0]
    # Deleted and put back: the key moves to the end of the dict, out of order.
    made = _encode_seen(value)
    assert made is not None
    record["id"] = record.pop("id")
    assert not made[1].same(value)
    assert not codec.still_encodes(value, made[0])


def test_an_unchanged_value_is_the_same_however_often_it_is_asked() -> None:
    """Reading a value (lookups, iteration, copies of it) changes nothing seen."""
    value = _table(50)
    made = _encode_seen(value)
    assert made is not None
    for _ in range(3):
        assert made[1].same(value)
        assert sum(len(record["tags"]) for record in value.values()) == 200
        assert dict(value) == value
        assert "k00003" in value
        assert value.get("missing") is None


def test_an_equal_value_of_other_objects_is_not_the_same() -> None:
    """Identity, not equality: a copy says no (the caller then checks the slow way)."""
    value = _table(20)
    made = _encode_seen(value)
    assert made is not None
    assert not made[1].same(codec.decode(made[0]))
    assert not made[1].same([value])
    assert not made[1].same({})


def test_a_replaced_string_at_a_reused_address_is_not_taken_for_the_old_one() -> None:
    """A string replaced by another, even at the address of the one it replaced, says no:
    a list's items are held by the Seen (their addresses cannot come back), and a dict
    that was written to is told by its version (or its held members)."""
    listed = ["x" * 5000 + str(7)]
    mapped = {"a": "x" * 5000 + str(7)}
    seen_list, seen_map = _encode_seen(listed), _encode_seen(mapped)
    assert seen_list is not None
    assert seen_map is not None
    old = id(listed[0])
    for attempt in range(200):
        listed[0] = "y" * 5000 + str(attempt % 10)
        mapped["a"] = "y" * 5000 + str(attempt % 10)
        assert id(listed[0]) != old
        assert not seen_list[1].same(listed)
        assert not seen_map[1].same(mapped)


def test_a_seen_holds_and_then_releases_the_objects() -> None:
    """Each container is held while the Seen lives, and let go with it."""
    inner = [1000, "text"]
    value = {"a": inner}
    before = sys.getrefcount(inner)
    made = _encode_seen(value)
    assert sys.getrefcount(inner) == before + 1
    del made
    gc.collect()
    assert sys.getrefcount(inner) == before


def test_seen_encoding_is_still_encodes_with_a_seen() -> None:
    """The same yes and no as still_encodes; a yes comes with a Seen of the encoding."""
    value = _table(40)
    raw = codec.encode(value)
    found = _speedups.seen_encoding(value, raw)
    assert found is not None
    assert found.encoding is raw
    assert found.same(value)
    assert _speedups.seen_encoding(value, raw[:-1]) is None
    assert _speedups.seen_encoding({"a": "x\n"}, codec.encode({"a": "x\n"})) is None
    assert _speedups.seen_encoding(value, bytearray(raw)) is None  # type: ignore[arg-type]


def test_nesting_is_bounded() -> None:
    """A value nested past the canonical depth gets no Seen (and no crash)."""
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    assert _encode_seen(deep) is None
    shallow: Any = 1
    for _ in range(150):
        shallow = {"a": shallow}
    made = _encode_seen(shallow)
    assert made is not None
    assert made[1].same(shallow)


def test_a_seen_cannot_be_made_from_python() -> None:
    """Only the walks make one: no Seen claims objects it did not see."""
    with pytest.raises(TypeError):
        type(_encode_seen([1])[1])()  # type: ignore[index]



class _Point:
    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


def test_an_instance_dict_changed_through_its_object_is_seen() -> None:
    """An object's own __dict__ (a split table, written through the object, maybe without
    a dict operation) is seen by its keys and values, not by a version tag."""
    points = [_Point(i, i + 1) for i in range(20)]
    value = {"points": [vars(point) for point in points]}
    for _ in range(3):  # the attribute writes below get specialised by the interpreter
        made = _encode_seen(value)
        assert made is not None
        assert made[1].same(value)
        for point in points:
            point.x += 1
        assert not made[1].same(value)
        for point in points:
            point.x -= 1
        for point in points:
            point.y = point.y  # the same objects again: the same value
        assert made[1].same(value) or codec.encode(value) == made[0]
