"""Trained zstd dictionaries: training, reading, gc, fsck, bundles and damage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts import dictionary as dictionary_module
from pinrun.artifacts.bundle import export_bundle, import_bundle
from pinrun.artifacts.dictionary import TRAINING_SAMPLES, train_dictionary
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.maintenance import fsck, gc, stats
from pinrun.artifacts.objects import read_header
from pinrun.artifacts.store import DICTIONARY_REF, Store
from pinrun.errors import CorruptObjectError, MissingObjectError
from tests.helpers import python_child


@pytest.fixture(autouse=True)
def fresh_dictionary_cache() -> Iterator[None]:
    """Each test loads dictionaries from its own store, as a new process would."""
    dictionary_module._CACHE.clear()
    yield
    dictionary_module._CACHE.clear()


def _order(n: int) -> dict[str, Any]:
    return {"order_id": f"A{n:06d}", "customer": {"name": f"Customer {n % 97}", "tier": "gold"},
            "items": [{"sku": f"SKU-{(n * 7 + i) % 500:04d}", "qty": i + 1, "price": 9.99 + i}
                      for i in range(3)], "currency": "EUR", "status": "priced"}


def _fill(store: Store, count: int = TRAINING_SAMPLES + 200) -> list[Digest]:
    with store.batch() as batch:
        digests = [batch.put_value(_order(n)) for n in range(count)]
        batch.set_ref("tags/first", digests[0])
    return digests


def test_large_batch_of_small_values_trains_a_dictionary(store: Store) -> None:
    """The first batch with enough small values trains a dictionary and uses it."""
    digests = _fill(store)
    trained = store.ref(DICTIONARY_REF)
    codecs = {store.info(d).codec for d in digests}
    assert codecs == {"zstd+dict"}
    assert all(store.get_value(d) == _order(n) for n, d in enumerate(digests[:50]))
    assert store.info(trained).codec in ("zstd", "none")  # never compressed with itself


def test_dictionary_shrinks_small_records(store: Store, tmp_path: Path) -> None:
    """Small values take markedly less room with the trained dictionary than without."""
    with Store.open(tmp_path / "plain", create=True) as plain:
        with plain.batch() as batch:
            for n in range(300):  # too few to train: plain zstd
                batch.put_value(_order(n))
        plain_bytes = stats(plain).stored_bytes["value"]
    _fill(store)
    ours = sum(store.info(store.resolve(d.hex)).stored_size
               for d in [*(_digest_of(store, n) for n in range(300))])
    assert ours < 0.8 * plain_bytes


def _digest_of(store: Store, n: int) -> Digest:
    from pinrun.artifacts import codec
    from pinrun.artifacts.digest import Kind, compute_digest

    return compute_digest(Kind.VALUE, codec.encode(_order(n)))


def test_small_batch_reads_the_dictionary_in_its_write_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small batch in a process that has not loaded the store's dictionary yet reads it
    inside its own write transaction, compresses with it, and stays readable."""
    _fill(store)
    dictionary_module._CACHE.clear()  # as a new process finds it

    def no_read() -> Any:
        raise AssertionError("a small batch opened a read transaction")

    monkeypatch.setattr(store.environment, "read", no_read)
    with store.batch() as batch:
        digest = batch.put_value(_order(TRAINING_SAMPLES + 500))
    monkeypatch.undo()
    assert store.info(digest).codec == "zstd+dict"
    assert store.get_value(digest) == _order(TRAINING_SAMPLES + 500)
    assert fsck(store).ok


def test_small_batches_do_not_train(store: Store) -> None:
    """A batch with few small values leaves the store without a dictionary."""
    for n in range(20):
        store.put_value(_order(n))
    assert store.current_dictionary() is None


def test_explicit_training_from_stored_values(store: Store) -> None:
    """train_dictionary() learns from values stored in many small batches; new ones use it."""
    for start in range(0, 1200, 100):
        with store.batch() as batch:
            for n in range(start, start + 100):
                batch.put_value(_order(n))
    assert store.current_dictionary() is None
    trained = store.train_dictionary()
    assert trained is not None
    assert store.ref(DICTIONARY_REF) == trained
    fresh = store.put_value(_order(99_999))
    assert store.info(fresh).codec == "zstd+dict"
    assert store.get_value(fresh) == _order(99_999)


