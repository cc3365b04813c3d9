"""A run's trees stored through ValueDigests: the same objects and digests as a batch's own."""

from __future__ import annotations

from typing import Any

import pytest

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Kind, compute_digest
from pinrun.artifacts.snapshot_pages import Inline
from pinrun.artifacts.store import Store, WriteBatch
from pinrun.artifacts.trees import Entry
from pinrun.engine import value_digests
from pinrun.engine.value_digests import ValueDigests

STATE: dict[str, Any] = {
    "order_id": "A1", "items": [{"sku": "X", "qty": 2}], "total": 10.5, "blob": b"raw bytes",
    "$escaped": 1, "big": "x" * (value_digests.KEPT_PAYLOAD + 10), "none": None,
}


def _queued(batch: WriteBatch) -> dict[bytes, tuple[Kind, bytes]]:
    return dict(batch._pending)


@pytest.fixture(params=["c", "python"])
def map_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test twice: small map trees queued in C (WriteBatch.put_map_of), and by the
    Python loop of ValueDigests.put_map (what runs without a compiler)."""
    from pinrun.artifacts import batch as batch_module

    if request.param == "python":
        monkeypatch.setattr(batch_module, "_put_map", None)
    elif batch_module._put_map is None:
        # (test_compiled_plain_check_is_built_where_a_compiler_is fails if a compiler
        # is here and the module is not built: CI always runs this test.)
        pytest.skip("no C compiler on this machine, so pinrun's C module is not built")
    return str(request.param)


def test_trees_and_objects_match_the_batch(store: Store, map_path: str) -> None:
    """Snapshots and entry trees stored through ValueDigests queue the very objects, under
    the very digests, that the batch's own put_snapshot / put_entries queue."""
    plain, memo = WriteBatch(store), WriteBatch(store)
    plain_entries: dict[str, Entry] = {}
    memo_entries: dict[str, Entry] = {}
    sink = ValueDigests()
    expected = plain.put_snapshot(STATE, root="state", entries_out=plain_entries)
    assert sink.put_snapshot(memo, STATE, root="state", entries_out=memo_entries) == expected
    reads = ["items", "total", "order_id"]
    assert sink.put_entries(memo, {k: memo_entries[k] for k in reads}) == \
        plain.put_entries({k: plain_entries[k] for k in reads})
    # Stored again (a later commit's state), each small value now comes from what is kept.
    assert sink.put_entries(memo, memo_entries) == plain.put_entries(plain_entries)
    assert _queued(memo) == _queued(plain)
    assert list(memo._pending) == list(plain._pending)  # queued in the same order
    assert (memo._offered_objects, memo._offered_bytes) == \
        (plain._offered_objects, plain._offered_bytes)
    for raw, (kind, payload) in _queued(memo).items():
        assert compute_digest(kind, payload).raw == raw


def test_a_small_tree_reaches_the_batch_in_one_call(store: Store, monkeypatch: Any,
                                                    map_path: str) -> None:
    """A map tree of a few keys and its values are queued with one put_known (no put per
    object), or with none at all in C, the same objects and counts as the batch's own
    put_entries."""
    state = {"order_id": "A1", "total": 10.5, "items": [1, 2]}
    plain, memo = WriteBatch(store), WriteBatch(store)
    plain_entries: dict[str, Entry] = {}
    expected = plain.put_snapshot(state, root="state", entries_out=plain_entries)
    calls: list[str] = []
    real_put, real_known = WriteBatch.put, WriteBatch.put_known

    def put(self: WriteBatch, *args: Any) -> Any:
        calls.append("put")
        return real_put(self, *args)

    def put_known(self: WriteBatch, items: Any) -> None:
        calls.append("known")
        real_known(self, items)

    monkeypatch.setattr(WriteBatch, "put", put)
    monkeypatch.setattr(WriteBatch, "put_known", put_known)
    assert ValueDigests().put_entries(memo, plain_entries) == expected
    assert calls == ([] if map_path == "c" else ["known"])
    assert _queued(memo) == _queued(plain)
    assert (memo._offered_objects, memo._offered_bytes) == \
        (plain._offered_objects, plain._offered_bytes)


