"""A review of refs with checks (store format 2, commit 049a4d2): attacks and edge cases.

The review's findings were each first held by a strict ``xfail`` test; they are
fixed, and those tests now pass as they are. The others hold behaviour the
review checked and found right, which no test held before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts.digest import DIGEST_SIZE
from pinrun.artifacts.fsck import fsck
from pinrun.artifacts.refs import REF_CHECK_SIZE, ref_check
from pinrun.artifacts.store import DICTIONARY_REF, Store
from pinrun.artifacts.upgrade import upgrade
from pinrun.errors import StoreDamagedError, StoreInUseError
from tests.artifacts.ref_helpers import (
    RawEdit,
    edit_refs,
    format_one_store,
    pinrun_cli,
    raw_refs,
    tag_refs,
)
from tests.damage_trials import build_store
from tests.helpers import SRC, store_held_open, traced_peak


def _checked(key: bytes, target: bytes) -> bytes:
    return target + ref_check(key, target)




def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's error, asserted to be one line, exit 3, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of two recorded runs and a few dozen tags (the damage trials' store)."""
    folder = tmp_path_factory.mktemp("recorded")
    build_store(folder / "store", runs=2)
    return folder / "store"


@pytest.fixture
def copy(recorded: Path, tmp_path: Path) -> Path:
    """A fresh copy of ``recorded``, with the flow's module beside it (for verify)."""
    shutil.copy(recorded.parent / "damage_trial_flow.py", tmp_path / "damage_trial_flow.py")
    target = tmp_path / "store"
    shutil.copytree(recorded, target)
    (target / "lock.mdb").unlink(missing_ok=True)
    return target


def _run_keys(path: Path) -> list[bytes]:
    return sorted(k for k in raw_refs(path) if k.startswith(b"runs/"))


# ----------------------------------------------------------------------------------------
# Reading a prefix decodes a ref outside it


