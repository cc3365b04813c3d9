"""The canonical codec: one value, one byte string, and back to the same value.

These tests are the codec's specification. ``same`` is the strict notion of
"the same value" they use: types must match exactly (a tuple is not a list,
``1`` is not ``1.0`` or ``True``), NaN equals NaN, and ``-0.0`` is not ``0.0``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import math
import random
import struct
import sys
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinrun.artifacts import codec
from pinrun.artifacts._codec_types import TAG_DECODERS
from pinrun.artifacts.codec import (
    UndecodableValueError,
    UnloadedValue,
    decode,
    decode_tagged,
    encode,
)
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.errors import InputError, PinrunError, StoreError, UnsupportedValueError
from tests.artifacts.codec_fixtures import (
    Color,
    Counted,
    Euro,
    ExtraModel,
    Model,
    Money,
    Opaque,
    Pair,
    Perm,
    Point,
    Priority,
    Record,
    Temperature,
    TokenA,
    TokenB,
)

NAN = float("nan")
INF = float("inf")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")

PROPERTY_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ====================================================================== helpers


def _same_tz(first: dt.tzinfo | None, second: dt.tzinfo | None) -> bool:
    if first is None or second is None:
        return first is second
    if type(first) is not type(second):
        return False
    if isinstance(first, zoneinfo.ZoneInfo) and isinstance(second, zoneinfo.ZoneInfo):
        return first.key == second.key
    return first.utcoffset(None) == second.utcoffset(None)


def same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same value, with exactly the same types throughout."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return bool(
            a.dtype.str == b.dtype.str
            and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        )
    if isinstance(a, np.generic):
        return bool(a.dtype.str == b.dtype.str and a.tobytes() == b.tobytes())
    if isinstance(a, pd.DataFrame):
        return bool(
            a.equals(b)
            and list(a.dtypes) == list(b.dtypes)
            and list(a.columns) == list(b.columns)
            and same_index(a.index, b.index)
        )
    if isinstance(a, pd.Series):
        return bool(a.equals(b) and a.dtype == b.dtype and a.name == b.name) and same_index(
            a.index, b.index
        )
    if isinstance(a, enum.Enum):
        return a is b
    if isinstance(a, float):
        if math.isnan(a):
            return bool(math.isnan(b))
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, dt.datetime | dt.time):
        return bool(
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and _same_tz(a.tzinfo, b.tzinfo)
        )
    if isinstance(a, list | tuple):  # NamedTuples included: their type was checked above
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        b_keys = {key: key for key in b}
        for key, item in a.items():
            if key not in b_keys:
                return False
            other_key = b_keys[key]
            if not same(key, other_key) or not same(item, b[other_key]):
                return False
        return True
    if isinstance(a, set | frozenset):
        if len(a) != len(b):
            return False
        b_items = {item: item for item in b}
        return all(item in b_items and same(item, b_items[item]) for item in a)
    if dataclasses.is_dataclass(a):
        return all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, pydantic.BaseModel):
        return same(
            {name: getattr(a, name) for name in type(a).model_fields},
            {name: getattr(b, name) for name in type(b).model_fields},
        ) and same(a.__pydantic_extra__ or {}, b.__pydantic_extra__ or {})
    return bool(a == b)


def same_index(a: Any, b: Any) -> bool:
    """Whether two pandas indexes hold the same labels, dtype, name and index class."""
    return bool(
        type(a) is type(b) and a.equals(b) and a.dtype == b.dtype and a.name == b.name
    )


def round_trip(value: Any) -> Any:
    """Encode then decode."""
    return decode(encode(value))


def value_digest(value: Any) -> Digest:
    """The digest a value is stored under."""
    return compute_digest(Kind.VALUE, encode(value))


def tag_of(value: Any) -> str:
    """The single tag the encoding of ``value`` is wrapped in."""
    tagged = decode_tagged(encode(value))
    assert isinstance(tagged, dict)
    assert len(tagged) == 1, tagged
    (key,) = tagged
    assert isinstance(key, str)
    return key


def reorder(value: Any, rnd: random.Random) -> Any:
    """An equal copy of ``value`` with every dict and set, at any depth, built in a new order."""
    cls = type(value)
    if cls is dict:
        items = [(reorder(k, rnd), reorder(v, rnd)) for k, v in value.items()]
        rnd.shuffle(items)
        return dict(items)
    if cls is set or cls is frozenset:
        elements = [reorder(item, rnd) for item in value]
        rnd.shuffle(elements)
        return cls(elements)
    if cls is list:
        return [reorder(item, rnd) for item in value]
    if cls is tuple:
        return tuple(reorder(item, rnd) for item in value)
    if cls is Pair:
        return Pair(reorder(value.left, rnd), reorder(value.right, rnd))
    if cls is Record:
        return Record(value.name, reorder(value.tags, rnd), reorder(value.created, rnd))
    if cls is Model:
        return Model.model_construct(
            name=value.name, count=value.count, payload=reorder(value.payload, rnd)
        )
    if cls is ExtraModel:
        extra = [(k, reorder(v, rnd)) for k, v in (value.__pydantic_extra__ or {}).items()]
        rnd.shuffle(extra)
        return ExtraModel(kind=value.kind, **dict(extra))
    return value


# =================================================================== strategies

SURROGATES: st.SearchStrategy[str] = st.characters(
    min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]
)
TAG_LIKE = ["$", "$tuple", "$map", "$str", "$int", "$set", "$ext", "$$", '{"$', "a$", ""]
INT_EDGES = [
    0, 1, -1,
    (1 << 63) - 1, -(1 << 63), -(1 << 63) - 1,
    (1 << 64) - 1, 1 << 64, -(1 << 64),
    10**30, -(10**30), 1 << 200,
]
FLOAT_EDGES = [0.0, -0.0, NAN, INF, -INF, 0.1, 5e-324, sys.float_info.max, 1e16, 1e-5]

texts: st.SearchStrategy[Any] = (
    st.text(max_size=8)
    | st.builds("".join, st.lists(st.characters() | SURROGATES, max_size=6))
    | st.builds(lambda a, s, b: a + s + b, st.text(max_size=3), SURROGATES, st.text(max_size=3))
    | st.text(max_size=5).map(lambda s: "$" + s)
    | st.sampled_from(TAG_LIKE)
)
ints: st.SearchStrategy[Any] = (
    st.integers()
    | st.integers(min_value=-(1 << 300), max_value=1 << 300)
    | st.sampled_from(INT_EDGES)
)
finite_floats: st.SearchStrategy[Any] = st.floats(
    allow_nan=False, allow_infinity=False
) | st.sampled_from([f for f in FLOAT_EDGES if math.isfinite(f)])
hashable_floats: st.SearchStrategy[Any] = st.floats(allow_nan=False) | st.sampled_from(
    [f for f in FLOAT_EDGES if not math.isnan(f)]
)
floats: st.SearchStrategy[Any] = st.floats() | st.sampled_from(FLOAT_EDGES)
fixed_zones: st.SearchStrategy[Any] = st.just(dt.UTC) | st.builds(
    dt.timezone,
    st.timedeltas(
        min_value=-dt.timedelta(hours=24) + dt.timedelta(microseconds=1),
        max_value=dt.timedelta(hours=24) - dt.timedelta(microseconds=1),
    ),
)
datetimes: st.SearchStrategy[Any] = (
    st.datetimes()
    | st.datetimes(timezones=fixed_zones)
    | st.datetimes(timezones=st.timezones())
)
times: st.SearchStrategy[Any] = st.times() | st.times(timezones=fixed_zones)
enums: st.SearchStrategy[Any] = st.sampled_from(
    [*Color, *Priority, *Perm, Perm.R | Perm.W, Perm.R | Perm.W | Perm.X]
)
digests: st.SearchStrategy[Any] = st.binary(min_size=32, max_size=32).map(Digest)

hashable_leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    hashable_floats,
    texts,
    st.binary(max_size=8),
    datetimes,
    st.dates(),
    times,
    st.timedeltas(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.complex_numbers(allow_nan=False),
    enums,
    digests,
)

hashables: st.SearchStrategy[Any] = st.recursive(
    hashable_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
        st.builds(Pair, inner, inner),
        st.builds(Point, ints, hashable_floats),
    ),
    max_leaves=6,
)

leaves: st.SearchStrategy[Any] = st.one_of(
    hashable_leaves,
    floats,  # NaN included: fine outside sets and dict keys
    st.complex_numbers(),
    st.binary(max_size=8).map(bytearray),
)

extra_names: st.SearchStrategy[Any] = st.from_regex(r"x_[a-z]{1,4}", fullmatch=True)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(texts, children, max_size=4),
        st.dictionaries(hashables, children, max_size=3),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.builds(Record, name=texts, tags=st.lists(children, max_size=2), created=children),
        st.builds(Pair, children, children),
        st.builds(Model, name=texts, count=ints, payload=children),
        st.builds(
            lambda kind, extra: ExtraModel(kind=kind, **extra),
            texts,
            st.dictionaries(extra_names, children, max_size=2),
        ),
    )


values: st.SearchStrategy[Any] = st.recursive(
    leaves | hashables, _containers, max_leaves=16
)


# ============================================================ properties


@PROPERTY_SETTINGS
@given(values)
def test_round_trip_restores_the_same_value(value: Any) -> None:
    """Decoding the encoding of any supported value gives back the same value, same types."""
    data = encode(value)
    assert isinstance(data, bytes)
    assert same(decode(data), value)


@PROPERTY_SETTINGS
@given(values)
def test_encoding_is_deterministic_and_idempotent(value: Any) -> None:
    """Encoding twice, or re-encoding the decoded value, gives the same bytes."""
    data = encode(value)
    assert encode(value) == data
    assert encode(decode(data)) == data


@PROPERTY_SETTINGS
@given(
    st.lists(st.tuples(texts | hashables, values), max_size=6, unique_by=lambda kv: kv[0]),
    st.randoms(use_true_random=False),
)
def test_dict_insertion_order_never_changes_the_encoding(
    items: list[tuple[Any, Any]], rnd: random.Random
) -> None:
    """Dict insertion order never changes the encoding or the digest."""
    shuffled = list(items)
    rnd.shuffle(shuffled)
    first, second = dict(items), dict(shuffled)
    assert encode(first) == encode(second)
    assert value_digest(first) == value_digest(second)


@PROPERTY_SETTINGS
@given(st.lists(hashables, max_size=8, unique=True), st.randoms(use_true_random=False))
def test_set_build_order_never_changes_the_encoding(
    elements: list[Any], rnd: random.Random
) -> None:
    """A set or frozenset encodes the same whatever order its elements were added in."""
    shuffled = list(elements)
    rnd.shuffle(shuffled)
    assert encode(set(elements)) == encode(set(shuffled))
    assert encode(frozenset(elements)) == encode(frozenset(shuffled))
    assert value_digest(set(elements)) == value_digest(set(shuffled))


@PROPERTY_SETTINGS
@given(values, st.randoms(use_true_random=False))
def test_rebuilding_dicts_and_sets_at_any_depth_never_changes_the_encoding(
    value: Any, rnd: random.Random
) -> None:
    """Rebuilding every nested dict and set in another order leaves the bytes unchanged."""
    rebuilt = reorder(value, rnd)
    assert same(rebuilt, value)
    assert encode(rebuilt) == encode(value)


@PROPERTY_SETTINGS
@given(values, values)
def test_different_values_give_different_bytes(first: Any, second: Any) -> None:
    """Two values that are not the same (types included) never share bytes or a digest."""
    if same(first, second):
        assert encode(first) == encode(second)
        return
    assert encode(first) != encode(second)
    assert value_digest(first) != value_digest(second)


@PROPERTY_SETTINGS
@given(values)
def test_every_container_kind_encodes_a_value_differently(value: Any) -> None:
    """Wrapping one value in different kinds of container always gives different bytes."""
    wrapped: list[Any] = [
        value,
        [value],
        (value,),
        {"k": value},
        {1: value},
        {"$k": value},
        Pair(value, None),
        Record("", [], value),
        Model(name="", payload=value),
    ]
    try:
        hash(value)
    except TypeError:
        pass
    else:
        if not (isinstance(value, float) and math.isnan(value)):
            wrapped += [{value}, frozenset({value}), {value: None}]
    encodings = [encode(item) for item in wrapped]
    assert len(set(encodings)) == len(encodings)


# ============================================================= plain JSON


def test_plain_json_is_compact_orjson_with_sorted_keys() -> None:
    """Plain JSON values are written compactly, keys sorted at every level."""
    value = {"b": 1, "a": {"d": [1, 2.5, None, True], "c": "x"}}
    assert encode(value) == b'{"a":{"c":"x","d":[1,2.5,null,true]},"b":1}'


def test_dict_insertion_order_never_changes_the_encoding_example() -> None:
    """Dict insertion order never changes the encoding (a literal example)."""
    first = {"alpha": 1, "beta": {"y": 2, "x": 1}, "gamma": [3]}
    second = {"gamma": [3], "beta": {"x": 1, "y": 2}, "alpha": 1}
    assert encode(first) == encode(second)
    assert value_digest(first) == value_digest(second)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, b"null"), (True, b"true"), (False, b"false"), ("hé", '"hé"'.encode()), (0, b"0")],
)
def test_scalars_are_plain_json(value: Any, expected: bytes) -> None:
    """None, booleans, strings and small ints are written as plain JSON."""
    assert encode(value) == expected
    assert same(decode(expected), value)


def test_decode_reads_plain_json() -> None:
    """Any plain JSON document (no tags) decodes to the matching Python value."""
    assert decode(b'{"b":[1,2.5,null],"a":"x"}') == {"a": "x", "b": [1, 2.5, None]}


# ================================================================= floats


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, b"0.1"),
        (0.1 + 0.2, b"0.30000000000000004"),
        (1.0, b"1.0"),
        (-0.0, b"-0.0"),
        (2.5, b"2.5"),
        (1 / 3, b"0.3333333333333333"),
    ],
)
def test_floats_are_written_in_shortest_round_trip_form(value: float, expected: bytes) -> None:
    """Floats are written with the fewest digits that read back as the same float."""
    assert encode(value) == expected
    assert encode([value]) == b"[" + expected + b"]"


@PROPERTY_SETTINGS
@given(finite_floats)
def test_every_finite_float_has_the_same_digits_as_repr(value: float) -> None:
    """A finite float's text has repr's shortest digits and parses back to the same bits."""
    text = encode(value).decode("ascii")
    assert Decimal(text) == Decimal(repr(value))
    assert struct.pack("<d", float(text)) == struct.pack("<d", value)
    assert struct.pack("<d", decode(text.encode())) == struct.pack("<d", value)


@pytest.mark.parametrize(("value", "text"), [(NAN, "nan"), (INF, "inf"), (-INF, "-inf")])
def test_non_finite_floats_are_tagged(value: float, text: str) -> None:
    """NaN and the infinities, which JSON cannot spell, are stored as $float tags."""
    assert decode_tagged(encode(value)) == {"$float": text}
    assert decode_tagged(encode([value])) == [{"$float": text}]
    assert same(round_trip(value), value)
    assert same(round_trip({"x": [value]}), {"x": [value]})


def test_negative_zero_keeps_its_sign() -> None:
    """-0.0 comes back as -0.0, not 0.0."""
    assert math.copysign(1.0, round_trip(-0.0)) == -1.0
    assert math.copysign(1.0, round_trip([-0.0])[0]) == -1.0


# =================================================================== ints


@pytest.mark.parametrize("value", [0, -1, (1 << 63) - 1, -(1 << 63), (1 << 64) - 1])
def test_ints_within_64_bits_are_plain_json_numbers(value: int) -> None:
    """Ints orjson can write (signed 64-bit up to unsigned 64-bit max) are plain numbers."""
    assert encode(value) == str(value).encode()
    assert same(round_trip(value), value)
    assert same(round_trip([value]), [value])


@pytest.mark.parametrize(
    "value", [-(1 << 63) - 1, 1 << 64, -(1 << 64), 10**30, -(10**30), 1 << 1000]
)
def test_ints_beyond_64_bits_are_tagged(value: int) -> None:
    """Ints beyond 64 bits are stored as $int text and come back exactly."""
    assert decode_tagged(encode(value)) == {"$int": str(value)}
    assert same(round_trip(value), value)
    assert same(round_trip({"n": [value]}), {"n": [value]})


# ================================================================ strings


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc00\ud800", "ok\ud83d"])
def test_strings_with_lone_surrogates_round_trip(text: str) -> None:
    """Strings holding lone surrogates (not valid UTF-8) are stored as $str and come back."""
    assert tag_of(text) == "$str"
    assert same(round_trip(text), text)
    assert same(round_trip([text, {"k": text}]), [text, {"k": text}])
    assert same(round_trip({text: 1}), {text: 1})


def test_valid_surrogate_pairs_are_plain_text() -> None:
    """A properly paired emoji is ordinary UTF-8 text, not a $str tag."""
    assert encode("\U0001f600") == '"\U0001f600"'.encode()


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"])
def test_lone_surrogates_in_sets_and_non_str_keyed_dicts_round_trip(text: str) -> None:
    """Lone-surrogate strings work as set elements and beside non-string dict keys too."""
    for value in ({text}, frozenset({text, "x"}), {1: text, text: 2}, {"$k": 1, text: 2}):
        assert same(round_trip(value), value)


@pytest.mark.parametrize("text", ["$", "$tuple", '{"$tuple":[1]}', "$$x"])
def test_dollar_strings_as_values_are_just_strings(text: str) -> None:
    """A string value that starts with $ is stored as itself and comes back as a string."""
    assert same(round_trip(text), text)
    assert same(round_trip({"k": text}), {"k": text})
    assert same(round_trip([text]), [text])


@pytest.mark.parametrize(
    "value",
    [
        {"$tuple": [1, 2]},
        {"$map": [[1, 2]]},
        {"$str": "7aCA"},
        {"$": None},
        {"$ext": ["name", 1]},
        {"$a": 1, "b": 2},
        {"a": {"$set": []}},
    ],
)
def test_dicts_with_dollar_keys_are_never_mistaken_for_tags(value: dict[str, Any]) -> None:
    """A user dict whose keys start with $ is stored as $map and decodes as that dict."""
    assert "$map" in encode(value).decode("utf-8", "surrogatepass")
    assert same(round_trip(value), value)


# ====================================================== tagged types, by example

UTC_NOON = dt.datetime(2024, 5, 17, 12, 30, 15, 123456, tzinfo=dt.UTC)
TAGGED_EXAMPLES: list[Any] = [
    pytest.param((1, "a", None), "$tuple", id="tuple"),
    pytest.param((), "$tuple", id="empty-tuple"),
    pytest.param(((1,), [2, (3,)]), "$tuple", id="nested-tuple"),
    pytest.param({1, "a", (2, 3)}, "$set", id="set"),
    pytest.param(set(), "$set", id="empty-set"),
    pytest.param(frozenset({1, frozenset({2})}), "$frozenset", id="frozenset"),
    pytest.param(b"\x00\xff\x80 bytes", "$bytes", id="bytes"),
    pytest.param(b"", "$bytes", id="empty-bytes"),
    pytest.param(bytearray(b"\x01\x02"), "$bytearray", id="bytearray"),
    pytest.param(1 << 70, "$int", id="big-int"),
    pytest.param(NAN, "$float", id="nan"),
    pytest.param({1: "a", 2: "b"}, "$map", id="int-keys"),
    pytest.param({(1, 2): "t", None: 0, True: 1}, "$map", id="mixed-keys"),
    pytest.param({"$a": 1}, "$map", id="dollar-key"),
    pytest.param({"a": 1, 2: "b"}, "$map", id="str-and-int-keys"),
    pytest.param("x\ud800", "$str", id="surrogate"),
    pytest.param(dt.datetime(2024, 5, 17, 12, 30, 15, 123456), "$datetime", id="naive-dt"),
    pytest.param(dt.datetime(2024, 5, 17, 1, 0, fold=1), "$datetime", id="naive-dt-fold"),
    pytest.param(UTC_NOON, "$datetime", id="utc-dt"),
    pytest.param(
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
        "$datetime",
        id="fixed-offset-dt",
    ),
    pytest.param(
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=3723, microseconds=5))),
        "$datetime",
        id="odd-offset-dt",
    ),
    pytest.param(dt.datetime(2024, 7, 1, 9, tzinfo=NEW_YORK), "$datetime", id="zoneinfo-dt"),
    pytest.param(
        dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")), "$datetime", id="zoneinfo-utc"
    ),
    pytest.param(dt.date(2024, 2, 29), "$date", id="date"),
    pytest.param(dt.date.min, "$date", id="date-min"),
    pytest.param(dt.time(23, 59, 59, 999999), "$time", id="time"),
    pytest.param(dt.time(1, 30, fold=1), "$time", id="time-fold"),
    pytest.param(dt.time(8, tzinfo=dt.timezone(dt.timedelta(hours=5))), "$time", id="time-tz"),
    pytest.param(dt.timedelta(days=-3, seconds=5, microseconds=7), "$timedelta", id="timedelta"),
    pytest.param(dt.timedelta.max, "$timedelta", id="timedelta-max"),
    pytest.param(Decimal("3.14159"), "$decimal", id="decimal"),
    pytest.param(Decimal("1.000"), "$decimal", id="decimal-trailing-zeros"),
    pytest.param(Decimal("-0E-7"), "$decimal", id="decimal-negative-zero"),
    pytest.param(Decimal("1E+100"), "$decimal", id="decimal-exponent"),
    pytest.param(uuid.UUID("12345678-1234-5678-1234-567812345678"), "$uuid", id="uuid"),
    pytest.param(complex(1.5, -2), "$complex", id="complex"),
    pytest.param(complex(NAN, -INF), "$complex", id="complex-non-finite"),
    pytest.param(complex(-0.0, 0.0), "$complex", id="complex-signed-zero"),
    pytest.param(Color.RED, "$enum", id="enum"),
    pytest.param(Color.BLUE, "$enum", id="enum-int-value"),
    pytest.param(Priority.HIGH, "$enum", id="int-enum"),
    pytest.param(Perm.W, "$flag", id="flag-member"),  # by value: a combination has no name
    pytest.param(Point(1, -0.5), "$dataclass", id="frozen-dataclass"),
    pytest.param(Record("r", [1, (2,)], {"when": UTC_NOON}), "$dataclass", id="dataclass"),
    pytest.param(Pair((1,), {2}), "$namedtuple", id="namedtuple"),
    pytest.param(Model(name="m", count=3, payload=[b"x"]), "$pydantic", id="pydantic"),
    pytest.param(
        ExtraModel.model_validate({"kind": "k", "x_extra": (1, 2)}),
        "$pydantic",
        id="pydantic-extra",
    ),
    pytest.param(Digest(bytes(range(32))), "$digest", id="digest"),
    pytest.param(np.arange(3), "$ndarray", id="ndarray"),
    pytest.param(np.float32(1.5), "$npscalar", id="npscalar"),
]


@pytest.mark.parametrize(("value", "tag"), TAGGED_EXAMPLES)
def test_tagged_types_round_trip_with_their_exact_type(value: Any, tag: str) -> None:
    """Each type JSON cannot express is stored under its own tag and restored exactly."""
    assert tag_of(value) == tag
    decoded = round_trip(value)
    assert type(decoded) is type(value)
    assert same(decoded, value)
    assert same(round_trip([value, {"k": value}]), [value, {"k": value}])


@pytest.mark.parametrize(("value", "tag"), TAGGED_EXAMPLES)
def test_tagged_types_encode_canonically(value: Any, tag: str) -> None:
    """Re-encoding a decoded tagged value gives the same bytes."""
    data = encode(value)
    assert encode(decode(data)) == data


# ---------------------------------------------------------------- datetimes


def test_zoneinfo_datetime_keeps_its_zone() -> None:
    """A datetime in an IANA zone comes back in that zone, not as a fixed offset."""
    value = dt.datetime(2024, 7, 1, 9, 15, tzinfo=NEW_YORK)
    decoded = round_trip(value)
    assert isinstance(decoded.tzinfo, zoneinfo.ZoneInfo)
    assert decoded.tzinfo.key == "America/New_York"
    assert decoded == value
    assert decoded.utcoffset() == value.utcoffset()


def test_fixed_offset_datetime_keeps_a_fixed_offset() -> None:
    """A datetime with a fixed offset comes back with a datetime.timezone of that offset."""
    zone = dt.timezone(dt.timedelta(hours=5, minutes=45))
    decoded = round_trip(dt.datetime(2024, 7, 1, 9, 15, tzinfo=zone))
    assert type(decoded.tzinfo) is dt.timezone
    assert decoded.utcoffset() == dt.timedelta(hours=5, minutes=45)


@pytest.mark.parametrize(
    "offset",
    [dt.timedelta(microseconds=1), dt.timedelta(microseconds=-1), dt.timedelta(microseconds=999)],
    ids=["plus-1us", "minus-1us", "plus-999us"],
)
def test_fixed_offsets_under_one_second_round_trip(offset: dt.timedelta) -> None:
    """A fixed offset smaller than one second (legal in Python) is kept exactly."""
    zone = dt.timezone(offset)
    for value in (dt.datetime(2000, 1, 1, tzinfo=zone), dt.time(1, tzinfo=zone)):
        decoded = round_trip(value)
        assert decoded.utcoffset() == offset
        assert same(decoded, value)


@pytest.mark.parametrize("fold", [0, 1])
def test_repeated_wall_time_keeps_its_fold(fold: int) -> None:
    """In the hour repeated when DST ends, fold (which occurrence) survives the round trip."""
    value = dt.datetime(2021, 11, 7, 1, 30, fold=fold, tzinfo=NEW_YORK)
    decoded = round_trip(value)
    assert same(decoded, value)
    assert decoded.utcoffset() == value.utcoffset()


def test_both_occurrences_of_a_repeated_wall_time_encode_differently() -> None:
    """The two occurrences of a repeated wall time are different values with different bytes."""
    first = dt.datetime(2021, 11, 7, 1, 30, fold=0, tzinfo=NEW_YORK)
    second = first.replace(fold=1)
    assert encode(first) != encode(second)


@pytest.mark.parametrize("fold", [0, 1])
def test_wall_time_skipped_by_dst_round_trips(fold: int) -> None:
    """A zoneinfo datetime at a wall time skipped by DST comes back with the same wall time."""
    value = dt.datetime(2021, 3, 14, 2, 30, fold=fold, tzinfo=NEW_YORK)
    decoded = round_trip(value)
    assert same(decoded, value), decoded


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime.min.replace(tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo")),
        dt.datetime.max.replace(tzinfo=zoneinfo.ZoneInfo("America/Los_Angeles")),
    ],
    ids=["min-east-of-utc", "max-west-of-utc"],
)
def test_zoneinfo_datetimes_at_the_calendar_edges_round_trip(value: dt.datetime) -> None:
    """A zoneinfo datetime near datetime.min/max, which encodes fine, also decodes."""
    assert same(round_trip(value), value)


# ------------------------------------------------------------ enums, classes


def test_enum_members_come_back_as_the_same_object() -> None:
    """Enum members decode to the very member object, not an equal value."""
    for member in [*Color, *Priority, *Perm]:
        assert round_trip(member) is member


def test_int_enum_is_not_an_int() -> None:
    """An IntEnum member and the equal int encode differently and keep their types."""
    assert encode(Priority.LOW) != encode(1)
    assert type(round_trip(Priority.LOW)) is Priority


@pytest.mark.parametrize(
    "member", [Perm.R | Perm.W, Perm.R | Perm.W | Perm.X, Perm(0)], ids=["RW", "RWX", "empty"]
)
def test_flag_combinations_round_trip(member: Perm) -> None:
    """A combination of Flag members (or the empty flag) is an Enum value and round-trips."""
    assert round_trip(member) is member


def test_dataclass_decoding_does_not_rerun_init() -> None:
    """A dataclass comes back with its stored field values; __post_init__ is not rerun."""
    value = Counted(1)
    assert value.count == 2
    decoded = round_trip(value)
    assert type(decoded) is Counted
    assert decoded.count == 2


def test_frozen_dataclass_stays_frozen() -> None:
    """A decoded frozen dataclass is still frozen and hashable."""
    decoded = round_trip(Point(1, 2.0))
    assert decoded == Point(1, 2.0)
    assert hash(decoded) == hash(Point(1, 2.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.x = 5


def test_pydantic_model_round_trips_fields_and_extras() -> None:
    """A pydantic model comes back as its class, with declared and extra fields."""
    model = Model(name="m", count=2, payload={"when": dt.date(2024, 1, 1), "t": (1,)})
    decoded = round_trip(model)
    assert type(decoded) is Model
    assert decoded == model
    assert same(decoded.payload, model.payload)
    extra = ExtraModel.model_validate({"kind": "k", "x_a": 1, "x_b": [b"\x00"]})
    decoded_extra = round_trip(extra)
    assert decoded_extra == extra
    assert decoded_extra.__pydantic_extra__ == {"x_a": 1, "x_b": [b"\x00"]}


def test_namedtuple_is_not_a_tuple() -> None:
    """A NamedTuple and the plain tuple of its fields encode differently and keep their types."""
    assert encode(Pair(1, 2)) != encode((1, 2))
    assert type(round_trip(Pair(1, 2))) is Pair


def test_digest_round_trips_as_a_digest() -> None:
    """A Digest value comes back as a Digest, not as text."""
    digest = compute_digest(Kind.BLOB, b"x")
    decoded = round_trip({"d": digest})["d"]
    assert type(decoded) is Digest
    assert decoded == digest


# ==================================================== different values differ

NEAR_MISSES: list[Any] = [
    pytest.param(1, 1.0, id="int-float"),
    pytest.param(1, True, id="int-bool"),
    pytest.param(1.0, True, id="float-bool"),
    pytest.param(0, False, id="zero-false"),
    pytest.param(0, None, id="zero-none"),
    pytest.param(0.0, -0.0, id="signed-zeros"),
    pytest.param(1, Decimal(1), id="int-decimal"),
    pytest.param(Decimal("1.0"), Decimal("1.00"), id="decimal-precision"),
    pytest.param(Decimal("0"), Decimal("-0"), id="decimal-signed-zero"),
    pytest.param(1.0, 1 + 0j, id="float-complex"),
    pytest.param(1, "1", id="int-str"),
    pytest.param((1, 2), [1, 2], id="tuple-list"),
    pytest.param((), [], id="empty-tuple-list"),
    pytest.param(b"a", "a", id="bytes-str"),
    pytest.param(b"a", bytearray(b"a"), id="bytes-bytearray"),
    pytest.param({1}, frozenset({1}), id="set-frozenset"),
    pytest.param(set(), frozenset(), id="empty-set-frozenset"),
    pytest.param({1, 2}, [1, 2], id="set-list"),
    pytest.param({}, [], id="dict-list"),
    pytest.param({"1": "a"}, {1: "a"}, id="str-key-int-key"),
    pytest.param({1: "a"}, {True: "a"}, id="int-key-bool-key"),
    pytest.param({1: "a"}, [[1, "a"]], id="map-pairs-list"),
    pytest.param({"$tuple": [1, 2]}, (1, 2), id="tag-shaped-dict-tuple"),
    pytest.param({"$str": "7aCA"}, "\ud800", id="tag-shaped-dict-surrogate"),
    pytest.param("\ud800", "\ufffd", id="surrogate-replacement-char"),
    pytest.param("$tuple", (), id="tag-name-string"),
    pytest.param(1 << 64, str(1 << 64), id="big-int-str"),
    pytest.param(NAN, "nan", id="nan-str"),
    pytest.param(Color.BLUE, 3, id="enum-value"),
    pytest.param(Priority.LOW, 1, id="int-enum-int"),
    pytest.param(Point(1, 2.0), Pair(1, 2.0), id="dataclass-namedtuple"),
    pytest.param(Pair(1, 2), (1, 2), id="namedtuple-tuple"),
    pytest.param(Model(name="a"), {"name": "a", "count": 0, "payload": None}, id="model-dict"),
    pytest.param(dt.date(2020, 1, 1), dt.datetime(2020, 1, 1), id="date-datetime"),
    pytest.param(dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, tzinfo=dt.UTC), id="naive-utc"),
    pytest.param(
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")),
        id="fixed-utc-zoneinfo-utc",
    ),
    pytest.param(
        dt.datetime(2020, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(2020, 1, 1, 12, tzinfo=dt.UTC),
        id="same-instant-other-offset",
    ),
    pytest.param(dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, fold=1), id="naive-fold"),
    pytest.param(dt.time(1), dt.time(1, fold=1), id="time-fold"),
    pytest.param(dt.timedelta(seconds=1), 1, id="timedelta-int"),
    pytest.param(uuid.UUID(int=1), uuid.UUID(int=1).hex, id="uuid-hex"),
    pytest.param(Digest(bytes(32)), bytes(32).hex(), id="digest-hex"),
    pytest.param(Digest(bytes(32)), bytes(32), id="digest-raw"),
    pytest.param(np.float64(1.0), 1.0, id="np-float64-float"),
    pytest.param(np.int64(1), 1, id="np-int64-int"),
    pytest.param(np.bool_(True), True, id="np-bool-bool"),
    pytest.param(np.int64(1), np.int32(1), id="np-int-widths"),
    pytest.param(np.array(1), np.int64(1), id="0d-array-scalar"),
    pytest.param(np.array([1, 2]), [1, 2], id="array-list"),
    pytest.param(np.array([1, 2]), np.array([[1, 2]]), id="array-shapes"),
    pytest.param(np.array([1, 2], dtype="<i4"), np.array([1, 2], dtype=">i4"), id="byte-order"),
]


@pytest.mark.parametrize(("first", "second"), NEAR_MISSES)
def test_near_miss_values_encode_differently(first: Any, second: Any) -> None:
    """Values that Python may call equal but that differ in type or detail get different bytes."""
    assert encode(first) != encode(second)
    assert value_digest(first) != value_digest(second)
    assert same(round_trip(first), first)
    assert same(round_trip(second), second)


def test_all_near_miss_values_are_pairwise_distinct() -> None:
    """No two of the near-miss values share an encoding."""
    candidates: list[Any] = []
    for param in NEAR_MISSES:
        candidates.extend(param.values)
    for first, second in itertools.combinations(candidates, 2):
        if not same(first, second):
            assert encode(first) != encode(second), (first, second)


# ================================================================== numpy

ARRAYS: list[Any] = [
    pytest.param(np.arange(5, dtype=np.int8), id="int8"),
    pytest.param(np.arange(12, dtype=np.int64).reshape(3, 4), id="int64-2d"),
    pytest.param(np.array([[[1.5, NAN], [-0.0, INF]]], dtype=np.float32), id="float32-3d"),
    pytest.param(np.asfortranarray(np.arange(6.0).reshape(2, 3)), id="fortran-order"),
    pytest.param(np.arange(10)[::3], id="strided-view"),
    pytest.param(np.array([True, False, True]), id="bool"),
    pytest.param(np.array([1 + 2j, NAN], dtype=np.complex128), id="complex128"),
    pytest.param(np.arange(4, dtype=">u2"), id="big-endian-uint16"),
    pytest.param(np.array([0.5, 2.0], dtype=np.float16), id="float16"),
    pytest.param(np.array(["a", "héllo"]), id="unicode"),
    pytest.param(np.array([b"ab", b"c"]), id="bytes"),
    pytest.param(np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"), id="datetime64"),
    pytest.param(np.array([1, -2], dtype="timedelta64[s]"), id="timedelta64"),
    pytest.param(np.array(5), id="0d"),
    pytest.param(np.zeros((0, 3)), id="empty-2d"),
    pytest.param(np.zeros((2, 0, 2), dtype=np.uint32), id="empty-middle-axis"),
]


@pytest.mark.parametrize("array", ARRAYS)
def test_numpy_arrays_round_trip_with_dtype_and_shape(array: Any) -> None:
    """A numpy array comes back as an ndarray with the same dtype (byte order too), shape, data."""
    decoded = round_trip(array)
    assert type(decoded) is np.ndarray
    assert decoded.dtype == array.dtype
    assert decoded.dtype.str == array.dtype.str
    assert decoded.shape == array.shape
    assert same(decoded, array)
    assert decoded.flags.writeable


def test_equal_arrays_in_different_memory_layouts_encode_the_same() -> None:
    """C order, Fortran order and strided views of equal data give the same bytes."""
    base = np.arange(6.0).reshape(2, 3)
    assert encode(base) == encode(np.asfortranarray(base))
    assert encode(np.arange(12.0)[::2]) == encode(np.arange(0.0, 12.0, 2.0))


SCALARS: list[Any] = [
    pytest.param(np.int8(-5), id="int8"),
    pytest.param(np.int64(1), id="int64"),
    pytest.param(np.uint64((1 << 64) - 1), id="uint64-max"),
    pytest.param(np.float16(0.5), id="float16"),
    pytest.param(np.float32(NAN), id="float32-nan"),
    pytest.param(np.float64(0.1), id="float64"),
    pytest.param(np.bool_(True), id="bool"),
    pytest.param(np.complex64(1 - 2j), id="complex64"),
    pytest.param(np.str_("héllo"), id="str"),
    pytest.param(np.bytes_(b"ab"), id="bytes"),
    pytest.param(np.datetime64("2020-01-01T12:00"), id="datetime64"),
    pytest.param(np.timedelta64(5, "s"), id="timedelta64"),
]


@pytest.mark.parametrize("scalar", SCALARS)
def test_numpy_scalars_round_trip_with_their_type(scalar: Any) -> None:
    """A numpy scalar comes back as the same numpy scalar type, not a Python number."""
    assert tag_of(scalar) == "$npscalar"
    decoded = round_trip(scalar)
    assert type(decoded) is type(scalar)
    assert same(decoded, scalar)


@pytest.mark.parametrize("scalar", [np.str_(""), np.bytes_(b"")], ids=["str", "bytes"])
def test_empty_numpy_string_scalars_round_trip(scalar: Any) -> None:
    """Empty numpy string scalars (zero-width dtypes) round-trip too."""
    decoded = round_trip(scalar)
    assert type(decoded) is type(scalar)
    assert decoded == scalar


@pytest.mark.parametrize(
    "array",
    [np.array([1, "x", None], dtype=object), np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])],
    ids=["object", "structured"],
)
def test_numpy_arrays_without_fixed_size_plain_dtype_are_rejected(array: Any) -> None:
    """Object and structured numpy arrays are rejected, naming where they are."""
    with pytest.raises(UnsupportedValueError) as info:
        encode({"frame": [array]}, root="state")
    assert info.value.path == "state['frame'][0]"
    assert info.value.type_name == "numpy.ndarray"


def test_masked_arrays_are_not_silently_unmasked() -> None:
    """A masked array either comes back masked or is rejected: its mask is never dropped."""
    masked = np.ma.masked_array([1, 2, 3], mask=[False, True, False])
    try:
        data = encode(masked)
    except UnsupportedValueError:
        return
    decoded = decode(data)
    assert type(decoded) is type(masked)
    assert list(np.ma.getmaskarray(decoded)) == [False, True, False]


# ================================================================= pandas


def _frame() -> Any:
    return pd.DataFrame(
        {
            "ints": np.array([1, -2, 3], dtype=np.int64),
            "floats": [1.5, NAN, -0.0],
            "strings": ["a", "b", "héllo"],
            "objects": pd.Series(["x", 1, None], dtype=object, index=["r1", "r2", "r3"]),
            "flags": [True, False, True],
            "small": np.array([1, 2, 3], dtype=np.int8),
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )


def test_dataframe_round_trips_with_dtypes_and_index() -> None:
    """A DataFrame comes back equal, with the same column dtypes, labels and named index."""
    frame = _frame()
    decoded = round_trip(frame)
    assert type(decoded) is pd.DataFrame
    assert decoded.equals(frame)
    assert list(decoded.dtypes) == list(frame.dtypes)
    assert list(decoded.columns) == list(frame.columns)
    assert decoded.index.name == "row"
    assert list(decoded.index) == ["r1", "r2", "r3"]
    assert decoded.index.dtype == frame.index.dtype
    assert decoded["objects"].tolist()[:2] == ["x", 1]
    assert decoded["objects"].tolist()[2] is None


def test_dataframe_with_integer_index_round_trips() -> None:
    """A DataFrame with a named integer index comes back with that index."""
    frame = pd.DataFrame({"v": [0.5, 1.5]}, index=pd.Index([10, 20], name="id"))
    decoded = round_trip(frame)
    assert same(decoded, frame)
    assert decoded.index.dtype == np.int64


def test_dataframe_with_range_index_round_trips() -> None:
    """A DataFrame with the default RangeIndex comes back with a RangeIndex."""
    frame = pd.DataFrame({"a": [1, 2, 3]})
    decoded = round_trip(frame)
    assert same(decoded, frame)
    assert type(decoded.index) is pd.RangeIndex


def test_empty_dataframe_round_trips() -> None:
    """An empty DataFrame round-trips."""
    frame = pd.DataFrame()
    decoded = round_trip(frame)
    assert type(decoded) is pd.DataFrame
    assert decoded.shape == (0, 0)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": [1], "b": [2.0]}),
        pd.DataFrame(np.arange(6).reshape(2, 3)),
    ],
    ids=["string-labels", "default-range-labels"],
)
def test_dataframe_column_labels_keep_their_index_type(frame: Any) -> None:
    """The column-label index comes back with the same class and dtype (strict pandas equality)."""
    decoded = round_trip(frame)
    assert type(decoded.columns) is type(frame.columns)
    assert decoded.columns.dtype == frame.columns.dtype
    pd.testing.assert_frame_equal(decoded, frame)


def test_dataframe_equal_frames_encode_the_same() -> None:
    """Two equal DataFrames built separately give the same bytes."""
    assert encode(_frame()) == encode(_frame())


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1.0, NAN], index=pd.Index(["a", "b"], name="k"), name="v"),
        pd.Series([1, 2, 3], name="ints"),
        pd.Series(["x", "y"]),
        pd.Series([1, "two", None], dtype=object, name=("tuple", "name")),
    ],
    ids=["float-named-index", "int-range-index", "strings", "object-tuple-name"],
)
def test_series_round_trips(series: Any) -> None:
    """A Series comes back equal, with its dtype, name and index."""
    decoded = round_trip(series)
    assert type(decoded) is pd.Series
    assert same(decoded, series)
    assert type(decoded.name) is type(series.name)


# ============================================================ unsupported

UNSUPPORTED_PATHS: list[Any] = [
    pytest.param(
        {"items": [0, 1, 2, {"created": object()}]}, "state",
        "state['items'][3]['created']", id="nested-dicts-and-lists",
    ),
    pytest.param(
        {"items": [0, 1, 2, Record("r", [], object())]}, "state",
        "state['items'][3].created", id="dataclass-field",
    ),
    pytest.param(Record("r", [1, object()]), "rec", "rec.tags[1]", id="dataclass-list-field"),
    pytest.param(
        Model(name="m", payload={"x": object()}), "m", "m.payload['x']", id="pydantic-field"
    ),
    pytest.param(
        {"m": ExtraModel.model_validate({"kind": "k", "x_a": object()})}, "state",
        "state['m'].x_a", id="pydantic-extra-field",
    ),
    pytest.param(
        {"df": pd.DataFrame({"o": pd.Series([object()], dtype=object)})}, "state",
        "state['df']['o'][0]", id="inside-dataframe",
    ),
    pytest.param([0, [1, object()]], "value", "value[1][1]", id="lists"),
    pytest.param((1, object()), "value", "value[1]", id="tuple"),
    pytest.param({1: [object()]}, "value", "value[1][0]", id="int-key"),
    pytest.param({"$k": object()}, "value", "value['$k']", id="dollar-key"),
    pytest.param([b"x", {"a": object()}], "value", "value[1]['a']", id="beside-tagged"),
    pytest.param(object(), "value", "value", id="root"),
]


@pytest.mark.parametrize(("value", "root", "path"), UNSUPPORTED_PATHS)
def test_unsupported_values_report_their_path(value: Any, root: str, path: str) -> None:
    """An unsupported part raises UnsupportedValueError with its Python-syntax path."""
    with pytest.raises(UnsupportedValueError) as info:
        encode(value, root=root)
    assert info.value.path == path
    assert info.value.type_name == "object"
    assert path in str(info.value)


def test_unsupported_user_class_is_named_by_module_and_qualname() -> None:
    """type_name gives an unsupported class's module and qualified name."""
    with pytest.raises(UnsupportedValueError) as info:
        encode({"cfg": {"a": Opaque()}}, root="cfg")
    assert info.value.path == "cfg['cfg']['a']"
    assert info.value.type_name == "tests.artifacts.codec_fixtures.Opaque"
    assert "tests.artifacts.codec_fixtures.Opaque" in str(info.value)


