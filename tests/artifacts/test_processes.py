"""Real processes: killed writers, concurrent writers, and map growth under readers."""

from __future__ import annotations

import multiprocessing
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pinrun.artifacts import codec
from pinrun.artifacts.dictionary import format_dictionary
from pinrun.artifacts.digest import Kind, compute_digest
from pinrun.artifacts.maintenance import fsck, gc
from pinrun.artifacts.store import Store
from tests.helpers import python_child, start_child

pytestmark = pytest.mark.slow

# A writer that commits one large snapshot and its ref per batch, forever.
WRITER = """
import sys
from pinrun.artifacts.store import Store

path, mode = sys.argv[1], sys.argv[2]
batch_number = -1
if mode == "hold-in-transaction":
    # Wrap the write so that, after every put of the third batch, the process
    # announces it is inside the transaction and waits there to be killed.
    from pinrun.artifacts import lmdb_env
    original = lmdb_env.Environment.write
    def write(self, operation):
        def slow(txn):
            result = operation(txn)
            if batch_number == 2:
                print("in-transaction", flush=True)
                import time
                time.sleep(60)
            return result
        return original(self, slow)
    lmdb_env.Environment.write = write

with Store.open(path, create=True, map_size=1 << 20) as store:
    batch_number = 0
    while True:
        state = {f"k{i}": {"batch": batch_number, "i": i, "pad": "p" * 400} for i in range(2000)}
        with store.batch() as batch:
            root = batch.put_snapshot(state)
            batch.set_ref(f"snaps/{batch_number:05d}", root)
        print(batch_number, flush=True)
        batch_number += 1
"""


def _assert_consistent(path: Path) -> int:
    """Every ref names a complete snapshot, fsck is clean, and nothing is unreachable."""
    with Store.open(path) as store:
        report = fsck(store)
        assert report.ok, report.problems
        refs = store.refs("snaps/")
        for name, root in refs.items():
            number = int(name.split("/")[1])
            state = store.get_snapshot(root)
            assert len(state) == 2000
            assert state["k1999"] == {"batch": number, "i": 1999, "pad": "p" * 400}
        leftover = gc(store, dry_run=True)
        assert leftover.deleted == 0, "objects of an uncommitted batch are visible"
        return len(refs)


def _wait_for_line(child: subprocess.Popen[str], wanted: str) -> None:
    assert child.stdout is not None
    assert child.stderr is not None
    for line in child.stdout:
        if line.strip() == wanted:
            return
    raise AssertionError(f"child ended before printing {wanted!r}: {child.stderr.read()}")


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate()


def test_writer_killed_at_random_moments_leaves_store_consistent(tmp_path: Path) -> None:
    """SIGKILL at random points of a batch loop never leaves a partial snapshot behind."""
    path = tmp_path / "store"
    rng = random.Random(7)
    committed = 0
    for round_number in range(3):
        child = start_child(WRITER, str(path), "plain")
        _wait_for_line(child, str(committed + 1) if round_number else "1")
        time.sleep(rng.uniform(0.0, 0.3))
        _kill(child)
        committed = _assert_consistent(path)
        assert committed >= 2


def test_writer_killed_inside_transaction_commits_nothing(tmp_path: Path) -> None:
    """A writer killed after its puts but before its commit leaves no trace of that batch."""
    path = tmp_path / "store"
    child = start_child(WRITER, str(path), "hold-in-transaction")
    _wait_for_line(child, "in-transaction")
    _kill(child)
    assert _assert_consistent(path) == 2
    with Store.open(path) as store:
        assert sorted(store.refs("snaps/")) == ["snaps/00000", "snaps/00001"]


OVERLAPPING_WRITER = """
import sys
from pinrun.artifacts.store import Store

path, first = sys.argv[1], int(sys.argv[2])
with Store.open(path, create=True, map_size=128 * 1024) as store:
    for start in range(first, first + 1000, 50):
        with store.batch() as batch:
            for n in range(start, start + 50):
                batch.put_value({"n": n, "text": "value number %d " % n * 20})
"""


