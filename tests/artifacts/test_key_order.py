"""Keys already in sorted order are used as they are (no sort), with the same results."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import _speedups, codec
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.snapshot_pages import Entry, store_entries
from pinrun.artifacts.trees import store_snapshot

_KEYS = st.text(max_size=5) | st.sampled_from(["a", "ab", "b", "\u00e9", "\U0001f600", "\ud7ff",
                                               "\ue000", "z\u00e9", "Z", "", "a\x00"])


@given(st.lists(_KEYS, max_size=12))
def test_in_order_is_sorted_order(keys: list[str]) -> None:
    """in_order (C) says yes exactly when the keys are as sorted() puts them."""
    mapping = dict.fromkeys(keys, 1)
    assert _speedups.in_order(mapping) == (list(mapping) == sorted(mapping))
    assert codec.sorted_keys(mapping) == sorted(mapping)


@settings(max_examples=300, deadline=None)
@given(st.lists(_KEYS, max_size=300, unique=True), st.lists(_KEYS, max_size=80),
       st.integers(0, 300), st.sampled_from(["in order", "shuffled", "reversed"]))
def test_sorted_keys_is_sorted_whatever_few_keys_are_out_of_place(
        keys: list[str], others: list[str], at: int, order: str) -> None:
    """sorted_keys (C) gives sorted()'s list: a run in order with others put anywhere (a
    state: its inputs first, keys added after), few or many, or no order at all."""
    run = sorted(keys)
    if order == "shuffled":
        run = sorted(run, key=lambda key: hash(key) % 7)
    elif order == "reversed":
        run.reverse()
    mapping = dict.fromkeys([*others[: at % 9], *run[:at], *others[at % 9:], *run[at:]], 1)
    made = _speedups.sorted_keys(mapping)
    assert made == sorted(mapping)
    assert codec.sorted_keys(mapping) == sorted(mapping)


def test_sorted_keys_of_a_state_places_its_inputs() -> None:
    """A wide state with its inputs first and a key added at the end."""
    state = {"keys": 1, "zz": 2, **{f"k{i:06d}": i for i in range(1000)}, "total": 3, "a": 4}
    assert _speedups.sorted_keys(state) == sorted(state)
    assert _speedups.sorted_keys({}) == []
    assert _speedups.sorted_keys({"a": 1, 2: 2}) is None
    assert _speedups.sorted_keys({"b": 1, type("S", (str,), {})("a"): 2}) is None


def test_in_order_refuses_keys_that_are_not_str() -> None:
    """A key of another type (a str subclass too) is never taken as in order."""
    assert not _speedups.in_order({1: 1, 2: 2})
    assert not _speedups.in_order({"a": 1, type("S", (str,), {})("b"): 2})
    assert _speedups.in_order({})


def test_encode_many_in_either_order() -> None:
    """A wide map encodes to the same bytes per key whether built in key order or not, in
    the map's own order."""
    forward = {f"k{i:03d}": {"i": i} for i in range(100)}
    backward = dict(reversed(forward.items()))
    for mapping in (forward, backward):
        many = codec.encode_many(mapping)
        assert many is not None
        assert list(many) == list(mapping)
        assert many == {key: codec.encode(value) for key, value in mapping.items()}


class _Sink:
    """Objects by digest, in memory."""

    def __init__(self) -> None:
        self.objects: dict[Digest, bytes] = {}

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        found = compute_digest(kind, payload)
        self.objects[found] = payload
        return found


def test_a_snapshot_in_either_order_is_the_same_tree() -> None:
    """A paged snapshot's tree does not depend on the order its keys were inserted in."""
    forward = {f"k{i:05d}": {"id": i, "name": f"item {i}"} for i in range(5000)}
    backward = dict(reversed(forward.items()))
    digests = [store_snapshot(_Sink(), mapping) for mapping in (forward, backward)]
    assert digests[0] == digests[1]
    entries: dict[str, Entry] = {}
    store_snapshot(_Sink(), forward, entries_out=entries)
    assert store_entries(_Sink(), entries) == digests[0]
