"""A large value a step returns is kept with the Seen of its objects, made with its encoding:
the next reader is handed it by identity, a change in place is still caught, and a Seen
never outlives the state value it was made with."""

from __future__ import annotations

import sys

import pytest

from pinrun import replay
from pinrun.artifacts import _speedups
from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.engine.walk import Settled, _merge_seen
from tests.helpers import Project

pytestmark = pytest.mark.skipif(not hasattr(_speedups, "encode_seen"),
                                reason="no C compiler here, so pinrun's C module (and Seen) is not "
                                "built; test_compiled_plain_check_is_built_where_a_"
                                "compiler_is fails where one is and it is not (CI has one)")

CHAIN = """
import pinrun

KEPT = {}
SEEN = {}


def table():
    return {f"k{i:04d}": {"id": i, "name": f"item {i}", "tags": ["a"]} for i in range(400)}


@pinrun.step
def make(n: int) -> dict:
    made = table()
    KEPT["table"] = made
    return {"table": made}


@pinrun.step(after=[make])
def first(table: dict) -> dict:
    SEEN["first"] = table
    table["k0003"] = dict(table["k0003"])  # an equal copy in its place: no change
    return {"first": len(table)}


@pinrun.step(after=[first])
def second(table: dict) -> dict:
    SEEN["second"] = table
    table["k0002"]["tags"].append("b")  # in place: a hazard, never the state
    return {"second": len(table)}


@pinrun.step(after=[second])
def third(table: dict) -> dict:
    SEEN["third"] = table
    return {"tags": table["k0002"]["tags"], "table": {"small": 1}}


@pinrun.step(after=[third])
def last(table: dict) -> dict:
    SEEN["last"] = table
    return {"keys": sorted(table)}


flow = pinrun.Flow("seen_chain", [make, first, second, third, last])
"""


def test_a_large_output_is_handed_on_and_every_change_still_caught(
        project: Project, project_store: Store) -> None:
    """The maker's value reaches the first reader as it is; an equal copy put in its place
    is no hazard; a change in place is, and the next reader gets the recorded value; a key
    written again with a small value is read as that value."""
    project.write("seen_chain", CHAIN)
    flow = project.load("seen_chain")
    module = sys.modules[f"{project.package}.seen_chain"]
    run = record(flow, {"n": 1}, store=project_store)
    assert run.status == "succeeded"
    seen = module.SEEN
    assert seen["first"] is module.KEPT["table"]
    assert seen["second"] is seen["first"]  # an equal copy inside: still what it records
    assert seen["third"] is not seen["second"]  # changed in place: decoded
    assert seen["third"]["k0002"]["tags"] == ["a"]
    assert seen["last"] == {"small": 1}
    mutated = {step.name: [hazard for hazard in step.hazards if "mutated" in hazard]
               for step in run.steps}
    assert mutated["first"] == []
    assert mutated["second"] == ["mutated its input 'table' in place (the record keeps the "
                                 "value it was given); return a new value instead"]
    assert mutated["third"] == []
    state = project_store.get_snapshot(run.state)
    assert state["tags"] == ["a"]
    assert state["table"] == {"small": 1}
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()


MEDDLER = """
import pinrun

KEPT = {}
SEEN = {}


@pinrun.step
def make(n: int) -> dict:
    made = [{"id": i, "name": f"item {i}"} for i in range(400)]
    KEPT["rows"] = made
    return {"rows": made}


@pinrun.step(after=[make])
def meddle(n: int) -> dict:
    KEPT["rows"][5]["name"] = "changed behind the state's back"
    return {"meddled": True}


@pinrun.step(after=[meddle])
def read(rows: list) -> dict:
    SEEN["read"] = rows
    return {"name": rows[5]["name"]}


flow = pinrun.Flow("seen_meddler", [make, meddle, read])
"""


def test_a_value_changed_after_its_seen_was_made_is_not_handed_over(
        project: Project, project_store: Store) -> None:
    """The maker keeps the list it returned and changes it later: the reader gets the
    recorded value, decoded, not the changed one."""
    project.write("seen_meddler", MEDDLER)
    run = record(project.load("seen_meddler"), {"n": 1}, store=project_store)
    module = sys.modules[f"{project.package}.seen_meddler"]
    assert run.status == "succeeded"
    assert module.SEEN["read"] is not module.KEPT["rows"]
    assert project_store.get_snapshot(run.state)["name"] == "item 5"


def test_a_key_written_again_drops_its_old_seen() -> None:
    """A Seen keeps its value alive: a key a step writes again keeps only the new one's."""
    old, new, kept = object(), object(), object()
    seen = {"table": old, "other": kept}
    _merge_seen(seen, Settled({"table": 1}, {"table": b"1"}))  # type: ignore[arg-type]
    assert seen == {"other": kept}
    _merge_seen(seen, Settled({"table": 1}, {"table": b"{}"},  # type: ignore[arg-type]
                              {"table": new}))  # type: ignore[dict-item]
    assert seen == {"other": kept, "table": new}
