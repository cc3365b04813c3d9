"""A run recorded when a large nested map was stored key by key replays against the
paged layout of today: the same values reproduce, a changed one still diverges, and
nothing recorded is judged through today's classes."""

from __future__ import annotations

from typing import Any

import pytest

import pinrun
from pinrun.artifacts import trees
from pinrun.artifacts.store import Store
from tests.helpers import Project

FLOW = """
import pinrun

@pinrun.step
def table(n: int) -> dict:
    return {"table": {f"k{i:06d}": {"id": i, "name": f"item {i}", "n": n} for i in range(3000)}}

@pinrun.step
def count(table: dict) -> dict:
    return {"count": len(table)}

flow = pinrun.Flow("layouts", [table, count])
"""


def _record_key_by_key(project: Project, store: Store,
                       monkeypatch: pytest.MonkeyPatch) -> Any:
    """Record with large nested maps stored one entry per key, as pinrun did before pages."""
    project.write("layouts", FLOW)
    flow = project.load("layouts")
    with monkeypatch.context() as patch:
        patch.setattr(trees, "_store_map",
                      lambda sink, value, path, size: trees.store_snapshot(sink, value,
                                                                           root=path))
        run = pinrun.record(flow, {"n": 1}, store=store)
    outputs = run.steps[0].outputs
    assert outputs is not None
    table = store.get_snapshot(outputs)["table"]
    assert len(table) == 3000
    return run


def test_the_old_layout_of_equal_values_reproduces(project: Project, project_store: Store,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The outputs' digests differ (another tree), their values do not: reproduced."""
    run = _record_key_by_key(project, project_store, monkeypatch)
    report = pinrun.replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()
    step = report.steps[0]
    assert step.replayed_outputs != step.recorded_outputs  # stored as pages now


def test_a_changed_value_in_the_old_layout_still_diverges(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values compared by their canonical encoding: 2 is not 2.0, and is not 1."""
    run = _record_key_by_key(project, project_store, monkeypatch)
    project.write("layouts", FLOW.replace('"n": n}', '"n": float(n)}'))
    project.forget()
    changed = project.load("layouts")
    report = pinrun.replay(run.id, store=project_store, code="workdir", flow=changed)
    assert not report.reproduced
    assert report.steps[0].status == "diverged"
    assert report.steps[0].changes


DATACLASS_FLOW = """
from dataclasses import dataclass

import pinrun

@dataclass
class Order:
    qty: int

@pinrun.step
def make(n: int) -> dict:
    return {"order": Order(n)}

flow = pinrun.Flow("orders", [make])
"""


def test_a_class_that_gained_a_field_diverges(project: Project, project_store: Store) -> None:
    """A dataclass that gained a field with a default: today's class would decode the
    recorded value into the new one, but the outputs differ, and the replay says so."""
    project.write("orders", DATACLASS_FLOW)
    run = pinrun.record(project.load("orders"), {"n": 3}, store=project_store)
    project.write("orders", DATACLASS_FLOW.replace("    qty: int\n",
                                                   "    qty: int\n    discount: float = 0.5\n"))
    project.forget()
    changed = project.load("orders")
    report = pinrun.replay(run.id, store=project_store, code="workdir", flow=changed)
    assert not report.reproduced
    assert report.steps[0].status == "diverged"
