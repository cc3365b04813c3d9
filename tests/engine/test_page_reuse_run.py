"""A run whose wide state changes in a few keys per step reuses its kept pages, and
stores exactly what a fresh build of each state stores."""

from __future__ import annotations

from pinrun.artifacts import trees
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.engine.records import STATE_EVERY
from pinrun.engine.run import record
from tests.helpers import Project

WIDE = """
import pinrun


@pinrun.step
def spread(n: int) -> dict:
    return {f"k{i:05d}": {"id": i, "name": f"item {i}"} for i in range(n)}


@pinrun.step(after=[spread])
def touch(k00010: dict) -> dict:
    return {"k00010": {**k00010, "touched": True}, "k04000x": "new", "k09999": None}


@pinrun.step(after=[touch])
def drop_in(state) -> dict:
    return {"count": len(state), "k00000": b"raw bytes", "k05000": "y" * 20000}


flow = pinrun.Flow("wide-edits", [spread, touch, drop_in])
"""


class _Sink:
    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        return compute_digest(kind, payload)


def test_each_commit_of_a_wide_state_is_the_fresh_build_of_that_state(
        project: Project, project_store: Store) -> None:
    """Every step's outputs and every committed state have the digests a store_snapshot
    of the same values gives without kept pages; the store checks clean."""
    project.write("wide_edits", WIDE)
    run = record(project.load("wide_edits"), {"n": 10_000}, store=project_store)
    assert run.status == "succeeded"
    final = project_store.get_snapshot(run.state)
    assert final["k00010"]["touched"] is True
    assert final["count"] == 10_002
    assert run.state == trees.store_snapshot(_Sink(), final)
    for step in run.steps:
        assert step.outputs is not None
        outputs = project_store.get_snapshot(step.outputs)
        assert step.outputs == trees.store_snapshot(_Sink(), outputs)
    # The state each step's commit stored (every STATE_EVERY-th commit; the others
    # leave it out): the fresh build of the inputs and the outputs so far, held by the
    # store.
    state: dict[str, object] = {"n": 10_000}
    for index, step in enumerate(run.steps[:-1]):
        assert step.outputs is not None
        state.update(project_store.get_snapshot(step.outputs))
        stored = project_store.has(trees.store_snapshot(_Sink(), state))
        assert stored == (index % STATE_EVERY == STATE_EVERY - 1), index
    assert fsck(project_store).ok