def test_each_small_value_is_digested_once(store: Store, monkeypatch: Any) -> None:
    """A small value named by several trees of a run is hashed once; a large one is left to
    the batch (hashed there, nothing kept)."""
    hashed: list[bytes] = []
    real = compute_digest

    def counting(kind: Kind, payload: bytes) -> Any:
        hashed.append(payload)
        return real(kind, payload)

    monkeypatch.setattr(value_digests, "compute_digest", counting)
    sink = ValueDigests()
    small, large = codec.encode(12.5), codec.encode("y" * (value_digests.KEPT_PAYLOAD + 1))
    for _ in range(3):
        sink._batch = WriteBatch(store)  # a new batch per commit: what is kept goes on
        assert sink.put(Kind.VALUE, small) == compute_digest(Kind.VALUE, small)
        assert sink.put(Kind.VALUE, large) == compute_digest(Kind.VALUE, large)
    assert hashed.count(small) == 1
    assert hashed.count(large) == 0
    assert len(sink._known) == 1


def test_kept_digests_are_bounded(store: Store, monkeypatch: Any) -> None:
    """At most the bound's worth of digests is kept: past it, what was kept is dropped."""
    monkeypatch.setattr(value_digests, "_MOST", 4)
    sink = ValueDigests()
    sink._batch = WriteBatch(store)
    for number in range(10):
        payload = codec.encode(number)
        assert sink.put(Kind.VALUE, payload) == compute_digest(Kind.VALUE, payload)
        assert len(sink._known) <= 4


def test_put_known_counts_what_it_queued_before_a_refusal(store: Store, monkeypatch: Any) -> None:
    """An object over its kind's limit raises as put does; the objects before it are
    queued and counted, as the same puts one by one would leave them."""
    from pinrun.artifacts import batch as batch_module
    from pinrun.errors import PinrunError

    monkeypatch.setattr(batch_module, "SMALLEST_MAX_RAW_SIZE", 4)
    monkeypatch.setattr(batch_module, "check_payload_size", _refuse_past_8)
    small, large = b"1234", b"123456789"
    items = [(Kind.VALUE, p, compute_digest(Kind.VALUE, p)) for p in (small, large)]
    known, one_by_one = WriteBatch(store), WriteBatch(store)
    with pytest.raises(PinrunError):
        known.put_known(items)
    with pytest.raises(PinrunError):
        for kind, payload, digest in items:
            one_by_one.put(kind, payload, digest)
    assert _queued(known) == _queued(one_by_one) == {items[0][2].raw: (Kind.VALUE, small)}
    assert (known._offered_objects, known._offered_bytes) == \
        (one_by_one._offered_objects, one_by_one._offered_bytes) == (1, 4)


def _refuse_past_8(kind: Kind, size: int, what: str = "value") -> None:
    from pinrun.errors import PinrunError

    if size > 8:
        raise PinrunError(f"{what} too large")


def test_the_c_map_leaves_what_it_cannot_write_to_python(store: Store) -> None:
    """WriteBatch.put_map_of answers a map of plain keys in C, the objects and counts the
    batch's own put_entries queues; a key the codec escapes, or a payload whose size must
    be checked, is left to Python (None) with nothing queued nor counted."""
    from pinrun.artifacts import batch as batch_module

    if batch_module._put_map is None:
        # (test_compiled_plain_check_is_built_where_a_compiler_is fails if a compiler
        # is here and the module is not built: CI always runs this test.)
        pytest.skip("no C compiler on this machine, so pinrun's C module is not built")
    state = {"order_id": "A1", "total": 10.5, "items": [1, 2], "big": "z" * 3000}
    plain, fast = WriteBatch(store), WriteBatch(store)
    entries: dict[str, Entry] = {}
    WriteBatch(store).put_snapshot(state, root="state", entries_out=entries)
    known: dict[bytes, Any] = {}
    made = fast.put_map_of(entries, known, value_digests.KEPT_PAYLOAD, 4096)
    assert made == plain.put_entries(entries)
    assert _queued(fast) == _queued(plain)
    assert (fast._offered_objects, fast._offered_bytes) == \
        (plain._offered_objects, plain._offered_bytes)
    assert set(known) == {e.payload for e in entries.values() if isinstance(e, Inline)}
    escaped_entries: dict[str, Entry] = {}
    WriteBatch(store).put_snapshot({"$x": 1}, root="state", entries_out=escaped_entries)
    untouched = WriteBatch(store)
    assert untouched.put_map_of({**entries, **escaped_entries}, {}, 4096, 4096) is None
    assert _queued(untouched) == {}
    assert (untouched._offered_objects, untouched._offered_bytes) == (0, 0)


