"""A replay reads back what it compares against: a damaged recording is a store error.

Equal digests say nothing about the recorded objects behind them; a replay
that matched a damaged or missing output object must not say ``reproduced``.
The damage is done as it happens on disk: bad bytes under an existing key,
written with py-lmdb straight into the objects database.
"""

from __future__ import annotations

from typing import Any

import pytest

import pinrun
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.errors import CorruptObjectError, MissingObjectError
from tests.helpers import Project, project_cli

SHOP = """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2, "note": "a value only this step's outputs hold"}


@pinrun.step
def plus(doubled: int) -> dict:
    return {"done": doubled + 1}


flow = pinrun.Flow("damaged", [double, plus])
"""


def _output_object(store: Store, run_id: str, which: str) -> Digest:
    """The digest of step ``double``'s output tree, or of one of its values."""
    (record,) = [s for s in load_run(store, run_id).steps if s.name == "double"]
    assert record.outputs is not None
    if which == "tree":
        return record.outputs
    entries: dict[str, Digest] = store.get_object(record.outputs, Kind.TREE)["entries"]
    return entries[which]


def _damage(store: Store, digest: Digest, *, delete: bool = False) -> None:
    """Overwrite (or delete) the stored record of ``digest`` behind the store's back."""
    env = store.environment
    objects = env.dbs["objects"]

    def operation(txn: Any) -> None:
        if delete:
            txn.delete(digest.raw, db=objects)
            return
        good = txn.get(digest.raw, db=objects)
        txn.put(digest.raw, good[:-3] + b"BAD", db=objects)

    env.write(operation)


@pytest.fixture
def run_id(project: Project, project_store: Store) -> str:
    """A recorded run of the two-step flow, which reproduces while the store is whole."""
    project.write("shop", SHOP)
    run = pinrun.record(project.load("shop"), {"n": 3}, store=project_store)
    assert pinrun.replay(run.id, store=project_store).reproduced
    return run.id


@pytest.mark.parametrize("code", ["pinned", "workdir"])
@pytest.mark.parametrize("which", ["tree", "note"])
def test_a_corrupt_recorded_output_raises(run_id: str, project_store: Store, which: str,
                                          code: str) -> None:
    """A damaged output tree or value makes the replay raise CorruptObjectError."""
    digest = _output_object(project_store, run_id, which)
    _damage(project_store, digest)
    with pytest.raises(CorruptObjectError, match=digest.hex):
        pinrun.replay(run_id, store=project_store, code=code)  # type: ignore[arg-type]


def test_a_missing_recorded_output_raises(run_id: str, project_store: Store) -> None:
    """A deleted output value makes the replay raise MissingObjectError, also on repeat."""
    digest = _output_object(project_store, run_id, "note")
    _damage(project_store, digest, delete=True)
    with pytest.raises(MissingObjectError, match=digest.hex):
        pinrun.replay(run_id, store=project_store, repeat=2)


_cli = project_cli


@pytest.mark.slow
def test_replay_and_verify_exit_3_on_a_corrupt_recorded_output(
        run_id: str, project: Project, project_store: Store) -> None:
    """`pinrun replay` and `pinrun verify` exit 3 naming the object, never `reproduced`."""
    digest = _output_object(project_store, run_id, "note")
    _damage(project_store, digest)
    replayed = _cli(project, "replay", run_id)
    assert replayed.returncode == 3, (replayed.stdout, replayed.stderr)
    assert replayed.stdout == ""
    assert replayed.stderr.count("\n") == 1
    assert f"object {digest.hex} is corrupt" in replayed.stderr
    for code in ("workdir", "pinned"):
        verified = _cli(project, "verify", "--code", code)
        assert verified.returncode == 3, (verified.stdout, verified.stderr)
        assert "reproduced" not in verified.stdout.replace("0 reproduced", "")
        assert "1 could not replay" in verified.stdout
        assert "Traceback" not in verified.stderr
        assert verified.stderr.count("\n") == 1  # the store error, in one line
        assert f"object {digest.hex} is corrupt" in verified.stderr
