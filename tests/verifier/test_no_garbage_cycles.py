"""A guarded replay (and a recording) leaves no reference cycle behind: what a step's
watches made goes as soon as its outcome does, never by the collector. A cycle per
step makes the collector run every few dozen replays in a worker, and a full
collection of a large process costs more than the replay."""

from __future__ import annotations

import gc

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.world.guards import GuardMode
from tests.helpers import Project

FLOW = """
import pinrun

RATES = {"EU": 0.2}


@pinrun.step
def load(n: int) -> dict:
    with open(__file__, encoding="utf-8") as source:
        return {"size": len(source.read()) + n}


@pinrun.step
def tax(size: int) -> dict:
    return {"tax": size * RATES["EU"]}


flow = pinrun.Flow("cycles", [load, tax])
"""


def _pinrun_objects(objects: list[object]) -> list[str]:
    return sorted({type(item).__qualname__ for item in objects
                   if type(item).__module__.startswith("pinrun")})


@pytest.mark.parametrize("guards", ["warn", "strict"])
def test_guarded_replays_and_recordings_leave_no_cycle(
        project: Project, project_store: Store, guards: GuardMode) -> None:
    """Replays of a flow whose step reads a file (watched), then a recording: the
    collector finds nothing of pinrun's unreachable."""
    project.write("cycles", FLOW)
    flow = project.load("cycles")
    runs = [pinrun.record(flow, {"n": n}, store=project_store) for n in range(2)]
    pinrun.replay(runs[0].id, store=project_store, code="workdir", guards=guards)  # warm
    garbage: list[object] = []
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for run in runs * 3:
            report = pinrun.replay(run.id, store=project_store, code="workdir",
                                   guards=guards)
            assert report.reproduced, report.explain()
        pinrun.record(flow, {"n": 9}, store=project_store)
        gc.collect()
        garbage += gc.garbage
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    assert _pinrun_objects(garbage) == []