def test_refs_of_a_prefix_do_not_read_the_damaged_ref_after_it(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with Store.open(path, create=True) as store:
        targets = tag_refs(store, ["tags/a", "tags/b"])
    # tags/b's check broken: tags/b is damage, tags/a is not.
    edit_refs(path, lambda txn, refs, meta: txn.put(b"tags/b", targets["tags/b"].raw + bytes(8),
                                                db=refs))
    with Store.open(path) as store:
        assert dict(store.iter_refs("tags/a")) == {"tags/a": targets["tags/a"]}  # lazy: fine
        with pytest.raises(StoreDamagedError):
            store.get_ref("tags/b")
        assert store.refs("tags/a") == {"tags/a": targets["tags/a"]}


def test_a_damaged_unrelated_ref_does_not_fail_a_tag_selection(copy: Path) -> None:
    key = b"tags/zz"
    edit_refs(copy, lambda txn, refs, meta: txn.put(key, bytes(DIGEST_SIZE + REF_CHECK_SIZE),
                                                db=refs))
    assert pinrun_cli(copy, "fsck").returncode == 3  # the damage is there, and seen
    result = pinrun_cli(copy, "runs", "--tag", "nightly")
    assert result.returncode == 0, result.stderr
    assert "no runs match" in result.stdout


# ----------------------------------------------------------------------------------------
# A ref whose check matches but whose name is no ref name


def _invalid_run_ref(txn: Any, refs: Any, meta: Any) -> None:
    """``runs/../x`` -> the first run's record, with a check that matches (an attacker can
    compute it; in a format 1 store, a flipped bit that makes a control character does it)."""
    first = sorted(k for k, _ in txn.cursor(db=refs) if bytes(k).startswith(b"runs/"))[0]
    target = bytes(txn.get(first, db=refs))[:DIGEST_SIZE]
    txn.put(b"runs/../x", _checked(b"runs/../x", target), db=refs)


def test_a_ref_whose_name_is_no_ref_name_is_damage_when_read(copy: Path) -> None:
    edit_refs(copy, _invalid_run_ref)
    with Store.open(copy, readonly=True) as store:
        assert any(p.kind == "bad-ref" for p in fsck(store).problems)
        with pytest.raises(StoreDamagedError):
            store.refs()


def test_verify_calls_a_ref_with_no_ref_name_store_damage(copy: Path) -> None:
    edit_refs(copy, _invalid_run_ref)
    line = _one_line_error(pinrun_cli(copy, "verify", "--code", "pinned", cwd=copy.parent))
    assert "damaged" in line


def test_export_refuses_a_ref_with_no_ref_name(copy: Path) -> None:
    edit_refs(copy, _invalid_run_ref)
    bundle = copy.parent / "all.bundle"
    exported = pinrun_cli(copy, "export", "--all", "-o", str(bundle))
    if exported.returncode == 0:  # what happens now: the bundle cannot be imported
        imported = pinrun_cli(copy.parent / "other", "import", str(bundle))
        assert imported.returncode == 2
        assert "malformed" in imported.stderr
    _one_line_error(exported)


# ----------------------------------------------------------------------------------------
# Crafted stores through the CLI: one line, exit 3, never a traceback


def _value(size: int) -> RawEdit:
    def edit(txn: Any, refs: Any, meta: Any) -> None:
        key = sorted(k for k, _ in txn.cursor(db=refs) if bytes(k).startswith(b"runs/"))[0]
        txn.put(key, (bytes(txn.get(key, db=refs)) * 2)[:size], db=refs)
    return edit


def _flipped_name(txn: Any, refs: Any, meta: Any) -> None:
    key = sorted(bytes(k) for k, _ in txn.cursor(db=refs) if bytes(k).startswith(b"runs/"))[0]
    value = txn.get(key, db=refs)
    txn.delete(key, db=refs)
    txn.put(key[:-1] + bytes([key[-1] ^ 1]), value, db=refs)


def _marker(marker: bytes, bare: bool = False) -> RawEdit:
    def edit(txn: Any, refs: Any, meta: Any) -> None:
        txn.put(b"format", marker, db=meta)
        if bare:
            for key, value in list(txn.cursor(db=refs)):
                txn.put(bytes(key), bytes(value)[:DIGEST_SIZE], db=refs)
    return edit


def _non_utf8_name(txn: Any, refs: Any, meta: Any) -> None:
    target = bytes(txn.get(b"tags/t0", db=refs))[:DIGEST_SIZE]
    txn.put(b"runs/\xc3(", _checked(b"runs/\xc3(", target), db=refs)


CRAFTED: dict[str, RawEdit] = {
    "value of 0 bytes": _value(0),
    "value of 5 bytes": _value(5),
    "value of 41 bytes": _value(41),
    "a flipped bit in a run's name": _flipped_name,
    "a marker of 1 over refs with checks": _marker(b"1"),
    "a marker of 2 over bare refs": _marker(b"2", bare=True),
    "a name that is not UTF-8": _non_utf8_name,
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(CRAFTED))
def test_crafted_refs_are_one_line_and_exit_3(copy: Path, damage: str) -> None:
    """Held by the review: every command that reads the damaged ref says so in one line."""
    edit_refs(copy, CRAFTED[damage])
    assert pinrun_cli(copy, "fsck").returncode == 3
    for command in (["runs"], ["gc", "--dry-run"], ["gc"], ["stats"],
                    ["verify", "--code", "pinned"], ["export", "--all", "-o", "x.bundle"]):
        line = _one_line_error(pinrun_cli(copy, *command, cwd=copy.parent))
        assert "damaged" in line, (command, line)


def test_a_marker_that_lies_about_format_one_is_refused_by_upgrade(copy: Path) -> None:
    """Held: refs with checks under a marker of 1 are not sealed a second time."""
    edit_refs(copy, _marker(b"1"))
    before = raw_refs(copy)
    line = _one_line_error(pinrun_cli(copy, "upgrade"))
    assert "not upgraded" in line
    assert raw_refs(copy) == before


def test_fsck_json_does_not_claim_a_format_it_did_not_read(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    edit_refs(path, lambda txn, refs, meta: txn.put(b"format", b"0", db=meta))  # '1' ^ 0x01
    result = pinrun_cli(path, "fsck", "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["store_format"] != 2


# ----------------------------------------------------------------------------------------
# `pinrun upgrade` from a user's view


def test_upgrade_refused_in_use_speaks_of_upgrading(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    with store_held_open(path, readonly=True):
        line = _one_line_error(pinrun_cli(path, "upgrade"))
    assert "upgrade" in line
    assert "compact" not in line


def test_a_read_only_opener_holds_the_upgrade_off(tmp_path: Path) -> None:
    """Held: a process that opened the store read-only holds its open.lock shared, so the
    upgrade is refused (the refs stay bare) rather than changing the format under it."""
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        tag_refs(store, ["tags/a"])
    with store_held_open(path, readonly=True), Store.open(path) as store, \
            pytest.raises(StoreInUseError):
        upgrade(store)
    assert all(len(v) == DIGEST_SIZE for v in raw_refs(path).values())


def test_a_handle_without_the_open_lock_reads_on_after_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        targets = tag_refs(store, ["tags/a"])
    reader = subprocess.Popen([sys.executable, "-c", """if True:
        import sys
        from pinrun.artifacts import lmdb_env
        lmdb_env._hold_open_lock = lambda folder: None  # as in a read-only folder without it
        from pinrun.artifacts.store import Store
        store = Store.open(sys.argv[1], readonly=True)
        print("open", flush=True)
        sys.stdin.readline()
        try:
            print({k: v.hex for k, v in store.refs().items()}, flush=True)
        except Exception as exc:
            print(type(exc).__name__, exc, flush=True)
    """, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)))
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "open"
        with Store.open(path) as store:
            upgraded = upgrade(store).upgraded
        out, _ = reader.communicate("go\n", timeout=60)
    finally:
        reader.kill()
    assert upgraded  # nothing held it off
    assert out.strip() == str({"tags/a": targets["tags/a"].hex})


def test_upgrade_grows_a_full_map_and_runs_again(tmp_path: Path) -> None:
    """Held: a map too small for the rewrite is grown and the transaction run again."""
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        targets = tag_refs(store, [f"tags/v{n:05}" for n in range(3000)])
    size = (path / "data.mdb").stat().st_size
    with Store.open(path, map_size=size) as store:
        assert store.environment.map_size == size
        assert upgrade(store).refs_rewritten == 3000
        assert store.environment.map_size > size  # it did run out, and grew
        assert store.refs("tags/") == targets
        assert fsck(store).ok


def test_a_killed_upgrade_changes_nothing(tmp_path: Path) -> None:
    """Held: killed halfway through its transaction, the upgrade leaves format 1 as it was."""
    path = tmp_path / "s"
    format_one_store(path)
    with Store.open(path) as store:
        targets = tag_refs(store, [f"tags/v{n}" for n in range(500)])
    before = raw_refs(path)
    result = subprocess.run([sys.executable, "-c", """if True:
        import os, signal, sys
        from pinrun.artifacts import upgrade as module
        from pinrun.artifacts.store import Store
        real, calls = module.stored_ref, []
        def dying(key, target, checked):
            calls.append(key)
            if len(calls) == 250:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(key, target, checked)
        module.stored_ref = dying
        module.upgrade(Store.open(sys.argv[1]))
    """, str(path)], env=dict(os.environ, PYTHONPATH=str(SRC)), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == -9, result.stderr
    assert raw_refs(path) == before
    with Store.open(path) as store:
        assert not store.checks_refs
        assert fsck(store).ok
        assert upgrade(store).refs_rewritten == 500
        assert store.refs("tags/") == targets


@pytest.mark.slow
def test_upgrade_memory_does_not_grow_with_the_refs(tmp_path: Path) -> None:
    path = tmp_path / "s"
    format_one_store(path)

    def bare(txn: Any, refs: Any, meta: Any) -> None:
        for n in range(20_000):
            txn.put(b"runs/20261207T151407906-%06x" % n, n.to_bytes(32, "big"), db=refs)

    edit_refs(path, bare)
    with Store.open(path) as store:
        peak = traced_peak(lambda: upgrade(store))
    assert peak < 1 << 20, f"{peak:,} bytes for 20,000 refs"


@pytest.mark.parametrize("one", [True, False], ids=["format 1", "format 2"])
def test_the_dictionary_ref_a_large_batch_trains_is_kept_in_the_store_s_format(
        tmp_path: Path, one: bool) -> None:
    """Held: batch._commit_large writes the dictionary ref raw (its one raw ref write
    outside _write): bare in a format 1 store, with its check in a format 2 one."""
    path = tmp_path / "s"
    if one:
        format_one_store(path)
    with Store.open(path, create=True) as store:
        with store.batch() as batch:
            for n in range(1200):
                batch.put_value({"n": n, "text": f"order {n} of customer {n % 37}" * 3})
        dictionary = store.get_ref(DICTIONARY_REF)
        assert dictionary is not None
        assert fsck(store).ok
    value = raw_refs(path)[DICTIONARY_REF.encode()]
    assert value == (dictionary.raw if one else _checked(DICTIONARY_REF.encode(),
                                                         dictionary.raw))


def test_import_force_mends_a_damaged_ref(tmp_path: Path) -> None:
    from pinrun.artifacts.bundle import export_bundle

    path, bundle = tmp_path / "s", tmp_path / "b.pinrun"
    with Store.open(path, create=True) as store:
        targets = tag_refs(store, ["tags/a", "tags/b"])
        export_bundle(store, ["tags/a"], bundle)
    edit_refs(path, lambda txn, refs, meta: txn.put(b"tags/a", targets["tags/a"].raw + bytes(8),
                                                db=refs))
    assert pinrun_cli(path, "fsck").returncode == 3
    result = pinrun_cli(path, "import", str(bundle), "--force")
    assert result.returncode == 0, result.stderr
    assert pinrun_cli(path, "fsck").returncode == 0
    with Store.open(path) as store:
        assert store.refs("tags/") == targets


def test_a_reverse_listing_sees_a_damaged_key_past_0xff(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with Store.open(path, create=True) as store:
        target = tag_refs(store, ["runs/a"])["runs/a"]
    edit_refs(path, lambda txn, refs, meta: txn.put(b"runs/\xff\xfe",
                                                _checked(b"runs/\xff\xfe", target.raw),
                                                db=refs))
    with Store.open(path) as store:
        with pytest.raises(StoreDamagedError):
            list(store.iter_refs("runs/"))
        with pytest.raises(StoreDamagedError):
            list(store.iter_refs("runs/", reverse=True))
