"""Refs stored with a check (store format 2), format 1 stores, and `pinrun upgrade`."""

from __future__ import annotations

import json
from pathlib import Path

import lmdb
import pytest

from pinrun.artifacts.digest import DIGEST_SIZE
from pinrun.artifacts.fsck import fsck
from pinrun.artifacts.maintenance import gc
from pinrun.artifacts.refs import REF_CHECK_SIZE, ref_check
from pinrun.artifacts.store import STORE_FORMAT, Store
from pinrun.artifacts.upgrade import upgrade
from pinrun.errors import RefConflictError, StoreDamagedError, StoreError, StoreInUseError
from tests.artifacts.ref_helpers import format_one_store, pinrun_cli, raw_refs, tag_refs
from tests.helpers import store_held_open


def _flip_in_file(data_file: Path, old: bytes, new: bytes) -> int:
    """Replace every copy of ``old`` in ``data_file`` by ``new`` (same length): one flipped
    bit per copy when they differ by one bit. Returns how many copies there were."""
    raw = data_file.read_bytes()
    count = raw.count(old)
    data_file.write_bytes(raw.replace(old, new))
    return count


def test_a_new_store_keeps_each_ref_with_its_check(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with Store.open(path, create=True) as store:
        assert store.checks_refs
        targets = tag_refs(store, ["tags/a", "tags/b"])
        assert store.refs("tags/") == targets
        assert store.get_refs(["tags/a", "tags/none"]) == [targets["tags/a"], None]
        assert dict(store.iter_refs("tags/", reverse=True)) == targets
    raw = raw_refs(path)
    for name, target in targets.items():
        value = raw[name.encode()]
        assert len(value) == DIGEST_SIZE + REF_CHECK_SIZE
        assert value[:DIGEST_SIZE] == target.raw
        assert value[DIGEST_SIZE:] == ref_check(name.encode(), value[:DIGEST_SIZE])


def test_the_check_covers_the_name_and_the_target() -> None:
    target = bytes(range(32))
    check = ref_check(b"tags/t71", target)
    assert ref_check(b"tags/t73", target) != check
    assert ref_check(b"tags/t71", bytes(31) + b"\x01") != check
    # A zero byte (which no name holds) ends the name: another split is another check.
    assert ref_check(b"tags/t7", b"1" + target[:31]) != ref_check(b"tags/t71", target[:31])


def test_a_flipped_bit_in_a_ref_name_is_seen_by_fsck_and_by_reads(tmp_path: Path) -> None:
    """The damage fsck missed before refs carried a check: `tags/t71` read as `tags/t73`,
    a valid name, still in key order (between t70 and t75)."""
    path = tmp_path / "s"
    with Store.open(path, create=True) as store:
        tag_refs(store, ["tags/t70", "tags/t71", "tags/t75"])
    assert _flip_in_file(path / "data.mdb", b"tags/t71", b"tags/t73") >= 1
    with Store.open(path) as store:
        report = fsck(store)
        assert [p.kind for p in report.problems] == ["bad-ref"]
        assert "'tags/t73'" in report.problems[0].detail
        assert "does not match its check" in report.problems[0].detail
        with pytest.raises(StoreDamagedError, match="tags/t73"):
            store.refs("tags/")
        with pytest.raises(StoreDamagedError, match="tags/t73"):
            store.get_ref("tags/t73")
        assert store.get_ref("tags/t70") is not None  # the others read on
        with pytest.raises(StoreDamagedError):
            gc(store)  # never deletes what a damaged ref's true target reaches
    result = pinrun_cli(path, "fsck")
    assert result.returncode == 3
    assert "bad-ref" in result.stdout
    assert "tags/t73" in result.stdout


@pytest.mark.parametrize("where", [0, DIGEST_SIZE - 1, DIGEST_SIZE,
                                   DIGEST_SIZE + REF_CHECK_SIZE - 1])
def test_a_flipped_bit_in_a_ref_value_is_seen(tmp_path: Path, where: int) -> None:
    path = tmp_path / "s"
    with Store.open(path, create=True) as store:
        tag_refs(store, ["tags/only"])
    value = raw_refs(path)[b"tags/only"]
    damaged = bytearray(value)
    damaged[where] ^= 0x10
    assert _flip_in_file(path / "data.mdb", value, bytes(damaged)) >= 1
    with Store.open(path) as store:
        report = fsck(store)
        assert any(p.kind == "bad-ref" and "tags/only" in p.detail for p in report.problems)
        with pytest.raises(StoreDamagedError, match="tags/only"):
            store.get_ref("tags/only")


def test_a_format_one_store_is_read_and_written_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        assert not store.checks_refs
        targets = tag_refs(store, ["tags/a", "tags/b"])
        store.set_ref("tags/a", targets["tags/b"], expected=targets["tags/a"])
        with pytest.raises(RefConflictError):
            store.set_ref("tags/a", targets["tags/a"], expected=targets["tags/a"])
        assert store.refs("tags/") == {"tags/a": targets["tags/b"], "tags/b": targets["tags/b"]}
        report = fsck(store)
        assert report.ok
        assert report.store_format == 1
    assert all(len(v) == DIGEST_SIZE for v in raw_refs(path).values())
    result = pinrun_cli(path, "fsck")
    assert result.returncode == 0
    assert "refs carry no checks" in result.stdout
    assert "pinrun upgrade" in result.stdout
    assert json.loads(pinrun_cli(path, "fsck", "--json").stdout)["store_format"] == 1


def test_in_a_format_one_store_a_flipped_name_still_passes_fsck(tmp_path: Path) -> None:
    """Why format 2 exists: without a check, the same flip reads as another valid ref."""
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        tag_refs(store, ["tags/t70", "tags/t71", "tags/t75"])
    assert _flip_in_file(path / "data.mdb", b"tags/t71", b"tags/t73") >= 1
    with Store.open(path) as store:
        assert fsck(store).ok
        assert sorted(store.refs("tags/")) == ["tags/t70", "tags/t73", "tags/t75"]


def test_upgrade_gives_every_ref_its_check_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        targets = tag_refs(store, [f"tags/v{n}" for n in range(300)])
        report = upgrade(store)
        assert report.upgraded
        assert report.refs_rewritten == 300
        assert (report.format_before, report.format_after) == (1, int(STORE_FORMAT))
        assert store.checks_refs
        assert store.refs("tags/") == targets
        store.set_ref("tags/new", targets["tags/v0"])  # written with a check from now on
        assert not upgrade(store).upgraded  # a second upgrade has nothing to do
        assert fsck(store).ok
    raw = raw_refs(path)
    assert len(raw) == 301
    assert all(v[DIGEST_SIZE:] == ref_check(k, v[:DIGEST_SIZE]) for k, v in raw.items())
    with Store.open(path) as store:
        assert store.checks_refs
        assert fsck(store).store_format == int(STORE_FORMAT)


def test_upgrade_refuses_a_damaged_ref_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        tag_refs(store, ["tags/a"])
    with lmdb.open(str(path), max_dbs=8, subdir=True) as env, env.begin(write=True) as txn:
        txn.put(b"tags/short", b"12345", db=env.open_db(b"refs", txn=txn, create=False))
    before = raw_refs(path)
    with Store.open(path) as store:
        with pytest.raises(StoreDamagedError, match=r"tags/short.*not upgraded"):
            upgrade(store)
        assert not store.checks_refs
    assert raw_refs(path) == before
    with Store.open(path) as store:
        assert not store.checks_refs


def test_upgrade_refuses_while_another_process_has_the_store_open(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        tag_refs(store, ["tags/a"])
    with store_held_open(path):
        result = pinrun_cli(path, "upgrade")
        assert result.returncode == 3, result.stderr
        assert "cannot upgrade the store" in result.stderr
        assert "Traceback" not in result.stderr
    assert all(len(v) == DIGEST_SIZE for v in raw_refs(path).values())
    with Store.open(path) as store, Store.open(path) as other:
        with pytest.raises(StoreInUseError, match="cannot upgrade"):
            upgrade(store)
        other.set_ref("tags/b", other.ref("tags/a"))  # still format 1, for both handles
    assert all(len(v) == DIGEST_SIZE for v in raw_refs(path).values())


def test_the_upgrade_command(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        tag_refs(store, ["tags/a", "tags/b"])
    result = pinrun_cli(path, "upgrade")
    assert result.returncode == 0, result.stderr
    assert "from format 1 to 2: 2 refs now carry a check" in result.stdout
    again = json.loads(pinrun_cli(path, "upgrade", "--json").stdout)
    assert again == {"upgraded": False, "format_before": 2, "format_after": 2,
                     "refs_rewritten": 0}
    checked = pinrun_cli(path, "fsck")
    assert checked.returncode == 0
    assert "no checks" not in checked.stdout
    assert "upgrade" in pinrun_cli(path, "--help").stdout


def test_a_store_of_an_unknown_format_is_refused(tmp_path: Path) -> None:
    """What an older pinrun says of a format 2 store, said here of a format 3 one."""
    path = tmp_path / "s"
    Store.open(path, create=True).close()
    with lmdb.open(str(path), max_dbs=8, subdir=True) as env, env.begin(write=True) as txn:
        txn.put(b"format", b"3", db=env.open_db(b"meta", txn=txn, create=False))
    with pytest.raises(StoreError, match=r"format '3'.*upgrade pinrun"):
        Store.open(path)


def test_bundles_move_between_formats(tmp_path: Path) -> None:
    """An export of a format 1 store imports into a format 2 one with checks, and back."""
    from pinrun.artifacts.bundle import export_bundle
    from pinrun.artifacts.bundle_import import import_bundle

    old, new = tmp_path / "old", tmp_path / "new"
    format_one_store(old)
    with Store.open(old) as store:
        targets = tag_refs(store, ["tags/a", "tags/b"])
        export_bundle(store, ["tags/a", "tags/b"], tmp_path / "b.pinrun")
    with Store.open(new, create=True) as store:
        import_bundle(store, tmp_path / "b.pinrun")
        assert store.refs("tags/") == targets
        assert fsck(store).ok
        export_bundle(store, ["tags/a", "tags/b"], tmp_path / "c.pinrun")
    assert all(len(v) == DIGEST_SIZE + REF_CHECK_SIZE for v in raw_refs(new).values())
    back = tmp_path / "back"
    format_one_store(back)
    with Store.open(back) as store:
        import_bundle(store, tmp_path / "c.pinrun")
        assert store.refs("tags/") == targets
        assert fsck(store).ok
    assert all(len(v) == DIGEST_SIZE for v in raw_refs(back).values())
