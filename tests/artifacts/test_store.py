"""The store: objects, batches, refs, prefixes, discovery and map growth."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts.batch import IN_TRANSACTION_MAX_BYTES
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.discovery import find_store
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.refs import ANY
from pinrun.artifacts.store import Store, open_store
from pinrun.errors import (
    AmbiguousDigestError,
    InputError,
    InvalidDigestError,
    MissingObjectError,
    RefConflictError,
    StoreError,
    StoreNotFoundError,
    UnknownDigestError,
    UnknownRefError,
    UnsupportedValueError,
)


def test_value_round_trip(store: Store) -> None:
    """A stored value comes back equal, under the digest of its canonical bytes."""
    digest = store.put_value({"b": [1, 2.5, None], "a": "x"})
    assert store.get_value(digest) == {"a": "x", "b": [1, 2.5, None]}
    assert digest == compute_digest(Kind.VALUE, b'{"a":"x","b":[1,2.5,null]}')


def test_put_skips_existing_objects(store: Store) -> None:
    """Storing an object twice keeps one copy and reports it as not new."""
    with store.batch() as first:
        first.put_value({"k": 1})
    with store.batch() as second:
        second.put_value({"k": 1})
        second.put_value({"k": 1})
    assert (first.new_objects, second.new_objects) == (1, 0)
    assert store.object_count() == 1


def test_batch_that_raises_writes_nothing(store: Store) -> None:
    """A batch whose block raises is discarded: no object and no ref appear."""
    with pytest.raises(RuntimeError), store.batch() as batch:
        digest = batch.put_value("kept?")
        batch.set_ref("tags/x", digest)
        raise RuntimeError("boom")
    assert store.object_count() == 0
    assert store.refs() == {}


def test_unsupported_value_fails_before_writing(store: Store) -> None:
    """An unencodable value raises naming its path, and the batch writes nothing."""
    with pytest.raises(UnsupportedValueError) as caught, store.batch() as batch:
        batch.put_value("fine")
        batch.put_snapshot({"items": [1, {"created": object()}]})
    assert caught.value.path == "state['items'][1]['created']"
    assert store.object_count() == 0


def test_missing_object_names_digest(store: Store) -> None:
    """Loading an absent digest raises MissingObjectError naming it."""
    absent = compute_digest(Kind.VALUE, b"404")
    with pytest.raises(MissingObjectError) as caught:
        store.load(absent)
    assert caught.value.digest == absent
    assert absent.hex in str(caught.value)
    assert not store.has(absent)


def test_blob_and_info(store: Store) -> None:
    """Blobs are raw bytes; info reports kind and sizes without decoding."""
    data = b"hello " * 1000
    digest = store.put_blob(data)
    assert store.get_value(digest) == data
    info = store.info(digest)
    assert (info.kind, info.raw_size, info.codec) == (Kind.BLOB, len(data), "zstd")
    assert info.stored_size < len(data)


def test_incompressible_payload_stored_plain(store: Store) -> None:
    """A payload that zstd cannot shrink is stored uncompressed."""
    digest = store.put_blob(os.urandom(4096))
    assert store.info(digest).codec == "none"


def test_resolve_full_prefix_and_ref(store: Store) -> None:
    """A digest resolves from its hex, any unique 6+ prefix, upper case, or a ref name."""
    digest = store.put_value(123)
    store.set_ref("tags/answer", digest)
    assert store.resolve(digest.hex) == digest
    assert store.resolve(digest.hex[:6]) == digest
    assert store.resolve(digest.hex[:7].upper()) == digest
    assert store.resolve("tags/answer") == digest


def test_resolve_rejects_bad_prefixes(store: Store) -> None:
    """Short, non-hex and unknown prefixes are input errors that say what is wrong."""
    store.put_value(1)
    with pytest.raises(InvalidDigestError, match="at least 6"):
        store.resolve("abc")
    with pytest.raises(InvalidDigestError, match="hexadecimal"):
        store.resolve("12-34-56")
    with pytest.raises(UnknownRefError, match="not a digest"):
        store.resolve("xyzxyz")  # could be a ref name: says neither ref nor digest
    with pytest.raises(UnknownRefError, match="no ref named 'snaps/none'"):
        store.resolve("snaps/none")
    unknown = compute_digest(Kind.VALUE, b"not stored").hex
    with pytest.raises(UnknownDigestError):
        store.resolve(unknown[:10])


def _colliding_values() -> tuple[int, int]:
    """Two ints whose value digests share their first 3 bytes (6 hex characters)."""
    seen: dict[bytes, int] = {}
    number = 0
    while True:
        prefix = compute_digest(Kind.VALUE, str(number).encode()).raw[:3]
        if prefix in seen:
            return seen[prefix], number
        seen[prefix] = number
        number += 1


def test_ambiguous_prefix_lists_candidates(store: Store) -> None:
    """A prefix shared by two objects is refused, naming both candidates."""
    first, second = _colliding_values()
    a, b = store.put_value(first), store.put_value(second)
    with pytest.raises(AmbiguousDigestError) as caught:
        store.resolve(a.hex[:6])
    assert set(caught.value.candidates) == {a, b}
    longer = next(n for n in range(7, 65) if a.hex[:n] != b.hex[:n])
    assert store.resolve(a.hex[:longer]) == a


def test_refs_compare_and_swap(store: Store) -> None:
    """A ref update that expects a stale value fails and changes nothing."""
    one, two, three = (store.put_value(n) for n in (1, 2, 3))
    store.set_ref("flows/pricing", one, expected=None)
    store.set_ref("flows/pricing", two, expected=one)
    with pytest.raises(RefConflictError) as caught:
        store.set_ref("flows/pricing", three, expected=one)
    assert (caught.value.expected, caught.value.actual) == (one, two)
    assert store.ref("flows/pricing") == two
    with pytest.raises(RefConflictError):
        store.set_ref("flows/pricing", three, expected=None)
    store.set_ref("flows/pricing", three, expected=ANY)
    assert store.ref("flows/pricing") == three


def test_ref_expected_on_a_missing_ref_and_on_delete(store: Store) -> None:
    """A digest expected of a ref that is not set conflicts (its actual is None), and so
    does a delete expecting another digest; each check that passes writes."""
    one, two = store.put_value(1), store.put_value(2)
    with pytest.raises(RefConflictError) as caught:
        store.set_ref("flows/absent", one, expected=two)
    assert (caught.value.expected, caught.value.actual) == (two, None)
    assert store.get_ref("flows/absent") is None
    store.set_ref("flows/present", one, expected=None)
    with pytest.raises(RefConflictError) as caught:
        store.delete_ref("flows/present", expected=two)
    assert (caught.value.expected, caught.value.actual) == (two, one)
    store.delete_ref("flows/present", expected=one)
    assert store.get_ref("flows/present") is None


def test_ref_conflict_discards_whole_batch(store: Store) -> None:
    """When a batch's ref check fails, none of its objects are written either."""
    base = store.put_value("base")
    store.set_ref("snaps/r1", base)
    before = store.object_count()
    with pytest.raises(RefConflictError), store.batch() as batch:
        batch.put_snapshot({"new": "state", "more": [1, 2, 3]})
        batch.set_ref("snaps/r1", base, expected=None)
    assert store.object_count() == before


