"""The C speedups survive hostile input: crafted bytes, wrong types, Python code run mid-loop."""

from __future__ import annotations

import contextlib
import copy
import datetime
import gc
import pickle
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import _speedups, codec
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.snapshot_pages import Inline

# Bytes made mostly of what the scanners look at, so crafted shapes come up often.
_JSONISH = st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b",", b":", b"$",
                                     b"1", b"a", b" ", b"\x00", b"\xe9", b"\xff", b'\\"',
                                     b'"k":', b'{"', b"null"]), max_size=40).map(b"".join)
_BYTES = _JSONISH | st.binary(max_size=60)
_KEYS = st.text(max_size=6) | st.sampled_from(["$", "$a", 'q"', "b\\", "\t", "\ud800", "\u00e9",
                                               "\u2028", "\x7f", ""])


class _Hashed:
    """A dict key hashed as ``name`` (equal to it if ``equal``) that runs ``action`` whenever
    it is hashed or compared."""

    def __init__(self, name: str, action: Callable[[], object], *, equal: bool = False) -> None:
        self.name = name
        self.action = action
        self.equal = equal

    def __hash__(self) -> int:
        self.action()
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        self.action()
        return self.equal and other == self.name


def _inline(key: str, payload: bytes) -> Inline:
    quoted = orjson.dumps(key)
    return Inline(quoted + b":" + payload, len(quoted) + 1, zlib.crc32(quoted))


def _armed_plan(change: Callable[[list[Any]], None]) -> tuple[list[Any], dict[Any, Any]]:
    """Keys and entries for page_plan whose first key runs ``change(keys)`` when hashed."""
    names = [f"k{i:03d}" + "x" * 50 for i in range(40)]
    entries: dict[Any, Any] = {name: _inline(name, b"1") for name in names}
    keys: list[Any] = list(names)
    armed: list[bool] = []

    def run() -> None:
        if armed:
            armed.clear()
            change(keys)

    keys[0] = _Hashed(names[0], run, equal=True)  # (the list holds the only reference)
    armed.append(True)
    return keys, entries


def test_page_plan_refuses_a_list_of_keys_emptied_by_a_lookup() -> None:
    """A key whose __hash__ empties the list page_plan reads is a RuntimeError, not a crash."""
    keys, entries = _armed_plan(list.clear)
    with pytest.raises(RuntimeError, match="changed size"):
        _speedups.page_plan(keys, entries, 0, 1 << 20)
    assert keys == []


def test_page_plan_holds_a_key_that_a_lookup_drops_from_the_list() -> None:
    """A key whose __hash__ replaces every key in the list (freeing them) leaves page_plan whole."""

    def replace(keys: list[Any]) -> None:
        keys[:] = [f"new{i}" for i in range(len(keys))]

    # (Each key is read once: the page of the first holds its entry; the next key is new.)
    for mask in (0, 0xFFFFFFFF):  # every key ends a page; no key does
        keys, entries = _armed_plan(replace)
        with pytest.raises(KeyError, match="new1"):
            _speedups.page_plan(keys, entries, mask, 1 << 20)
        keys, entries = _armed_plan(replace)
        with pytest.raises(KeyError, match="new1"):
            _speedups.page_plan(keys, entries, mask, 1 << 20, {})


def test_inline_entries_hold_the_key_a_lookup_may_drop() -> None:
    """A payload key whose __eq__ empties the state mid-loop raises, as a dict iteration does."""
    state = {"".join(["victim", "x" * 60]): 1, **{f"other{i}": i for i in range(10)}}
    victim = next(iter(state))
    armed: list[bool] = []

    def empty() -> None:
        if armed:
            state.clear()

    payloads: dict[Any, bytes] = {_Hashed(victim, empty): b"1"}
    del victim  # the state's reference is the only one left
    armed.append(True)
    with pytest.raises(RuntimeError, match="changed size"):
        _speedups.inline_entries(state, payloads, 100)


def test_inline_entries_keep_a_value_a_lookup_replaces() -> None:
    """A payload key whose __eq__ replaces the state's values leaves the entries whole."""
    state: dict[str, Any] = {f"k{i}": "v" * 30 + str(i) for i in range(10)}

    armed: list[bool] = []

    def replace() -> None:
        for key in state if armed else ():
            state[key] = b"now bytes"

    payloads: dict[Any, bytes] = dict.fromkeys(state, b"1")
    payloads[_Hashed("k0", replace)] = b"2"
    armed.append(True)
    made = _speedups.inline_entries(state, payloads, 100)
    assert made is not None
    entries, rest = made
    assert sorted([*entries, *rest]) == sorted(state)