def test_unsupported_dict_key_is_reported_as_a_key() -> None:
    """An unsupported dict key is reported as a key of its dict."""
    key = Opaque()
    with pytest.raises(UnsupportedValueError) as info:
        encode({"outer": {key: 1}})
    assert info.value.path == f"value['outer'] key {key!r}"


def test_unsupported_set_element_is_reported_as_an_element() -> None:
    """An unsupported set element is reported as an element of its set."""
    element = Opaque()
    with pytest.raises(UnsupportedValueError) as info:
        encode({"s": {element}})
    assert info.value.path == f"value['s'] element {element!r}"


def test_unsupported_value_error_is_an_input_error() -> None:
    """UnsupportedValueError is a user-input error (a PinrunError and an InputError)."""
    with pytest.raises(InputError):
        encode([object()])
    assert issubclass(UnsupportedValueError, PinrunError)


def test_time_zones_other_than_zoneinfo_and_fixed_offsets_are_rejected() -> None:
    """A datetime in a custom tzinfo class is rejected (it could not be rebuilt)."""

    class Custom(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(hours=1)

        def dst(self, when: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(0)

        def tzname(self, when: dt.datetime | None) -> str:
            return "CUSTOM"

    with pytest.raises(UnsupportedValueError) as info:
        encode({"when": dt.datetime(2020, 1, 1, tzinfo=Custom())})
    assert info.value.path == "value['when']"
    assert info.value.type_name == "datetime.datetime"


def _local_classes() -> list[Any]:
    @dataclasses.dataclass
    class LocalData:
        x: int

    class LocalEnum(enum.Enum):
        A = 1

    class LocalTuple(NamedTuple):
        x: int

    class LocalModel(pydantic.BaseModel):
        x: int

    return [LocalData(1), LocalEnum.A, LocalTuple(1), LocalModel(x=1)]


@pytest.mark.parametrize(
    "value", _local_classes(), ids=["dataclass", "enum", "namedtuple", "model"]
)
def test_classes_defined_inside_functions_are_rejected(value: Any) -> None:
    """Instances of a class defined inside a function are rejected: it cannot be imported back."""
    with pytest.raises(UnsupportedValueError) as info:
        encode({"x": [value]})
    assert info.value.path == "value['x'][0]"
    assert "<locals>" in info.value.type_name
    assert info.value.type_name.endswith(type(value).__qualname__)


def test_self_referencing_list_is_rejected() -> None:
    """A list that contains itself raises UnsupportedValueError, not RecursionError."""
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(UnsupportedValueError):
        encode(loop)


def test_self_referencing_dict_is_rejected() -> None:
    """A dict that contains itself raises UnsupportedValueError, not RecursionError."""
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(UnsupportedValueError):
        encode(loop)


def test_self_reference_through_tagged_values_is_rejected() -> None:
    """A cycle through a tuple or a dataclass raises UnsupportedValueError too."""
    inner: list[Any] = [b"x"]
    holder = (inner,)
    inner.append(holder)
    with pytest.raises(UnsupportedValueError) as info:
        encode(holder, root="state")
    assert info.value.path == "state"
    record = Record("r", [])
    record.tags.append(record)
    with pytest.raises(UnsupportedValueError):
        encode(record)


def _nest(depth: int, wrap: Callable[[Any], Any]) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = wrap(value)
    return value


@pytest.mark.parametrize(
    ("depth", "wrap"),
    [(300, lambda v: [v]), (300, lambda v: (v,)), (300, lambda v: {"k": v}), (5000, lambda v: [v])],
    ids=["lists-300", "tuples-300", "dicts-300", "lists-5000"],
)
def test_deeply_nested_values_round_trip_or_raise_unsupported(
    depth: int, wrap: Callable[[Any], Any]
) -> None:
    """A very deeply nested value either round-trips or raises UnsupportedValueError."""
    value = _nest(depth, wrap)
    try:
        data = encode(value)
    except UnsupportedValueError as exc:
        error = exc
    else:
        assert same(decode(data), value)
        return
    assert error.path == "value"


# ========================================================== register_type


def test_registered_type_round_trips() -> None:
    """A user class round-trips through its registered codec, stored as $ext."""
    codec.register_type(
        Temperature, "tests.codec.temperature", lambda t: t.kelvin, Temperature
    )
    value = Temperature(300.25)
    assert decode_tagged(encode(value)) == {"$ext": ["tests.codec.temperature", 300.25]}
    decoded = round_trip(value)
    assert type(decoded) is Temperature
    assert decoded == value
    nested = {"t": [value], "s": {value}}
    assert round_trip(nested) == nested


def test_registered_codec_may_return_tagged_values() -> None:
    """A registered encoder may return any supported value, tags included."""
    codec.register_type(
        Money, "tests.codec.money", lambda m: (m.cents, m.currency), lambda t: Money(*t)
    )
    decoded = round_trip(Money(250, "USD"))
    assert type(decoded) is Money
    assert (decoded.cents, decoded.currency) == (250, "USD")
    assert decode_tagged(encode(Money(250, "USD"))) == {
        "$ext": ["tests.codec.money", {"$tuple": [250, "USD"]}]
    }


def test_subclasses_use_the_base_class_codec() -> None:
    """An instance of an unregistered subclass is stored with its registered base's codec."""
    codec.register_type(
        Money, "tests.codec.money", lambda m: (m.cents, m.currency), lambda t: Money(*t)
    )
    assert decode_tagged(encode(Euro(5))) == {"$ext": ["tests.codec.money", {"$tuple": [5, "EUR"]}]}
    decoded = round_trip({"price": Euro(5)})["price"]
    assert isinstance(decoded, Money)
    assert (decoded.cents, decoded.currency) == (5, "EUR")


def test_decoding_an_unregistered_ext_name_gives_an_unloaded_value() -> None:
    """A stored $ext value whose codec is not registered here stays data, byte for byte."""
    data = b'{"$ext":["tests.codec.never-registered",1]}'
    value = decode(data)
    assert isinstance(value, UnloadedValue)
    assert value.type_name == "tests.codec.never-registered"
    assert encode(value) == data


def test_registering_a_taken_name_for_another_class_raises() -> None:
    """A codec name belongs to one class: registering it for another raises ValueError."""
    codec.register_type(TokenA, "tests.codec.token", lambda t: 0, lambda p: TokenA())
    with pytest.raises(ValueError, match=r"tests\.codec\.token"):
        codec.register_type(TokenB, "tests.codec.token", lambda t: 1, lambda p: TokenB())
    # The failed call registered nothing: TokenB is still unsupported, TokenA unchanged.
    with pytest.raises(UnsupportedValueError):
        encode(TokenB())
    assert type(round_trip(TokenA())) is TokenA


def test_registering_the_same_class_and_name_again_is_allowed() -> None:
    """Registering the same class under the same name again is harmless."""
    codec.register_type(TokenA, "tests.codec.token", lambda t: 0, lambda p: TokenA())
    codec.register_type(TokenA, "tests.codec.token", lambda t: 0, lambda p: TokenA())
    assert type(round_trip(TokenA())) is TokenA


@pytest.mark.parametrize("name", ["", None])
def test_registering_without_a_name_raises(name: Any) -> None:
    """A codec needs a non-empty string name."""
    with pytest.raises(ValueError, match="name"):
        codec.register_type(TokenB, name, lambda t: 1, lambda p: TokenB())


# ========================================================== undecodable


@pytest.mark.parametrize(
    "data",
    [
        b'{"$enum":["no_such_module_xyz:X","A"]}',
        b'{"$dataclass":["no_such_module_xyz:X",{}]}',
        b'{"$namedtuple":["no_such_module_xyz:X",[1]]}',
        b'{"$pydantic":["no_such_module_xyz.sub:X",{}]}',
        b'{"$dataclass":["tests.artifacts.codec_fixtures:NoSuchClass",{}]}',
        b'{"$enum":["tests.artifacts.codec_fixtures:Color.Inner","RED"]}',
        b'{"$dataclass":["os:sep",{}]}',
        b'{"$enum":["tests.artifacts.codec_fixtures:Color","PURPLE"]}',
        b'{"$dataclass":["tests.artifacts.codec_fixtures:Color",{}]}',
        b'{"$namedtuple":["subprocess:Popen",[["sh","-c","exit 1"]]]}',
        b'{"$dataclass":["subprocess:Popen",{"args":["sh"]}]}',
        b'{"$pydantic":["os:system",{"command":"true"}]}',
        b'{"$flag":["subprocess:Popen",1]}',
        b'{"$enum":["pinrun.no_such:X","A"]}',
        b'{"$dataclass":["",{}]}',
        b'{"$dataclass":[":",{}]}',
        b'{"$dataclass":[7,{}]}',
    ],
    ids=[
        "enum", "dataclass", "namedtuple", "pydantic", "missing-class", "missing-nested",
        "not-a-class", "missing-member", "wrong-kind", "popen-namedtuple", "popen-dataclass",
        "os-system", "popen-flag", "unloaded-module", "empty-ref", "colon-ref", "int-ref",
    ],
)
def test_values_naming_classes_not_loaded_stay_data(data: bytes) -> None:
    """A class that is not loaded, or not of the declared kind, decodes to an UnloadedValue."""
    value = decode(data)
    assert isinstance(value, UnloadedValue)
    assert encode(value) == data  # re-encodes to the same bytes, so to the same digest
    assert value == decode(data)
    assert hash(value) == hash(decode(data))
    assert "unloaded" in repr(value)


def test_unloaded_values_nest_and_keep_their_digest() -> None:
    """An unloaded value inside ordinary data re-encodes, and hashes, as it was stored."""
    data = encode({"a": [1, ("t",)]})[:-1] + b',"b":{"$dataclass":["no_such_module_xyz:X",' \
        b'{"when":{"$date":"2024-01-02"}}]}}'
    value = decode(data)
    assert value["a"] == [1, ("t",)]
    assert isinstance(value["b"], UnloadedValue)
    assert value["b"].fields == {"when": {"$date": "2024-01-02"}}
    assert encode(value) == data


def test_decoding_never_imports_the_module_a_value_names(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A module named by stored data is not imported, even when it is importable."""
    (tmp_path / "pinrun_side_effect_mod.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('x')\n"
        "import dataclasses\n@dataclasses.dataclass\nclass D:\n    x: int = 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for tag in ("$dataclass", "$pydantic"):
        value = decode(b'{"%s":["pinrun_side_effect_mod:D",{"x":1}]}' % tag.encode())
        assert isinstance(value, UnloadedValue)
    value = decode(b'{"$enum":["pinrun_side_effect_mod:D","x"]}')
    assert isinstance(value, UnloadedValue)
    assert "pinrun_side_effect_mod" not in sys.modules
    assert not (tmp_path / "pinrun_side_effect_mod.ran").exists()


def test_a_loaded_class_is_rebuilt_once_its_module_is_imported() -> None:
    """The same bytes give the real type where the class is loaded (the user's own code)."""
    data = encode(Point(1, 2))
    assert type(decode(data)) is Point


def test_a_dataclass_with_fields_it_does_not_have_stays_data() -> None:
    """Stored field names must be the class's fields: no attribute named by data is set."""
    ref = "tests.artifacts.codec_fixtures:Point"
    value = decode(b'{"$dataclass":["%s",{"__class__":1,"x":1}]}' % ref.encode())
    assert isinstance(value, UnloadedValue)


@pytest.mark.parametrize(
    "data", [b'{"$nope":1}', b'{"$":1}', b'[{"$future_tag":[1,2]}]'], ids=["nope", "bare", "nested"]
)
def test_unknown_tags_raise_undecodable(data: bytes) -> None:
    """A tag this version does not know raises UndecodableValueError."""
    with pytest.raises(UndecodableValueError, match="unknown tag"):
        decode(data)


def test_undecodable_value_error_is_a_store_error() -> None:
    """UndecodableValueError is a StoreError (exit 3) with a reason."""
    with pytest.raises(StoreError) as info:
        decode(b'{"$nope":1}')
    assert isinstance(info.value, UndecodableValueError)
    assert "$nope" in info.value.reason
    assert info.value.exit_code == 3


json_like: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


@PROPERTY_SETTINGS
@given(st.one_of(values, json_like))
def test_compiled_plain_check_agrees_with_python(value: Any) -> None:
    """The C speedup, where built, answers exactly as the pure-Python check does."""
    from pinrun.artifacts import codec as codec_module

    for container in (value, [value], {"k": value}):
        if type(container) in (dict, list):
            expected = codec_module._plain_python(container)
            assert codec_module._plain(container) == expected
    assert codec_module._plain([1.5, float("inf")]) is False
    assert codec_module._plain({"a": [None, True, 2, "s", {"b": []}]}) is True


def test_compiled_plain_check_is_built_where_a_compiler_is() -> None:
    """setup.py builds the C speedup on machines with a C compiler (as CI's)."""
    import shutil

    from pinrun.artifacts import codec as codec_module

    built = codec_module._plain is not codec_module._plain_python
    assert built == (shutil.which("cc") is not None or shutil.which("gcc") is not None)


def test_pandas_categoricals_keep_categories_and_order() -> None:
    """A categorical keeps its category list, their order, `ordered`, and missing values."""
    series = pd.Series(pd.Categorical(["a", "b", "a", None], categories=["b", "a", "z"],
                                      ordered=True), name="grade")
    pd.testing.assert_series_equal(round_trip(series), series)
    frame = pd.DataFrame({"k": pd.Categorical(["x", "y"]), "v": [1, 2]})
    pd.testing.assert_frame_equal(round_trip(frame), frame)


def test_pandas_missing_values_in_extension_columns_are_refused_clearly() -> None:
    """A nullable column holding pd.NA is refused with a clear error, never stored wrongly."""
    frame = pd.DataFrame({"n": pd.array([1, None], dtype="Int64")})
    with pytest.raises(UnsupportedValueError):
        encode(frame, root="state")


def test_integers_too_long_to_write_are_unsupported_with_their_path() -> None:
    """An int over Python's digit limit is an UnsupportedValueError naming where it is."""
    with pytest.raises(UnsupportedValueError) as info:
        encode({"total": [1, 10**5000]}, root="state")
    assert info.value.path == "state['total'][1]"
    assert "digits" in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b'{"$int":"' + b"9" * 5000 + b'"}',
        b'{"$decimal":"not a number"}',
        b'{"$decimal":7}',
        b'{"$ndarray":["|O",[1],"AAAAAAAAAAA="]}',
        b'{"$ndarray":["|V8",[1],"AAAAAAAAAAA="]}',
        b'{"$ndarray":["<i8,<f8",[1],"AAAAAAAAAAAAAAAAAAAAAA=="]}',
        b'{"$ndarray":["<i8",[-1],""]}',
        b'{"$ndarray":["|S0",[1000000000,1000000000],""]}',
        b'{"$npscalar":["|O","AAAAAAAAAAA="]}',
        b'{"$timedelta":[1e300,0,0]}',
        b'{"$set":[[1,2]]}',
        b'{"$map":[[1]]}',
        b'{"$datetime":["x",null,0]}',
        b'{"$datetime":["2024-01-01T00:00:00",["zone","../../etc/passwd"],0]}',
        b'{"$complex":[]}',
        b'{"$uuid":"zz"}',
        b'{"$ext":5}',
        b'{"$bytes":"***"}',
        b"[" * 2000 + b"]" * 2000,
        b'{"$tuple":[' * 1000 + b"]}" * 1000,
    ],
    ids=[
        "huge-int", "decimal-text", "decimal-int", "object-array", "void-array",
        "structured-array", "negative-shape", "empty-bomb", "object-scalar", "timedelta",
        "unhashable-set", "map-pair", "datetime", "zone-path", "complex", "uuid", "ext",
        "base64", "deep-list", "deep-tags",
    ],
)
def test_malformed_payloads_are_one_undecodable_error(data: bytes) -> None:
    """Whatever a crafted payload holds, decoding raises only UndecodableValueError."""
    with pytest.raises(UndecodableValueError):
        decode(data)


@PROPERTY_SETTINGS
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
    | st.sampled_from(["$int", "$ndarray", "|O", "<i8", "os:system", "subprocess:Popen",
                       "tests.artifacts.codec_fixtures:Point", "AAAA", "x:y.z"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from([*TAG_DECODERS, "$ext", "$x", "a"]),
                      children, min_size=1, max_size=1)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=25,
))
def test_decoding_crafted_structures_raises_only_pinrun_errors(structure: Any) -> None:
    """Any JSON structure, tags included, decodes or raises a PinrunError: nothing else."""
    import orjson

    try:
        data = orjson.dumps(structure)
    except (TypeError, orjson.JSONEncodeError):
        return  # an int past 64 bits: not a structure stored JSON can hold
    try:
        value = decode(data)
    except PinrunError:
        return
    encode(value)  # whatever decoded can be written again