def test_ref_to_absent_object_refused(store: Store) -> None:
    """A ref cannot point at an object the store does not hold."""
    with pytest.raises(MissingObjectError):
        store.set_ref("tags/ghost", compute_digest(Kind.VALUE, b"ghost"))
    assert store.refs() == {}


def test_refs_listing_delete_and_errors(store: Store) -> None:
    """Refs list by prefix in name order; deleting honours CAS; bad names are refused."""
    digest = store.put_value("x")
    for name in ("snaps/b", "snaps/a", "tags/t"):
        store.set_ref(name, digest)
    assert list(store.refs("snaps/")) == ["snaps/a", "snaps/b"]
    store.delete_ref("snaps/a", expected=digest)
    assert store.get_ref("snaps/a") is None
    with pytest.raises(UnknownRefError):
        store.ref("snaps/a")
    for bad in ("", "/x", "x/", "a//b", "a/../b", "has space", "x" * 300):
        with pytest.raises(InputError):
            store.set_ref(bad, digest)


def test_open_missing_store_is_clear(tmp_path: Path) -> None:
    """Opening a folder that holds no store says so and suggests `pinrun init`."""
    with pytest.raises(StoreNotFoundError, match="pinrun init"):
        Store.open(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_discovery_walks_upward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_store() finds .pinrun/ in a parent folder; PINRUN_STORE overrides it."""
    with Store.open(tmp_path / ".pinrun", create=True) as created:
        digest = created.put_value("found me")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    monkeypatch.delenv("PINRUN_STORE", raising=False)
    assert find_store(deep) == (tmp_path / ".pinrun").resolve()
    with open_store() as found:
        assert found.get_value(digest) == "found me"
    monkeypatch.setenv("PINRUN_STORE", str(tmp_path / "elsewhere"))
    with pytest.raises(StoreNotFoundError):
        open_store()


def test_two_handles_share_one_environment(store_path: Path) -> None:
    """Opening the same folder twice in a process works, and closing one keeps the other."""
    first = Store.open(store_path, create=True)
    second = Store.open(store_path)
    digest = first.put_value("shared")
    first.close()
    assert second.get_value(digest) == "shared"
    second.close()


def test_map_grows_by_itself(tmp_path: Path) -> None:
    """Writing far more than the initial map holds grows the map instead of failing."""
    with Store.open(tmp_path / "small", create=True, map_size=256 * 1024) as small:
        start = small.environment.map_size
        digests = [small.put_blob(os.urandom(64 * 1024)) for _ in range(64)]
        assert small.environment.map_size > start
        assert all(len(small.get_value(d)) == 64 * 1024 for d in digests)


def test_threads_write_and_read_while_map_grows(tmp_path: Path) -> None:
    """Threads sharing one store write and read concurrently through map growth."""
    errors: list[BaseException] = []
    with Store.open(tmp_path / "threads", create=True, map_size=256 * 1024) as shared:

        def work(seed: int) -> None:
            try:
                for n in range(40):
                    data = bytes([seed]) * 20_000 + n.to_bytes(2, "little")
                    digest = shared.put_blob(data)
                    assert shared.get_value(digest) == data
            except BaseException as exc:  # collected and re-raised in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert shared.object_count() == 160


def test_digest_values_survive_store_round_trip(store: Store) -> None:
    """A Digest stored inside a value decodes back to a Digest."""
    inner = store.put_value("inner")
    outer = store.put_value({"points_to": inner})
    loaded = store.get_value(outer)
    assert isinstance(loaded["points_to"], Digest)
    assert loaded["points_to"] == inner


def test_writing_while_iterating_records_does_not_deadlock(tmp_path: Path) -> None:
    """Writes that grow the map may happen inside a loop over iter_records."""
    with Store.open(tmp_path / "s", create=True, map_size=256 * 1024) as small:
        for n in range(5):
            small.put_value(n)
        seen = 0
        for _ in small.iter_records(chunk=2):
            small.put_blob(os.urandom(512 * 1024))  # forces growth mid-iteration
            seen += 1
            if seen == 40:  # new objects may be visited too: bound the loop
                break
        assert seen >= 5
        assert small.object_count() == 5 + seen


def test_iter_records_sees_every_object_once(store: Store) -> None:
    """Chunked iteration visits every key exactly once, in order."""
    digests = sorted(store.put_value(n) for n in range(50))
    keys = [key for key, _ in store.iter_records(chunk=7)]
    assert keys == [d.raw for d in digests]


def test_second_handle_with_other_durability_is_refused(store_path: Path) -> None:
    """A handle cannot silently get a different durability than the one already open."""
    with Store.open(store_path, create=True, durable=False):
        with pytest.raises(StoreError, match="durable=False"):
            Store.open(store_path, durable=True)
        with Store.open(store_path, durable=False) as same:
            assert same.environment.durable is False


def test_small_batch_is_one_write_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small batch (a run's, a step's) looks its objects up inside its write
    transaction: no read transaction first, and what is stored is not written again."""
    stored = store.put_value({"kept": [1, 2, 3]})

    def no_read() -> Any:
        raise AssertionError("a small batch opened a read transaction")

    monkeypatch.setattr(store.environment, "read", no_read)
    with store.batch() as batch:
        assert batch.put_value({"kept": [1, 2, 3]}) == stored
        fresh = batch.put_value({"text": "compressible " * 40})
        batch.set_ref("tags/fresh", fresh)
    monkeypatch.undo()
    assert batch.new_objects == 2  # the value, and the format dictionary its record uses
    assert store.info(fresh).codec == "zstd+dict"
    assert store.get_value(store.ref("tags/fresh")) == {"text": "compressible " * 40}
    assert fsck(store).ok


@pytest.mark.parametrize("large", [False, True], ids=["small batch", "large batch"])
def test_object_swept_between_check_and_write_is_written_again(
    store: Store, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    """If gc removes an object after a batch saw it stored, the batch writes it anyway
    (a small batch looks inside its write transaction; a large one before it, and again)."""
    loose = store.put_value("collected meanwhile")
    env = store.environment
    original = env.write

    def gc_runs_first(operation: Callable[[Any], Any]) -> Any:
        def swept(txn: Any) -> Any:
            txn.delete(loose.raw, db=env.dbs["objects"])  # what a concurrent gc would do
            return operation(txn)

        return original(swept)

    monkeypatch.setattr(env, "write", gc_runs_first)
    with store.batch() as batch:
        again = batch.put_value("collected meanwhile")
        if large:  # past IN_TRANSACTION_MAX_BYTES
            batch.put_blob(os.urandom(IN_TRANSACTION_MAX_BYTES + 1))
        batch.set_ref("tags/kept", again)
    monkeypatch.undo()
    assert again == loose
    assert store.get_value(store.ref("tags/kept")) == "collected meanwhile"
    assert fsck(store).ok


def test_growth_needed_inside_an_open_transaction_fails_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """A resize this thread's own open transaction would block is refused with a clear error."""
    with Store.open(tmp_path / "s", create=True, map_size=256 * 1024) as small:
        with small.environment.read(), pytest.raises(StoreError, match="inside another"):
            small.put_blob(os.urandom(2 * 1024 * 1024))
        assert len(small.get_value(small.put_blob(os.urandom(2 * 1024 * 1024)))) == 2 << 20


def test_lmdb_failures_become_store_errors(store: Store) -> None:
    """An error inside LMDB surfaces as a StoreError that says what to check."""
    import lmdb

    env = store.environment

    def broken(txn: Any) -> None:
        raise lmdb.DiskError("simulated")

    with pytest.raises(StoreError, match="free disk"):
        env.write(broken)


def test_load_many_in_a_forked_child(store: Store) -> None:
    """load_many works in a forked child that inherited the store."""
    import multiprocessing

    digest = store.put_value("shared")
    context = multiprocessing.get_context("fork")
    worker = context.Process(target=lambda: store.load_many([digest]))
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0


def test_refs_without_a_slash_resolve(store: Store) -> None:
    """Any valid ref name resolves, with or without a slash, even one made of hex letters."""
    digest = store.put_value("named")
    store.set_ref("latest", digest)
    store.set_ref("cafe00", digest)
    assert store.resolve("latest") == digest
    assert store.resolve("cafe00") == digest


def test_a_pin_collected_by_another_process_is_written_again(store: Store) -> None:
    """A pin this handle committed, then collected by a gc in another process (whose sweep
    moves the store's gc generation on), is looked up and written again by this handle's
    next commit: what it remembers as stored holds only under the generation it read."""
    import subprocess
    import sys

    pin = b'{"source":"def g():\\n    return 2\\n"}'
    with store.batch() as batch:
        digest = batch.put(Kind.CODE, pin)
        batch.set_ref("flows/keep", digest)
    assert digest.raw in store.known_pins
    store.delete_ref("flows/keep")
    subprocess.run([sys.executable, "-c",
                    "import sys\nfrom pinrun.artifacts.maintenance import gc\n"
                    "from pinrun.artifacts.store import Store\n"
                    "with Store.open(sys.argv[1]) as other:\n"
                    "    assert gc(other).deleted >= 1\n", str(store.path)], check=True)
    assert not store.has(digest)
    with store.batch() as batch:
        assert batch.put(Kind.CODE, pin) == digest
        batch.set_ref("flows/keep", digest)
    assert store.load(digest) == (Kind.CODE, pin)


def test_a_commit_under_the_same_gc_generation_does_not_look_up_known_pins(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small commit looks up the pins this handle saw committed only when the gc
    generation it reads changed since: one get of the generation instead of theirs."""
    from pinrun.artifacts import batch as batch_module
    from pinrun.artifacts.maintenance import gc

    pin = b'{"source":"def h():\\n    return 3\\n"}'
    with store.batch() as batch:
        digest = batch.put(Kind.CODE, pin)
        batch.set_ref("flows/keep", digest)
    looked_up: list[bytes] = []
    real_write = store.environment.write

    class Counting:
        def __init__(self, txn: Any) -> None:
            self._txn = txn

        def get(self, key: bytes, *args: Any, **kwargs: Any) -> Any:
            looked_up.append(key)
            return self._txn.get(key, *args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._txn, name)

    monkeypatch.setattr(store.environment, "write",
                        lambda operation: real_write(lambda txn: operation(Counting(txn))))

    def commit() -> None:
        with store.batch() as again:
            again.put(Kind.CODE, pin)
            again.put_value("something new")

    commit()
    assert digest.raw not in looked_up
    assert batch_module.GC_GENERATION_KEY in looked_up
    monkeypatch.setattr(store.environment, "write", real_write)
    gc(store)  # the generation moves on: the next commit looks the pin up again
    monkeypatch.setattr(store.environment, "write",
                        lambda operation: real_write(lambda txn: operation(Counting(txn))))
    looked_up.clear()
    commit()
    assert digest.raw in looked_up
    looked_up.clear()
    commit()
    assert digest.raw not in looked_up
    # In a format 1 store, which an older pinrun's gc (not moving the generation) may
    # share, every pin is looked up.
    store.checks_refs = False
    looked_up.clear()
    commit()
    assert digest.raw in looked_up


def test_a_pin_collected_after_its_commit_is_written_again(store: Store) -> None:
    """A pin this handle committed before, then collected by gc, is written again by the
    next commit that offers it (the handle's memory of stored pins is never trusted alone)."""
    from pinrun.artifacts.maintenance import gc

    pin = b'{"source":"def f():\\n    return 1\\n"}'
    with store.batch() as batch:
        digest = batch.put(Kind.CODE, pin)
        batch.set_ref("flows/keep", digest)
    assert digest.raw in store.known_pins
    store.delete_ref("flows/keep")
    gc(store)
    assert not store.has(digest)
    with store.batch() as batch:
        assert batch.put(Kind.CODE, pin) == digest
        batch.set_ref("flows/keep", digest)
    assert store.load(digest) == (Kind.CODE, pin)  # read back and hashed again