@settings(max_examples=400, deadline=None)
@given(_BYTES)
def test_the_scanners_read_crafted_bytes_within_bounds(payload: bytes) -> None:
    """split_values and page_cuts answer None or values that are slices of the input."""
    values = _speedups.split_values(payload)
    if values is not None:
        assert all(value in payload for value in values)
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict and len(obj) == len(values):
            assert [orjson.loads(value) for value in values] == list(obj.values())
    for mask in (0, 1, 0xFFFFFFFF, 1 << 40):
        cut = _speedups.page_cuts(payload, mask)
        if cut is not None:
            count, cuts = cut
            assert count > 0
            assert all(0 < end < len(payload) for _, end in cuts)
            assert all(payload[end:end + 1] in (b",", b"}") for _, end in cuts)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _BYTES, max_size=6))
def test_join_members_joins_only_what_parses_back_to_the_same_map(
        encodings: dict[str, bytes]) -> None:
    """join_members' object, when it parses, holds exactly the keys and the values given."""
    joined = _speedups.join_members(encodings)
    if joined is None:
        return
    assert all(key[:1] != "$" for key in encodings)
    try:
        obj = orjson.loads(joined)
    except orjson.JSONDecodeError:
        return
    assert type(obj) is dict
    assert list(obj) == list(encodings)
    assert obj == {key: orjson.loads(raw) for key, raw in encodings.items()}


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _JSONISH, max_size=4))
def test_decode_many_is_none_or_one_decode_per_value(crafted: dict[str, bytes]) -> None:
    """decode_many of crafted stored encodings is None or exactly what decode gives each."""
    encodings = {f"k{i:03d}": codec.encode(i) for i in range(70)}
    encodings.update(crafted)
    decoded = codec.decode_many(encodings)
    try:
        expected = {key: codec.decode(raw) for key, raw in encodings.items()}
    except codec.UndecodableValueError:
        assert decoded is None
        return
    assert decoded is None or decoded == expected


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, st.binary(max_size=8), max_size=8), st.integers(-1, 9))
def test_inline_entries_make_the_python_entry_or_leave_the_key(
        payloads: dict[str, bytes], limit: int) -> None:
    """Each key made inline in C is the entry the Python code makes; the rest are listed."""
    state: dict[str, Any] = dict.fromkeys(payloads, 0)
    made = _speedups.inline_entries(state, payloads, limit)
    assert made is not None
    entries, rest = made
    assert sorted([*entries, *rest]) == sorted(state)
    for key, entry in entries.items():
        reference = _inline(key, payloads[key])
        assert len(payloads[key]) <= limit
        assert (entry.member, entry.start, entry.cut, entry.payload) == (
            reference.member, reference.start, reference.cut, payloads[key])
        assert _speedups.page_plan([key], {key: entry}, 0, 1 << 20) == [
            b"{" + reference.member + b"}"]


@pytest.mark.parametrize("args", [
    (b"x", -1, 0), (b"x", 2, 0), (b"x", 0, -1), (b"x", 0, 1 << 32), (b"x", 1 << 70, 0),
    ("x", 0, 0), (bytearray(b"x"), 0, 0), (memoryview(b"x"), 0, 0), (b"x", 0.5, 0)])
def test_inline_refuses_what_it_cannot_hold(args: tuple[Any, ...]) -> None:
    """Inline() refuses a start outside its member, a cut past 32 bits, or a member not bytes."""
    with pytest.raises((TypeError, ValueError, OverflowError)):
        Inline(*args)


def test_inline_takes_a_bytes_subclass_as_plain_bytes() -> None:
    """A bytes subclass member is copied into plain bytes: head and payload as given."""
    made = Inline(type("Sub", (bytes,), {})(b'"k":[1]'), 4, 7)
    assert (made.member, made.start, made.payload, made.cut) == (b'"k":[1]', 4, b"[1]", 7)
    assert type(made.member) is bytes
    assert repr(made) == "Inline(b'\"k\":[1]')"


_WRONG = [None, "text", 1, 1.5, bytearray(b"{}"), memoryview(b"{}"), [b"{}"], (b"{}",),
          {"a": "str value"}, {1: b"1"}, type("D", (dict,), {})(a=b"1")]


