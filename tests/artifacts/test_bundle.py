"""Bundles: round trips, and refusal of malformed, truncated or tampered files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import blake3
import pytest

from pinrun.artifacts.bundle import MAGIC, export_bundle, import_bundle
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.errors import BundleError, InputError, MissingObjectError


def _populate(store: Store) -> tuple[Digest, Digest]:
    with store.batch() as batch:
        first = batch.put_snapshot({"order": "A1", "items": [1, 2, 3], "blob": b"\x00" * 999})
        batch.set_ref("snaps/one", first)
    with store.batch() as batch:
        second = batch.put_snapshot({"order": "A2", "items": [1, 2, 3], "big": "x" * 5000})
        batch.set_ref("snaps/two", second)
    store.put_value("unreferenced")
    return first, second


@pytest.fixture
def bundle(store: Store, tmp_path: Path) -> Path:
    """A bundle of snaps/one from a populated store."""
    _populate(store)
    path = tmp_path / "one.pinrun"
    export_bundle(store, ["snaps/one"], path)
    return path


@pytest.fixture
def fresh(tmp_path: Path) -> Store:
    """An empty second store to import into."""
    return Store.open(tmp_path / "fresh", create=True)


def _assert_untouched(store: Store) -> None:
    assert store.object_count() == 0
    assert store.refs() == {}


def test_round_trip_into_fresh_store(store: Store, tmp_path: Path, fresh: Store) -> None:
    """Exported refs arrive with everything they reach, and only that."""
    first, second = _populate(store)
    path = tmp_path / "all.pinrun"
    exported = export_bundle(store, None, path)
    assert exported.objects == store.object_count() - 1  # the unreferenced value stays behind
    report = import_bundle(fresh, path)
    assert report.new_objects == exported.objects
    assert fresh.refs() == {"snaps/one": first, "snaps/two": second}
    assert fresh.get_snapshot(second) == store.get_snapshot(second)
    assert fsck(fresh).ok
    again = import_bundle(fresh, path)
    assert again.new_objects == 0


def test_export_by_digest_prefix(store: Store, tmp_path: Path, fresh: Store) -> None:
    """A digest prefix can be exported; it arrives as a root without a ref."""
    first, _ = _populate(store)
    path = tmp_path / "by-digest.pinrun"
    export_bundle(store, [first.hex[:10]], path)
    report = import_bundle(fresh, path)
    assert report.roots == [first]
    assert fresh.refs() == {}
    assert fresh.get_snapshot(first)["order"] == "A1"


def test_export_is_deterministic(store: Store, tmp_path: Path) -> None:
    """Exporting the same roots twice writes identical bytes."""
    _populate(store)
    export_bundle(store, ["snaps/one", "snaps/two"], tmp_path / "a")
    export_bundle(store, ["snaps/one", "snaps/two"], tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize("keep", [0, 5, len(MAGIC) + 3, 60, 200, -33, -1])
def test_truncated_bundle_rejected(bundle: Path, fresh: Store, keep: int) -> None:
    """A bundle cut short anywhere is refused as truncated and writes nothing."""
    data = bundle.read_bytes()
    bundle.write_bytes(data[:keep] if keep >= 0 else data[: len(data) + keep])
    with pytest.raises(BundleError, match=r"truncated|not a pinrun bundle"):
        import_bundle(fresh, bundle)
    _assert_untouched(fresh)


def test_tampered_record_rejected(bundle: Path, fresh: Store) -> None:
    """A changed byte inside an object is caught by its digest, naming the object."""
    data = bytearray(bundle.read_bytes())
    # The last record's payload ends just before the end tag, count and checksum.
    data[-(1 + 8 + 32) - 3] ^= 0x40
    bundle.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="altered or damaged"):
        import_bundle(fresh, bundle)
    _assert_untouched(fresh)


def test_tampered_checksum_rejected(bundle: Path, fresh: Store) -> None:
    """A bundle whose trailing checksum does not match is refused."""
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 0x01
    bundle.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        import_bundle(fresh, bundle)
    _assert_untouched(fresh)


def test_tampered_manifest_ref_rejected(bundle: Path, fresh: Store) -> None:
    """Pointing a manifest ref at an object the bundle lacks is caught before writing."""
    data = bundle.read_bytes()
    size = struct.unpack_from("<I", data, len(MAGIC) + 1)[0]
    start = len(MAGIC) + 5
    manifest = data[start : start + size]
    hex_at = manifest.index(b'"snaps/one":"') + len(b'"snaps/one":"')
    forged = manifest[:hex_at] + b"0" * 64 + manifest[hex_at + 64 :]
    bundle.write_bytes(data[:start] + forged + data[start + size :])
    with pytest.raises(BundleError):
        import_bundle(fresh, bundle)
    _assert_untouched(fresh)


def test_garbage_and_extra_bytes_rejected(bundle: Path, fresh: Store, tmp_path: Path) -> None:
    """Not-a-bundle files and bundles with trailing bytes are refused."""
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world, not a bundle at all")
    with pytest.raises(BundleError, match="not a pinrun bundle"):
        import_bundle(fresh, junk)
    bundle.write_bytes(bundle.read_bytes() + b"!")
    with pytest.raises(BundleError, match="extra bytes"):
        import_bundle(fresh, bundle)
    with pytest.raises(InputError, match="cannot read bundle"):
        import_bundle(fresh, tmp_path / "absent")
    _assert_untouched(fresh)


def test_missing_reference_rejected(store: Store, tmp_path: Path, fresh: Store) -> None:
    """A bundle whose objects reference something neither it nor the store holds is refused."""
    root = store.put_snapshot({"a": "alpha", "b": "beta"})
    store.set_ref("snaps/x", root)
    path = tmp_path / "x.pinrun"
    export_bundle(store, ["snaps/x"], path)
    # Drop the record of one child value: rewrite the bundle without it, fixing count and sum.
    victim = store.put_value("beta")  # already stored: the same digest as the child
    body = path.read_bytes()
    marker = b"\x01" + victim.raw
    at = body.index(marker)
    length = struct.unpack_from("<Q", body, at + 33)[0]
    without = body[:at] + body[at + 41 + length : -(8 + 32)]
    count = struct.unpack_from("<Q", body, len(body) - 40)[0] - 1
    rebuilt = without + struct.pack("<Q", count)
    rebuilt += blake3.blake3(rebuilt).digest()
    path.write_bytes(rebuilt)
    with pytest.raises(BundleError, match="neither in the bundle nor in the store"):
        import_bundle(fresh, path)
    _assert_untouched(fresh)


def test_export_of_damaged_store_refuses(store: Store, tmp_path: Path) -> None:
    """Exporting a ref whose objects are missing fails and leaves no file behind."""
    root = store.put_snapshot({"a": "alpha"})
    store.set_ref("snaps/x", root)
    child = store.put_value("alpha")
    env = store.environment
    env.write(lambda txn: txn.delete(child.raw, db=env.dbs["objects"]))
    out = tmp_path / "out.pinrun"
    with pytest.raises(MissingObjectError):
        export_bundle(store, ["snaps/x"], out)
    assert not out.exists()
    assert list(tmp_path.glob(".out.pinrun*")) == []


def test_ref_conflict_needs_force(store: Store, bundle: Path, fresh: Store) -> None:
    """A bundle ref that would move an existing ref is refused unless forced."""
    other = fresh.put_value("something else")
    fresh.set_ref("snaps/one", other)
    before = fresh.object_count()
    with pytest.raises(InputError, match="--force"):
        import_bundle(fresh, bundle)
    assert fresh.object_count() == before
    assert fresh.ref("snaps/one") == other
    import_bundle(fresh, bundle, force=True)
    assert fresh.ref("snaps/one") == store.ref("snaps/one")


def test_progress_is_reported(store: Store, tmp_path: Path, fresh: Store) -> None:
    """Long exports and imports report progress: objects written, then bytes verified."""
    with store.batch() as batch:
        # Random hex barely compresses, so the bundle spans several 1 MiB progress steps.
        # Each value is over trees.INLINE_LIMIT, so each is an object of its own.
        root = batch.put_snapshot({f"k{n}": os.urandom(8500).hex() for n in range(300)})
        batch.set_ref("snaps/big", root)
    exported: list[tuple[int, int]] = []
    export_bundle(store, ["snaps/big"], tmp_path / "big", lambda d, t: exported.append((d, t)))
    assert exported
    assert exported[0] == (256, 0)
    imported: list[tuple[int, int]] = []
    import_bundle(fresh, tmp_path / "big", progress=lambda d, t: imported.append((d, t)))
    size = (tmp_path / "big").stat().st_size
    assert imported
    assert all(total == size and 0 < done <= size for done, total in imported)
    assert [done for done, _ in imported] == sorted(done for done, _ in imported)


def test_truncated_manifest_is_one_clear_message(bundle: Path, fresh: Store) -> None:
    """A bundle cut inside its manifest says so once, without nested messages."""
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(MAGIC) + 10])
    with pytest.raises(BundleError) as caught:
        import_bundle(fresh, bundle)
    assert str(caught.value).count("Nothing was written") == 1
    assert "truncated" in str(caught.value)


def _bundle_with(store: Store, tmp_path: Path, kind: Kind, payload: bytes) -> Path:
    """A well-formed bundle (digests and checksum right) holding one crafted object."""
    from pinrun.artifacts.objects import encode_record

    obj = encode_record(kind, payload)
    store.put_objects([obj])
    store.set_ref("bad/object", obj.digest)
    path = tmp_path / "crafted.pinrun"
    export_bundle(store, ["bad/object"], path)
    return path


@pytest.mark.parametrize(("kind", "payload"), [
    (Kind.VALUE, b"this is not json"),
    (Kind.TREE, b'{"entries":[1,2],"type":"map"}'),
    (Kind.TREE, b'{"entries":{"a":"not a digest"},"type":"map"}'),
])
def test_objects_that_do_not_parse_are_refused(store: Store, tmp_path: Path, fresh: Store,
                                               kind: Kind, payload: bytes) -> None:
    """A crafted object whose digest is right but whose content is nonsense is refused."""
    path = _bundle_with(store, tmp_path, kind, payload)
    problems = fsck(store).problems
    assert [p.kind for p in problems] == ["corrupt"]
    with pytest.raises(BundleError, match="altered or damaged"):
        import_bundle(fresh, path)
    _assert_untouched(fresh)