def test_four_processes_write_overlapping_objects(tmp_path: Path) -> None:
    """Four writers with half-overlapping objects: each object stored once, all valid."""
    path = tmp_path / "store"
    Store.open(path, create=True, map_size=128 * 1024).close()
    children = [start_child(OVERLAPPING_WRITER, str(path), str(500 * i)) for i in range(4)]
    for child in children:
        _out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
    expected = {
        compute_digest(Kind.VALUE, codec.encode({"n": n, "text": f"value number {n} " * 20}))
        for n in range(2500)
    }
    with Store.open(path) as store:
        # (and the format dictionary their records are compressed with, stored once)
        assert store.object_count() == len(expected) + 1
        assert store.has(format_dictionary().digest)
        for digest in expected:
            kind, _ = store.load(digest)
            assert kind is Kind.VALUE
        assert fsck(store).ok
        assert store.environment.map_size > 128 * 1024


READER = """
import sys
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.store import Store

path, done_flag = sys.argv[1], sys.argv[2]
import os
with Store.open(path) as store:
    digests = [Digest.from_hex(line) for line in open(sys.argv[3]).read().split()]
    rounds = 0
    while not os.path.exists(done_flag) or rounds < 3:
        for digest in digests:
            assert store.get_value(digest)["n"] >= 0
        rounds += 1
    print("rounds", rounds, "map", store.environment.map_size, flush=True)
"""

GROWER = """
import os, sys
from pinrun.artifacts.store import Store

with Store.open(sys.argv[1]) as store:
    for n in range(300):
        store.put_blob(os.urandom(64 * 1024))
    print("map", store.environment.map_size, flush=True)
open(sys.argv[2], "w").close()
"""


def test_map_growth_while_another_process_reads(tmp_path: Path) -> None:
    """A reader keeps reading valid objects while another process grows the map many times."""
    path = tmp_path / "store"
    with Store.open(path, create=True, map_size=256 * 1024) as store:
        digests = [store.put_value({"n": n, "pad": "x" * 200}) for n in range(200)]
        initial_map = store.environment.map_size
    listing = tmp_path / "digests.txt"
    listing.write_text("\n".join(d.hex for d in digests))
    done = tmp_path / "grower-done"
    reader = start_child(READER, str(path), str(done), str(listing))
    grown = python_child(GROWER, str(path), str(done))
    out, err = reader.communicate(timeout=180)
    assert reader.returncode == 0, err
    assert int(grown.stdout.split()[-1]) >= 16 * initial_map
    assert out.startswith("rounds")
    with Store.open(path) as store:
        assert fsck(store).ok


GC_WRITER = """
import sys
from pinrun.artifacts.store import Store

with Store.open(sys.argv[1]) as store:
    for n in range(60):
        with store.batch() as batch:
            shared = {"common": "shared " * 100, "n": n}
            batch.set_ref(f"snaps/{n:03d}", batch.put_snapshot(shared))
        if n % 3 == 0:
            store.delete_ref(f"snaps/{n:03d}")
"""


def test_gc_concurrent_with_writer_keeps_every_rooted_object(tmp_path: Path) -> None:
    """gc running repeatedly beside a writer never deletes an object a ref reaches."""
    path = tmp_path / "store"
    with Store.open(path, create=True) as store:
        writer = start_child(GC_WRITER, str(path))
        sweeps = 0
        while writer.poll() is None:
            gc(store)
            sweeps += 1
        _out, err = writer.communicate()
        assert writer.returncode == 0, err
        gc(store)
        assert fsck(store).ok
        refs = store.refs("snaps/")
        assert len(refs) == 40
        for name, root in refs.items():
            assert store.get_snapshot(root)["n"] == int(name.split("/")[1])
        assert sweeps >= 1


def _forked_child_work(store: Store, digest_hex: str, queue: multiprocessing.Queue[str]) -> None:
    from pinrun.artifacts.digest import Digest

    value = store.get_value(Digest.from_hex(digest_hex))
    written = store.put_value({"from": "child", "saw": value})
    queue.put(written.hex)


def test_store_inherited_through_fork_reopens_in_child(store: Store) -> None:
    """A Store handed to a forked worker works there, and the parent's handle keeps working."""
    digest = store.put_value("from parent")
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    worker = context.Process(target=_forked_child_work, args=(store, digest.hex, queue))
    worker.start()
    written = queue.get(timeout=60)
    worker.join(timeout=60)
    assert worker.exitcode == 0
    assert store.get_value(store.resolve(written)) == {"from": "child", "saw": "from parent"}
    assert fsck(store).ok