@pytest.mark.parametrize("wrong", _WRONG)
def test_each_function_refuses_or_declines_an_argument_of_the_wrong_type(wrong: Any) -> None:
    """Every C function given the wrong type raises TypeError or KeyError, or declines."""
    calls: list[Callable[[], Any]] = [
        lambda: _speedups.split_values(wrong),
        lambda: _speedups.join_members(wrong),
        lambda: _speedups.inline_sizes(wrong),
        lambda: _speedups.page_cuts(wrong, 0),
        lambda: _speedups.page_cuts(b"{}", wrong),
        lambda: _speedups.inline_entries(wrong, {}, 1),
        lambda: _speedups.inline_entries({}, wrong, 1),
        lambda: _speedups.inline_entries({}, {}, wrong),
        lambda: _speedups.page_plan(wrong, {}, 0, 1),
        lambda: _speedups.page_plan([], wrong, 0, 1),
        lambda: _speedups.page_plan([], {}, wrong, 1),
        lambda: _speedups.digest_map(wrong, Digest),
        lambda: _speedups.digest_map({"a": wrong}, Digest),
        lambda: _speedups.digest_map({}, wrong),
        lambda: _speedups.new_digest(wrong, b"x" * 32),
        lambda: _speedups.sorted_keys(wrong),
        lambda: _speedups.small_digest(Digest, wrong, b""),
        lambda: _speedups.small_digest(Digest, b"", wrong),
        lambda: _speedups.small_digest(wrong, b"", b""),
        lambda: _speedups.iso_time(wrong),
        *[_put_map_with(wrong, at) for at in range(8)],
    ]
    for call in calls:
        try:
            answer = call()
        except (TypeError, KeyError, AttributeError, OverflowError):
            # (KeyError: page_plan's keys are not in the entries; AttributeError: iso_time
            # asks what is not a datetime for its isoformat; OverflowError: put_map's limits)
            continue
        assert answer is None or type(answer) in (list, tuple)


def _put_map_with(wrong: Any, at: int) -> Callable[[], Any]:
    """put_map with its argument ``at`` replaced by ``wrong``."""
    def call() -> Any:
        args: list[Any] = [{"a": _inline("a", b"1")}, {}, {}, set(), Digest,
                           (Kind.VALUE, Kind.VALUE.tag, Kind.TREE, Kind.TREE.tag),
                           (4096, 4096, 1 << 26), compute_digest]
        args[at] = wrong
        return _speedups.put_map(*args)
    return call


def test_iso_time_of_what_is_not_a_datetime_is_its_isoformat_or_an_error() -> None:
    """iso_time of anything but a datetime is what its isoformat method answers (a date's),
    or AttributeError."""
    import datetime as dt

    assert _speedups.iso_time(dt.date(2020, 1, 2)) == "2020-01-02"
    with pytest.raises(AttributeError):
        _speedups.iso_time(b"2020")


def test_put_map_survives_python_code_run_while_it_works() -> None:
    """put_map's hash of a large value calls back into Python: a callback that empties the
    entries, the kept digests and the queue, or raises, leaves no broken state (the entries
    were copied first; an error is the callback's)."""
    entries: dict[str, Any] = {"a": _inline("a", b"1"), "b": _inline("b", b'"' + b"x" * 2000
                                                                      + b'"')}
    known: dict[bytes, Any] = {}
    pending: dict[bytes, Any] = {}

    def meddling(kind: Kind, payload: bytes) -> Digest:
        entries.clear()
        known.clear()
        pending.clear()
        return compute_digest(kind, payload)

    kinds = (Kind.VALUE, Kind.VALUE.tag, Kind.TREE, Kind.TREE.tag)
    made = _speedups.put_map(dict(entries), known, pending, set(), Digest, kinds,
                             (4096, 4096, 1 << 26), meddling)
    assert made is not None
    tree, count, _ = made
    assert count == 3
    assert tree.raw in pending

    def failing(kind: Kind, payload: bytes) -> Digest:
        raise RuntimeError("no")

    entries = {"b": _inline("b", b'"' + b"x" * 2000 + b'"')}
    pending = {}
    with pytest.raises(RuntimeError):
        _speedups.put_map(entries, {}, pending, set(), Digest, kinds, (4096, 4096, 1 << 26),
                          failing)
    assert pending == {}


def test_page_plan_names_a_key_missing_from_the_entries() -> None:
    """A key with no entry is a KeyError (also inside a page), not a crash."""
    with pytest.raises(KeyError):
        _speedups.page_plan(["a", "b"], {"a": _inline("a", b"1")}, 0xFF, 1 << 20)
    with pytest.raises(KeyError):
        not_str: list[Any] = [1, 2]
        _speedups.page_plan(not_str, {}, 0, 1)
    with pytest.raises((OverflowError, ValueError)):
        _speedups.page_plan([], {}, -1, 1)


