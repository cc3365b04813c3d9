"""Runs whose state holds large ``bytes``: recorded, read back, resumed and replayed."""

from __future__ import annotations

import blake3

from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.engine.run import record
from pinrun.verifier.replayer import replay
from tests.helpers import Project

FLOW = """
import blake3
import pinrun

SIZE = 5 * 1024 * 1024 + 123


@pinrun.step
def make(seed: bytes) -> dict:
    data = bytearray(blake3.blake3(seed).digest(length=SIZE))
    data[0] ^= 0
    return {"blob": bytes(data)}


@pinrun.step
def measure(blob: bytes, seed: bytes) -> dict:
    return {"size": len(blob), "tail": blob[-3:], "seed_size": len(seed)}


flow = pinrun.Flow("big", [make, measure])
"""


def _expected(seed: bytes) -> bytes:
    return blake3.blake3(seed).digest(length=5 * 1024 * 1024 + 123)


def test_a_run_keeps_big_bytes_as_bytes(project: Project, project_store: Store) -> None:
    """A step returning 5 MiB of bytes and one reading them: the stored state holds them."""
    project.write("big", FLOW)
    seed = b"s" * 100_000  # an input big enough to be a blob of its own
    run = record(project.load("big"), {"seed": seed}, store=project_store)
    assert run.status == "succeeded"
    state = project_store.get_snapshot(run.state)
    assert state["blob"] == _expected(seed)
    assert type(state["blob"]) is bytes
    assert state["size"] == len(state["blob"])
    assert state["tail"] == _expected(seed)[-3:]
    assert project_store.get_snapshot(run.inputs) == {"seed": seed}
    stored = load_run(project_store, run.id)
    assert all(step.hazards == () for step in stored.steps)  # nothing "mutated" its input


def test_a_run_with_big_bytes_replays_and_a_changed_byte_diverges(
        project: Project, project_store: Store) -> None:
    """Replay reproduces the bytes; the same code flipping one byte diverges at that step."""
    project.write("big", FLOW)
    run = record(project.load("big"), {"seed": b"abc"}, store=project_store)
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()
    assert all(not step.hazards for step in report.steps)
    project.edit("big", "data[0] ^= 0", "data[4_000_000] ^= 1")
    report = replay(run.id, store=project_store, code="workdir")
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    assert first.name == "make"
    assert first.divergence == "outputs"
    (change,) = first.changes
    assert (change.path, change.kind) == ("blob", "changed")
    assert "first difference at offset 4,000,000" in change.detail[0]


def test_pinned_replay_of_big_bytes_reproduces(project: Project, project_store: Store) -> None:
    """Replay with the pinned code reads the recorded inputs back and reproduces."""
    project.write("big", FLOW)
    run = record(project.load("big"), {"seed": b"abc"}, store=project_store,
                 durability="none")
    report = replay(run.id, store=project_store)
    assert report.reproduced, report.explain()
