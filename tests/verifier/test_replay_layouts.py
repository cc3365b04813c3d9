"""A run recorded when a large nested map was stored key by key replays against the
paged layout of today: the same values reproduce, a changed one still diverges, and
nothing recorded is judged through today's classes."""

from __future__ import annotations

from typing import Any

import pytest

import pinrun
from pinrun.artifacts import snapshot_pages, trees
from pinrun.artifacts.digest import Kind
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
                      lambda sink, value, path, size: trees.store_snapshot_per_key(
                          sink, value, root=path))
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


WIDE_FLOW = """
import pinrun

@pinrun.step
def spread(n: int) -> dict:
    return {f"k{i:05d}": {"id": i, "n": n} for i in range(3000)}

@pinrun.step
def total(state) -> dict:
    return {"total": sum(v["n"] for k, v in state.items() if k.startswith("k"))}

flow = pinrun.Flow("wide", [spread, total])
"""


def _record_per_key(project: Project, store: Store, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Record a wide state with one object per top-level key, as pinrun did before pages."""
    project.write("wide", WIDE_FLOW)
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_pages, "PAGED_ABOVE", 1 << 62)
        run = pinrun.record(project.load("wide"), {"n": 1}, store=store)
    outputs = run.steps[0].outputs
    assert outputs is not None
    assert len(trees.tree_entries(store, outputs)) == 3000  # a map tree: one entry per key
    return run


def test_a_wide_state_recorded_per_key_reproduces(project: Project, project_store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 top-level keys recorded one object each replay as reproduced against pages."""
    run = _record_per_key(project, project_store, monkeypatch)
    report = pinrun.replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()
    step = report.steps[0]
    assert step.replayed_outputs != step.recorded_outputs  # stored as pages now


def test_a_wide_state_recorded_per_key_with_a_changed_value_diverges(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """One changed top-level value among 3,000 diverges, and the report names its key."""
    run = _record_per_key(project, project_store, monkeypatch)
    project.write("wide", WIDE_FLOW.replace('{"id": i, "n": n}',
                                            '{"id": i, "n": n + (i == 1234)}'))
    project.forget()
    report = pinrun.replay(run.id, store=project_store, code="workdir",
                           flow=project.load("wide"))
    assert not report.reproduced
    assert report.steps[0].status == "diverged"
    assert "k01234" in report.explain()


def test_a_wide_state_recorded_in_pages_reproduces_and_names_a_changed_key(
        project: Project, project_store: Store) -> None:
    """Today's paged layout: equal values reproduce; one changed value is named by key."""
    project.write("wide", WIDE_FLOW)
    run = pinrun.record(project.load("wide"), {"n": 1}, store=project_store)
    outputs = run.steps[0].outputs
    assert outputs is not None
    assert project_store.get_object(outputs, Kind.TREE)["type"] == "pages"
    assert pinrun.replay(run.id, store=project_store, code="workdir").reproduced
    project.write("wide", WIDE_FLOW.replace('{"id": i, "n": n}',
                                            '{"id": i, "n": n + (i == 2999)}'))
    project.forget()
    report = pinrun.replay(run.id, store=project_store, code="workdir",
                           flow=project.load("wide"))
    assert not report.reproduced
    assert "k02999" in report.explain()
