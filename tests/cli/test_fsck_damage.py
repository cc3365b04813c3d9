"""Space and read-only stores: gc --compact, stats, and a store nobody may write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pinrun.artifacts.compact import compact
from pinrun.artifacts.fsck import fsck
from pinrun.artifacts.maintenance import gc, stats
from pinrun.artifacts.store import Store
from pinrun.errors import StoreInUseError, StoreReadOnlyError
from tests.cli.conftest import invoke
from tests.helpers import SRC, Project, store_held_open

FLOW = """
import pinrun


@pinrun.step
def load(n: int) -> dict:
    return {"items": list(range(n))}


@pinrun.step
def total(items: list) -> dict:
    return {"total": sum(items)}


flow = pinrun.Flow("space", [load, total])
"""


def _snapshot(store: Store) -> tuple[dict[bytes, bytes], dict[str, str]]:
    """Every object's raw record and every ref: what must survive a compaction."""
    return dict(store.iter_records()), {k: v.hex for k, v in store.refs().items()}


def _churn(store: Store, count: int = 2000) -> None:
    """Write and drop many objects, so the data file holds free pages after gc."""
    with store.batch() as batch:
        for n in range(count):
            batch.set_ref(f"junk/{n}", batch.put_value({"n": n, "noise": os.urandom(600)}))
    with store.batch() as batch:
        for n in range(count):
            batch.delete_ref(f"junk/{n}")


def test_compaction_shrinks_the_file_and_keeps_everything(
    project: Project, project_cli: CliRunner,
) -> None:
    """gc --compact shrinks data.mdb; fsck is clean, objects and refs are identical, runs replay."""
    project.write("space", FLOW)
    run_id = invoke(project_cli, "run", project.entry("space"), "--set", "n=50").stdout.strip()
    folder = project.root / ".pinrun"
    with Store.open(folder) as store:
        _churn(store)
        gc(store)
        kept = _snapshot(store)
    before = (folder / "data.mdb").stat().st_size
    out = json.loads(invoke(project_cli, "gc", "--compact", "--json").stdout)
    after = (folder / "data.mdb").stat().st_size
    assert out["compacted"] == {"before_bytes": before, "after_bytes": after}
    assert after < before / 2, (before, after)
    assert not (folder / "compact.tmp").exists()
    with Store.open(folder) as store:
        assert _snapshot(store) == kept
        assert fsck(store).ok
        figures = stats(store)
        assert figures.live_bytes <= figures.file_bytes == after
        store.put_value("still writable after the swap")
    assert "reproduced" in invoke(project_cli, "replay", run_id).output


def test_compaction_refuses_while_another_process_has_the_store_open(store: Store) -> None:
    """Another process holding the store open makes compaction refuse, changing nothing."""
    store.set_ref("tags/a", store.put_value("a"))
    with store_held_open(store.path):
        before = (store.path / "data.mdb").stat().st_ino
        with pytest.raises(StoreInUseError, match="another process has it open"):
            compact(store)
        assert (store.path / "data.mdb").stat().st_ino == before
    store.put_value("the refusal released the lock")
    compact(store)
    assert store.get_value(store.ref("tags/a")) == "a"


def test_a_second_handle_in_the_process_blocks_compaction(store_path: Path) -> None:
    """Two handles on one store in one process: compaction refuses rather than pull the rug."""
    with Store.open(store_path, create=True) as one, Store.open(store_path) as two:
        two.put_value("x")
        with pytest.raises(StoreInUseError, match="another handle"):
            compact(one)


def test_stats_shows_free_pages_against_the_file(project_cli: CliRunner, project: Project) -> None:
    """`pinrun stats` says how much of the file is in use, and points at gc --compact."""
    with Store.open(project.root / ".pinrun") as store:
        _churn(store, 3000)
        gc(store)
    out = invoke(project_cli, "stats").output
    assert "in use" in out
    assert "pinrun gc --compact" in out


def test_gc_marks_a_graph_larger_than_one_read_chunk(store: Store) -> None:
    """gc's chunked marking keeps every object a ref reaches, however many transactions it takes."""
    with store.batch() as batch:
        root = batch.put_snapshot({f"k{n}": {"n": n} for n in range(1500)})
        batch.set_ref("snapshots/big", root)
    store.put_value("loose")
    report = gc(store)
    assert report.deleted == 1
    assert len(store.get_snapshot(root)) == 1500
    assert fsck(store).ok


@pytest.fixture
def readonly_store() -> Iterator[Path]:
    """A store with a run, in a folder (and files) nobody may write; world-readable."""
    base = Path(tempfile.mkdtemp(prefix="pinrun-ro-"))
    try:
        os.chmod(base, 0o755)
        folder = base / "store"
        with Store.open(folder, create=True) as store:
            store.set_ref("tags/x", store.put_snapshot({"a": 1, "b": "two"}))
        for path in (folder, *folder.iterdir()):
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
        yield folder
    finally:
        for path in base.rglob("*"):
            os.chmod(path, 0o755)
        shutil.rmtree(base)


def _as_reader(*args: str) -> subprocess.CompletedProcess[str]:
    """``pinrun ARGS`` as a user who cannot write the store (``nobody`` when we are root)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = dict(os.environ, PYTHONPATH=str(SRC), HOME="/tmp")
    return subprocess.run([*prefix, sys.executable, "-m", "pinrun", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=120, cwd="/tmp")


def test_read_only_commands_work_on_a_store_nobody_may_write(readonly_store: Path) -> None:
    """stats, fsck, cat, runs and export read a store its user cannot write; writes say why."""
    where = ["--store", str(readonly_store)]
    for command in (["stats"], ["fsck"], ["cat", "tags/x"], ["runs"]):
        result = _as_reader(*where, *command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    bundle = Path(tempfile.mkdtemp(prefix="pinrun-ro-out-"))
    os.chmod(bundle, 0o777)
    try:
        result = _as_reader(*where, "export", "tags/x", "-o", str(bundle / "x.pinrun"))
        assert result.returncode == 0, result.stderr
    finally:
        shutil.rmtree(bundle)
    refused = _as_reader(*where, "gc")
    assert refused.returncode == 3
    assert "read-only" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_store_opened_read_only_refuses_writes(store: Store) -> None:
    """Store.open(readonly=True) reads everything and refuses writes with StoreReadOnlyError."""
    store.set_ref("tags/x", store.put_value("x"))
    path = store.path
    store.close()
    with Store.open(path, readonly=True) as reader:
        assert reader.get_value(reader.ref("tags/x")) == "x"
        with pytest.raises(StoreReadOnlyError, match="opened read-only"):
            reader.put_value("y")


def test_a_symlinked_store_keeps_its_project_root(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A .pinrun symlinked to storage elsewhere is found upward and names its project's root."""
    from pinrun.artifacts.discovery import find_store
    from pinrun.artifacts.store import open_store
    from pinrun.flows.pinning import project_root_for

    project = tmp_path / "project"
    (project / "sub" / "deeper").mkdir(parents=True)
    Store.open(tmp_path / "storage" / "store", create=True).close()
    (project / ".pinrun").symlink_to(tmp_path / "storage" / "store")
    monkeypatch.chdir(project / "sub" / "deeper")
    monkeypatch.delenv("PINRUN_STORE", raising=False)
    assert find_store(Path.cwd()) == project.resolve() / ".pinrun"
    with open_store() as store:
        assert store.path == project.resolve() / ".pinrun"
        assert project_root_for(store.path) == project.resolve()
        store.put_value("written through the link")
    with Store.open(tmp_path / "storage" / "store") as direct:
        assert direct.object_count() == 1