def test_huge_and_negative_sizes_are_refused_or_harmless() -> None:
    """A limit or split past Py_ssize_t is an OverflowError; a negative one keeps nothing inline."""
    with pytest.raises(OverflowError):
        _speedups.inline_entries({}, {}, 1 << 80)
    with pytest.raises(OverflowError):
        _speedups.page_plan([], {}, 0, 1 << 80)
    assert _speedups.inline_entries({"a": 1}, {"a": b"1"}, -5) == ({}, ["a"])
    entry = _inline("a", b"1")
    assert _speedups.page_plan(["a"], {"a": entry}, 0, -1) == [("a",)]


def test_deep_nesting_is_scanned_without_recursion() -> None:
    """A million nested brackets are scanned in a loop (no C stack), and declined by orjson."""
    deep = b"[" * 1_000_000 + b"]" * 1_000_000
    assert _speedups.split_values(b'{"a":' + deep + b"}") == [deep]
    assert _speedups.page_cuts(b'{"a":' + deep + b"}", 0) == (1, [(0, len(deep) + 5)])
    assert _speedups.join_members({"a": deep}) == b'{"a":' + deep + b"}"
    encodings = {f"k{i:03d}": b"1" for i in range(70)}
    encodings["k000"] = deep
    assert codec.decode_many(encodings) is None


_ZONE = datetime.timezone(datetime.timedelta(hours=1))


def _calls() -> list[Callable[[], Any]]:
    """One call of each C function, on a fresh pick of its inputs, answering and failing."""
    wide: dict[str, Any] = {f"k{i:03d}": i for i in range(80)}
    int_keyed: Any = {1: 2}
    payloads = {key: codec.encode(value) for key, value in wide.items()}
    payloads["\u00e9t\u00e9"] = b"[1]"
    wide["\u00e9t\u00e9"] = [1]
    entries, _ = _speedups.inline_entries(wide, payloads, 100) or ({}, [])
    keys = sorted(entries)
    whole = codec.encode(wide)
    digests = {key: compute_digest(Kind.VALUE, raw) for key, raw in payloads.items()}
    kinds = (Kind.VALUE, Kind.VALUE.tag, Kind.TREE, Kind.TREE.tag)
    return [
        lambda: _speedups.split_values(whole),
        lambda: _speedups.split_values(b'{"a":[}'),
        lambda: _speedups.page_cuts(whole, 3),
        lambda: _speedups.page_cuts(b'{"a\\"":1}', 3),
        lambda: _speedups.join_members(payloads),
        lambda: _speedups.join_members({"a": b"1,"}),
        lambda: _speedups.digest_map(digests, Digest),
        lambda: _speedups.digest_map({**digests, "$a": digests["b"]}, Digest),
        lambda: _speedups.new_digest(Digest, b"x" * 32),
        lambda: _speedups.small_digest(Digest, b"value\0", whole[:900]),
        lambda: _speedups.small_digest(Digest, b"value\0", whole),
        lambda: _speedups.iso_time(datetime.datetime.now(datetime.UTC)),
        lambda: _speedups.iso_time(datetime.datetime(2020, 1, 1, tzinfo=_ZONE)),
        lambda: _speedups.put_map(entries, {}, {}, set(), Digest, kinds, (4096, 4096, 1 << 26),
                                  compute_digest),
        lambda: _speedups.put_map({**entries, "$a": digests["b"]}, {}, {}, set(), Digest, kinds,
                                  (4096, 4096, 1 << 26), compute_digest),
        lambda: _speedups.inline_entries(wide, payloads, 100),
        lambda: _speedups.inline_entries(int_keyed, {}, 100),
        lambda: _speedups.inline_sizes(entries),
        lambda: _speedups.page_plan(keys, entries, 3, 200),
        lambda: _speedups.page_plan(["missing"], entries, 3, 200),
        lambda: [(entry.member, entry.payload, entry.start, repr(entry))
                 for entry in entries.values()],
        lambda: Inline(b'"k":1', 4, 1),
        lambda: Inline(b'"k":1', 9, 1),
    ]


