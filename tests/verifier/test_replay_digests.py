"""A replay digests each step's outputs as recording stores them, storing nothing: the
few-inline-values shortcut in C (value_digests.digest_few_inline) against the general
path (trees.store_snapshot into the replay's sink), and the read-back of what it made."""

from __future__ import annotations

from typing import Any

import pytest

from pinrun.artifacts import codec, trees
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.snapshot_pages import INLINE_LIMIT
from pinrun.artifacts.store import Store
from pinrun.engine import value_digests
from pinrun.engine.value_digests import KEPT_PAYLOAD, digest_few_inline
from pinrun.errors import MissingObjectError
from pinrun.verifier.replayer import _DigestSink

SMALL: dict[str, Any] = {"total": 10.5, "items": [{"sku": "X", "qty": 2}], "region": "EU",
                         "none": None, "flag": True}


def _general(state: dict[str, Any], payloads: dict[str, bytes]
             ) -> tuple[Digest, dict[bytes, tuple[Kind, bytes | None]]]:
    sink = _DigestSink()
    return trees.store_snapshot(sink, state, payloads=payloads), sink.objects


def _compiled() -> None:
    if value_digests._put_map is None:
        # (test_compiled_plain_check_is_built_where_a_compiler_is fails if a compiler
        # is here and the module is not built: CI always runs this test.)
        pytest.skip("no C compiler on this machine, so pinrun's C module is not built")


@pytest.mark.parametrize("state", [
    SMALL, {"one": 1}, {}, {"text": "é" * 50, "nested": {"a": [1, 2, {"b": None}]}},
    {f"k{index}": index for index in range(value_digests._FEW_KEYS - 1)},
    {"big": "x" * (KEPT_PAYLOAD + 10), "small": 1},  # inline, not kept among known digests
])
def test_few_inline_values_give_what_store_snapshot_gives(state: dict[str, Any]) -> None:
    """The same tree digest and the same objects, each with its kind and payload."""
    _compiled()
    payloads = {key: codec.encode(value) for key, value in state.items()}
    objects: dict[bytes, tuple[Kind, bytes]] = {}
    made = digest_few_inline(state, payloads, objects, {})
    expected, expected_objects = _general(state, payloads)
    assert made == expected
    assert objects == expected_objects
    assert all(compute_digest(kind, payload).raw == raw
               for raw, (kind, payload) in objects.items())


@pytest.mark.parametrize("case", ["bytes", "unknown encoding", "large", "paged",
                                  "many keys", "not a dict"])
def test_what_the_shortcut_cannot_make_is_left_to_store_snapshot(case: str) -> None:
    """None, and nothing added, for bytes, a value whose encoding is not given, a value
    too large to be inline, more inline bytes than one tree holds (pages), too many keys,
    or a mapping that is not a dict; the sink
    then digests it by the general path, to the same digest."""
    _compiled()
    state: Any = dict(SMALL)
    payloads = {key: codec.encode(value) for key, value in state.items()}
    if case == "bytes":
        state["blob"] = b"raw"
    elif case == "unknown encoding":
        del payloads["total"]
    elif case == "large":
        state["big"] = "x" * (INLINE_LIMIT + 10)
        payloads["big"] = codec.encode(state["big"])
    elif case == "paged":
        state = {f"k{index}": "y" * (INLINE_LIMIT - 100) for index in range(5)}
        payloads = {key: codec.encode(value) for key, value in state.items()}
    elif case == "many keys":
        state = {f"k{index}": index for index in range(value_digests._FEW_KEYS)}
        payloads = {key: codec.encode(value) for key, value in state.items()}
    else:
        state = _Mapping(state)
    objects: dict[bytes, tuple[Kind, bytes]] = {}
    assert digest_few_inline(state, payloads, objects, {}) is None
    assert objects == {}
    sink = _DigestSink()
    assert sink.snapshot(state, payloads, {}) == _general(dict(state), payloads)[0]


class _Mapping(dict[str, Any]):
    """A dict subclass: the C code takes exact dicts only."""


def test_the_replays_sink_adds_to_what_it_holds_and_keeps_known_digests() -> None:
    """Outputs digested after others add only their new objects; a payload digested
    before is answered from the replay's known digests."""
    _compiled()
    sink = _DigestSink()
    known: dict[bytes, Digest] = {}
    first = {"a": 1, "b": "two"}
    sink.snapshot(first, {k: codec.encode(v) for k, v in first.items()}, known)
    held = dict(sink.objects)
    assert codec.encode(1) in known
    second = {"a": 1, "c": 3}
    digest = sink.snapshot(second, {k: codec.encode(v) for k, v in second.items()}, known)
    assert digest == _general(second, {k: codec.encode(v) for k, v in second.items()})[0]
    assert held.items() <= sink.objects.items()
    assert len(sink.objects) == len(held) + 2  # the value 3 and the second tree


def test_check_many_raw_reads_back_what_a_replay_made(store: Store) -> None:
    """Objects named by raw digests are proven as check_many proves them; a missing one
    raises MissingObjectError naming its digest."""
    with store.batch() as batch:
        digest = batch.put(Kind.VALUE, b'{"kept":true}')
    store.check_many_raw({digest.raw: (Kind.VALUE, b'{"kept":true}')})
    gone = compute_digest(Kind.VALUE, b'{"gone":true}')
    with pytest.raises(MissingObjectError, match=gone.hex):
        store.check_many_raw({digest.raw: (Kind.VALUE, None),
                              gone.raw: (Kind.VALUE, b'{"gone":true}')})