def test_the_c_map_keeps_digests_within_its_bounds(store: Store) -> None:
    """The C path keeps small values' digests as the Python one does: none over the kept
    size, and the kept ones dropped when there are ``most`` of them."""
    from pinrun.artifacts import batch as batch_module

    if batch_module._put_map is None:
        # (test_compiled_plain_check_is_built_where_a_compiler_is fails if a compiler
        # is here and the module is not built: CI always runs this test.)
        pytest.skip("no C compiler on this machine, so pinrun's C module is not built")
    entries: dict[str, Entry] = {}
    WriteBatch(store).put_snapshot({f"k{n}": n for n in range(5)} | {"long": "q" * 40},
                                   root="state", entries_out=entries)
    known: dict[bytes, Any] = {}
    WriteBatch(store).put_map_of(entries, known, 20, 3)
    assert len(known) <= 3
    assert all(len(payload) <= 20 for payload in known)
    for payload, digest in known.items():
        assert digest == compute_digest(Kind.VALUE, payload)


def test_entries_past_the_paged_size_are_stored_in_pages_as_the_batch_does(
        store: Store, map_path: str) -> None:
    """put_entries takes its shortcut to one map tree only for entries store_entries would
    store so: a wide state's entries (inline bytes past PAGED_ABOVE) are stored in pages,
    the same objects and digests as the batch's own put_entries; a narrow one is a map."""
    from pinrun.artifacts.snapshot_pages import PAGED_ABOVE

    wide = {f"key{n:05d}": f"value number {n:05d} of many" for n in range(3000)}
    plain_entries: dict[str, Entry] = {}
    WriteBatch(store).put_snapshot(wide, root="state", entries_out=plain_entries)
    sizes = sum(len(e.member) for e in plain_entries.values() if isinstance(e, Inline))
    assert sizes > PAGED_ABOVE
    narrow = {key: plain_entries[key] for key in list(plain_entries)[:5]}
    for entries in (plain_entries, narrow):
        plain, memo = WriteBatch(store), WriteBatch(store)
        assert ValueDigests().put_entries(memo, entries) == plain.put_entries(entries)
        assert _queued(memo) == _queued(plain)
        assert list(memo._pending) == list(plain._pending)
        kinds = {codec.decode(payload).get("type") for kind, payload in _queued(plain).values()
                 if kind is Kind.TREE}
        assert ("pages" in kinds) == (entries is plain_entries)


@pytest.mark.parametrize("given", ["all", "some", "none"])
def test_a_small_snapshot_of_known_encodings_is_what_store_snapshot_makes(
        store: Store, map_path: str, given: str) -> None:
    """put_snapshot of a few keys whose encodings are all given (a step's outputs) takes a
    shortcut to the map tree: the same tree, objects, order, counts and entries as the
    batch's own put_snapshot, and as store_snapshot's path when some encodings are not
    given (or a value is bytes, or large)."""
    state: dict[str, Any] = {"total": 10.5, "items": [{"sku": "X", "qty": 2}], "region": "EU"}
    if given != "all":
        state["blob"] = b"raw"
    payloads = {key: codec.encode(value) for key, value in state.items()
                if type(value) is not bytes and (given == "all" or key != "total")}
    if given == "none":
        payloads = {}
    plain, memo = WriteBatch(store), WriteBatch(store)
    plain_entries: dict[str, Entry] = {}
    memo_entries: dict[str, Entry] = {"earlier": plain.put_value("kept")}
    expected = plain.put_snapshot(state, root="outputs", payloads=dict(payloads),
                                  entries_out=plain_entries)
    made = ValueDigests().put_snapshot(memo, state, root="outputs", payloads=dict(payloads),
                                       entries_out=memo_entries)
    assert made == expected
    del memo_entries["earlier"]
    assert {key: getattr(e, "member", e) for key, e in memo_entries.items()} == \
        {key: getattr(e, "member", e) for key, e in plain_entries.items()}
    plain_pending = {raw: item for raw, item in _queued(plain).items()
                     if item[1] != codec.encode("kept")}
    assert _queued(memo) == plain_pending
    assert list(memo._pending) == list(plain_pending)