@pytest.mark.slow
def test_repeated_calls_leak_neither_references_nor_memory() -> None:
    """Each C function called 20,000 times (answering and failing) keeps memory flat."""
    calls = _calls()

    def run(times: int) -> None:
        for _ in range(times):
            for call in calls:
                with contextlib.suppress(KeyError, ValueError):
                    call()

    run(200)  # warm caches (interned strings, free lists) before measuring
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(20_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after 20,000 rounds of calls"


def test_an_inline_entry_copies_and_pickles_as_the_python_one_does() -> None:
    """copy, deepcopy and pickle give an equal Inline (the pure-Python class allows all three)."""
    made = _speedups.inline_entries({"\u00e9": 1}, {"\u00e9": b"[1]"}, 100)
    assert made is not None
    for entry in (made[0]["\u00e9"], Inline(b'"k":{"a":1}', 4, 0xFFFFFFFF)):
        for copied in (copy.copy(entry), copy.deepcopy(entry),
                       pickle.loads(pickle.dumps(entry))):
            assert type(copied) is type(entry)
            assert (copied.member, copied.start, copied.cut, copied.payload) == (
                entry.member, entry.start, entry.cut, entry.payload)


def test_members_match_survives_hostile_keys() -> None:
    """members_match refuses what is not a list of str keys and a dict of bytes, and a key
    whose __eq__ runs code while it is looked up cannot free what it reads."""
    whole = b'{"a":1,"b":2}'
    assert _speedups.members_match(whole, ["a", "b"], {"a": b"1", "b": b"2"})
    odd_keys: list[Any] = ["a", 1]
    assert not _speedups.members_match(whole, odd_keys, {"a": b"1", 1: b"2"})  # type: ignore[dict-item]
    assert not _speedups.members_match(whole, ["a", "b"], {"a": b"1", "b": "2"})  # type: ignore[dict-item]
    assert not _speedups.members_match(whole[:-1], ["a", "b"], {"a": b"1", "b": b"2"})
    assert not _speedups.members_match(whole, ["a"], {"a": b"1"})
    keys: list[str] = ["a", "b"]
    encodings: dict[Any, Any] = {"a": b"1"}

    def drop_all() -> None:
        keys.clear()
        encodings.clear()

    encodings[_Hashed("b", drop_all)] = b"2"
    assert not _speedups.members_match(whole, keys, encodings)
    with pytest.raises(TypeError):
        _speedups.members_match("x", [], {})  # type: ignore[arg-type]


class _Named(Digest):
    """A Digest subclass: digest_map declines it."""

    __slots__ = ()


@given(st.dictionaries(_KEYS, st.binary(max_size=4), max_size=6), st.booleans())
def test_digest_map_is_the_codecs_map_tree_or_declines(entries: dict[str, bytes],
                                                       subclass: bool) -> None:
    """digest_map writes the bytes codec.encode writes for the map tree, for any keys
    (escaped, '$', non-ASCII, surrogates: it declines those it cannot write as they are),
    and declines a value that is not exactly a Digest."""
    digests = {key: compute_digest(Kind.VALUE, raw) for key, raw in entries.items()}
    if subclass and digests:
        first = next(iter(digests))
        digests[first] = _Named(digests[first].raw)
    made = _speedups.digest_map(digests, Digest)
    if subclass and digests:
        assert made is None  # (the codec itself refuses to store a Digest subclass)
        return
    if made is not None:
        assert made == codec.encode({"type": "map", "entries": dict(digests)})
        assert all(key[:1] != "$" for key in digests)
    assert codec.encode_digest_map({"type": "map"}, "entries", digests) == \
        codec.encode({"type": "map", "entries": dict(digests)})


def test_digest_map_declines_a_digest_whose_raw_is_not_32_bytes() -> None:
    """A Digest made around the checks (object.__new__) with odd raw bytes is declined."""
    odd = object.__new__(Digest)
    object.__setattr__(odd, "raw", b"short")
    assert _speedups.digest_map({"a": odd}, Digest) is None
    missing = object.__new__(Digest)  # (no raw at all)
    assert _speedups.digest_map({"a": missing}, Digest) is None


def test_new_digest_is_the_digest_compute_digest_made_before() -> None:
    """new_digest makes what object.__new__ and object.__setattr__ made: equal, hashed the
    same, immutable, pickled the same."""
    raw = compute_digest(Kind.TREE, b"{}").raw
    made = _speedups.new_digest(Digest, raw)
    assert type(made) is Digest
    assert made == Digest(raw)
    assert hash(made) == hash(Digest(raw))
    assert made.raw is raw
    assert pickle.loads(pickle.dumps(made)) == made
    with pytest.raises(AttributeError):
        made.raw = b"y" * 32
    assert compute_digest(Kind.TREE, b"{}") == Digest(raw)