def test_explicit_training_needs_enough_values(store: Store) -> None:
    """With too few small values, train_dictionary() declines and changes nothing."""
    store.put_value(_order(1))
    assert store.train_dictionary() is None
    assert store.get_ref(DICTIONARY_REF) is None


def test_training_is_deterministic() -> None:
    """The same samples train the same dictionary bytes."""
    from pinrun.artifacts import codec

    samples = [codec.encode(_order(n)) for n in range(400)]
    assert train_dictionary(samples).digest == train_dictionary(samples).digest


def test_records_read_in_a_new_process(store: Store, store_path: Path) -> None:
    """A process that never saw the dictionary loads it from the store to read records."""
    digests = _fill(store)
    out = python_child(
        """
        import sys
        from pinrun.artifacts.store import Store
        from pinrun.artifacts.digest import Digest
        with Store.open(sys.argv[1]) as store:
            print(store.get_value(Digest.from_hex(sys.argv[2]))["order_id"])
        """,
        str(store_path), digests[7].hex,
    )
    assert out.stdout.strip() == "A000007"


def test_gc_keeps_a_dictionary_records_still_use(store: Store) -> None:
    """Deleting the dictionary ref does not let gc sweep a dictionary that records need."""
    digests = _fill(store)
    trained = store.ref(DICTIONARY_REF)
    store.delete_ref(DICTIONARY_REF)
    store.set_ref("tags/second", digests[1])
    report = gc(store)
    assert store.has(trained)
    assert report.reachable == 3  # two values and the dictionary they were compressed with
    dictionary_module._CACHE.clear()
    assert store.get_value(digests[1]) == _order(1)
    assert fsck(store).ok


def test_missing_dictionary_is_reported_by_fsck_and_reads(store: Store) -> None:
    """A dictionary deleted behind the store's back: fsck and reads name it as missing."""
    digests = _fill(store)
    trained = store.ref(DICTIONARY_REF)
    store.delete_ref(DICTIONARY_REF)
    env = store.environment
    env.write(lambda txn: txn.delete(trained.raw, db=env.dbs["objects"]))
    dictionary_module._CACHE.clear()  # as a process that has not met it yet
    with pytest.raises(MissingObjectError) as caught:
        store.get_value(digests[3])
    assert caught.value.digest == trained
    problems = fsck(store).problems
    assert [(p.kind, p.digest) for p in problems] == [("missing", trained)]


def test_damaged_dictionary_is_corruption(store: Store) -> None:
    """A dictionary whose bytes changed is reported as corrupt, not used."""
    digests = _fill(store)
    trained = store.ref(DICTIONARY_REF)
    env = store.environment
    record = bytearray(env.write(lambda txn: txn.get(trained.raw, db=env.dbs["objects"])))
    assert read_header(trained, bytes(record)).codec in ("zstd", "none")
    record[-100] ^= 0xFF
    env.write(lambda txn: txn.put(trained.raw, bytes(record), db=env.dbs["objects"]))
    dictionary_module._CACHE.clear()
    with pytest.raises(CorruptObjectError) as caught:
        store.get_value(digests[3])
    assert caught.value.digest == trained
    assert ("corrupt", trained) in [(p.kind, p.digest) for p in fsck(store).problems]


def test_bundle_carries_the_dictionary(store: Store, tmp_path: Path) -> None:
    """Exporting dictionary-compressed objects carries the dictionary; import verifies them."""
    digests = _fill(store)
    export_bundle(store, ["tags/first"], tmp_path / "b.pinrun")
    dictionary_module._CACHE.clear()
    with Store.open(tmp_path / "other", create=True) as other:
        report = import_bundle(other, tmp_path / "b.pinrun")
        assert report.objects == 2  # the value and its dictionary
        dictionary_module._CACHE.clear()
        assert other.get_value(digests[0]) == _order(0)
        assert fsck(other).ok


