"""Pinned code is imported afresh for every replay; a worker replaying it run after run
keeps no more of those modules alive after many replays than after a few, also when a
module binds its own package (``import pkg.helpers``), whose namespace holds the module."""

from __future__ import annotations

import gc
import types

import pinrun
from pinrun.artifacts.store import Store
from tests.helpers import Project

HELPERS = """
def double(n):
    return n * 2
"""

FLOWS = """
import pinrun
import {package}.helpers

SEEN = []


@pinrun.step
def twice(n: int) -> dict:
    return {{"m": {package}.helpers.double(n)}}


flow = pinrun.Flow("freed", [twice])
"""


def _alive(name: str) -> int:
    return sum(1 for found in gc.get_objects()
               if isinstance(found, types.ModuleType) and found.__name__ == name)


def test_pinned_replays_keep_a_bounded_number_of_modules_alive(
        project: Project, project_store: Store) -> None:
    """Two guarded pinned replays, then six more: as many of the pinned module's objects
    are alive after the eight as after the two."""
    project.write("helpers", HELPERS)
    project.write("flows", FLOWS.format(package=project.package))
    run = pinrun.record(project.load("flows"), {"n": 1}, store=project_store)
    name = f"{project.package}.flows"
    alive = []
    for replays in (2, 6):
        for _ in range(replays):
            report = pinrun.replay(run.id, store=project_store, code="pinned")
            assert report.reproduced, report.explain()
        gc.collect()
        alive.append(_alive(name))
    assert alive[0] == alive[1], alive