def test_stats_report_the_dictionary(store: Store) -> None:
    """stats names the dictionary and counts the records compressed with it."""
    assert stats(store).dictionary is None
    digests = _fill(store)
    figures = stats(store)
    assert figures.dictionary == store.ref(DICTIONARY_REF)
    assert figures.dictionary_records == len(digests)
    assert figures.as_dict()["dictionary"] == figures.dictionary.hex
    # The first batch trained the store's own: pinrun's format dictionary was never used,
    # so the store holds none (the CLI's tests see one held).
    assert not figures.format_dictionary
    assert not store.has(dictionary_module.format_dictionary().digest)


def test_internal_refs_stay_home(store: Store, tmp_path: Path) -> None:
    """export --all leaves pinrun's own refs behind; a target with its own dictionary imports."""
    _fill(store)
    export_bundle(store, None, tmp_path / "all.pinrun")
    with Store.open(tmp_path / "other", create=True) as other:
        with other.batch() as batch:
            for n in range(TRAINING_SAMPLES + 50):
                batch.put_value({"other": n, "text": f"record number {n} of the other store " * 4})
        own = other.ref(DICTIONARY_REF)
        report = import_bundle(other, tmp_path / "all.pinrun")
        assert DICTIONARY_REF not in report.refs
        assert other.ref(DICTIONARY_REF) == own
        assert other.get_value(other.ref("tags/first")) == _order(0)


def test_damaged_dictionary_is_reported_once(store: Store) -> None:
    """fsck names a damaged dictionary once, not once per record that uses it."""
    _fill(store)
    trained = store.ref(DICTIONARY_REF)
    env = store.environment
    record = bytearray(env.write(lambda txn: txn.get(trained.raw, db=env.dbs["objects"])))
    record[-100] ^= 0xFF
    env.write(lambda txn: txn.put(trained.raw, bytes(record), db=env.dbs["objects"]))
    dictionary_module._CACHE.clear()
    assert [(p.kind, p.digest) for p in fsck(store).problems] == [("corrupt", trained)]


def test_small_payloads_use_the_dictionary_at_level_one() -> None:
    """With a dictionary, a payload under 4 KiB is compressed at level 1 and a larger one
    at level 3 (as without one); both open, and decode with a plain zstd decoder given
    the dictionary, to the payload."""
    import zstandard

    from pinrun.artifacts import codec
    from pinrun.artifacts.digest import Kind, compute_digest
    from pinrun.artifacts.objects import HEADER, build_pending_records, open_record

    trained = train_dictionary([codec.encode(_order(n)) for n in range(400)])
    small = codec.encode([_order(n) for n in range(5_000, 5_008)])  # (levels differ here)
    large = codec.encode([_order(n) for n in range(6_000, 6_040)])
    assert 256 <= len(small) < 4096 <= len(large)
    records = dict(build_pending_records(
        [(compute_digest(Kind.VALUE, p).raw, Kind.VALUE, p) for p in (small, large)],
        trained))
    zdict = zstandard.ZstdCompressionDict(trained.data)
    for payload, level in ((small, 1), (large, 3)):
        key = compute_digest(Kind.VALUE, payload).raw
        record = records[key]
        assert isinstance(record, bytes)
        assert HEADER.unpack_from(record)[2] == 2  # zstd with a dictionary
        body = record[HEADER.size + 32:]
        expected = zstandard.ZstdCompressor(level=level, dict_data=zdict, write_dict_id=False,
                                            write_content_size=True)
        assert body == expected.compress(payload)
        assert zstandard.ZstdDecompressor(dict_data=zdict).decompress(body) == payload
        assert open_record(Digest(key), record, lambda _: trained.data) == \
            (Kind.VALUE, payload)


def test_explicit_training_learns_from_trees_too(store: Store) -> None:
    """train_dictionary() samples every kind of small record but blobs: a store of
    small snapshots (trees over values too short to compress) has enough to learn from."""
    for start in range(0, 400, 100):
        with store.batch() as batch:
            for n in range(start, start + 100):
                batch.put_snapshot({f"order_{n}": n, f"total_{n % 7}": n * 2, "region": "EU"})
    trained = store.train_dictionary()
    assert trained is not None
    with store.batch() as batch:
        fresh = batch.put_snapshot({f"order_{n}": n for n in range(5)})
    assert store.info(fresh).codec == "zstd+dict"
    assert fsck(store).ok
