"""Review 9b of Seen (branch h-nest9): attacks on the check by identity that replaced
encoding a large value again, through real recordings.

Each flow below hands a large value (>= SEEN_FROM bytes, >= 32 items, so it gets a Seen)
to a later step and changes it in some way a Seen could miss; the guarantee is the one
of docs/recording.md: a change in place of a value a step was handed is its hazard, the
record keeps the value as it was written, and the next reader is given that value.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import pytest

from pinrun import replay
from pinrun.artifacts import _speedups, codec, seen
from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from tests.helpers import Project

pytestmark = pytest.mark.skipif(not hasattr(_speedups, "encode_seen"),
                                reason="no C compiler here, so pinrun's C module (and Seen) is not "
                                "built; test_compiled_plain_check_is_built_where_a_"
                                "compiler_is fails where one is and it is not (CI has one)")

MUTATED = ("mutated its input 'table' in place (the record keeps the value it was given); "
           "return a new value instead")

COMMON = """
import gc
import threading

import pinrun

KEPT = {}
SEEN = {}


def table():
    return {f"k{i:04d}": {"id": i, "sub": {"x": [1, {"y": 2}]}, "tags": ["a"]}
            for i in range(200)}


@pinrun.step
def make(n: int) -> dict:
    made = table()
    KEPT["table"] = made
    return {"table": made}


@pinrun.step(after=[make])
def read(table: dict) -> dict:
    SEEN["read"] = table
    CHANGE(table)
    return {"read": 1}


@pinrun.step(after=[read])
def last(table: dict) -> dict:
    SEEN["last"] = table
    return {"k0001": table["k0001"], "k0002": table["k0002"]}


flow = pinrun.Flow("review", [make, read, last])
"""


def _run(project: Project, store: Store, change: str) -> tuple[Any, ModuleType]:
    project.write("review", COMMON + "\n" + change)
    run = record(project.load("review"), {"n": 1}, store=store)
    return run, sys.modules[f"{project.package}.review"]


def _mutated(run: Any) -> dict[str, list[str]]:
    return {step.name: [h for h in step.hazards if "mutated" in h] for step in run.steps}


ORIGINAL_1 = {"id": 1, "sub": {"x": [1, {"y": 2}]}, "tags": ["a"]}


@pytest.mark.parametrize("change", [
    # nested: a dict in a list in a dict in the dict
    "def CHANGE(t):\n    t['k0001']['sub']['x'][1]['y'] = 3\n",
    # a dict cleared and filled again with something else
    "def CHANGE(t):\n    d = t['k0001']; saved = dict(d); saved['id'] = 77\n"
    "    d.clear(); d.update(saved)\n",
    "def CHANGE(t):\n    t['k0001'] |= {'id': 5}\n",
    "def CHANGE(t):\n    t['k0001'].__init__(id=5)\n",
    "def CHANGE(t):\n    t['k0001']['tags'] += ['b']\n",
    "def CHANGE(t):\n    t['k0001']['tags'][:] = ['z']\n",
    "def CHANGE(t):\n    t['k0001']['sub']['x'].reverse()\n",
    "def CHANGE(t):\n    t.popitem()\n",
])
def test_a_change_in_place_anywhere_is_a_hazard(project: Project, project_store: Store,
                                                change: str) -> None:
    run, module = _run(project, project_store, change)
    assert run.status == "succeeded"
    assert module.SEEN["read"] is module.KEPT["table"]  # handed over as it is
    assert _mutated(run)["read"] == [MUTATED]
    assert module.SEEN["last"] is not module.SEEN["read"]
    state = project_store.get_snapshot(run.state)
    assert state["k0001"] == ORIGINAL_1


@pytest.mark.parametrize("change", [
    "def CHANGE(t):\n    t['k0001']['id'] = 99; t['k0001']['id'] = 1\n",  # and back
    "def CHANGE(t):\n    t['k0001'] = dict(t['k0001'])\n",  # an equal copy in its place
    "def CHANGE(t):\n    t['k0001']['tags'][0] = ''.join(['', 'a'])\n",  # an equal str
    "def CHANGE(t):\n    d = t['k0001']; saved = dict(d); d.clear(); d.update(saved)\n",
])
def test_a_change_back_to_equal_content_is_no_hazard_as_before(
        project: Project, project_store: Store, change: str) -> None:
    run, _ = _run(project, project_store, change)
    assert run.status == "succeeded"
    assert _mutated(run)["read"] == []
    assert project_store.get_snapshot(run.state)["k0001"] == ORIGINAL_1
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()


def test_a_change_from_another_thread_while_the_step_runs_is_a_hazard(
        project: Project, project_store: Store) -> None:
    """The maker leaves a thread holding its output; it changes it while the reader runs."""
    run, module = _run(project, project_store, """
GO = threading.Event()


def meddle():
    GO.wait(10)
    KEPT["table"]["k0001"]["sub"]["x"].append(9)


def CHANGE(t):
    GO.set()
    KEPT["thread"].join(10)


KEPT["thread"] = threading.Thread(target=meddle, daemon=True)
KEPT["thread"].start()
""")
    assert run.status == "succeeded"
    assert module.SEEN["read"] is module.KEPT["table"]
    assert _mutated(run)["read"] == [MUTATED]
    assert project_store.get_snapshot(run.state)["k0001"] == ORIGINAL_1


def test_a_finalizer_changing_the_value_while_the_step_runs_is_a_hazard(
        project: Project, project_store: Store) -> None:
    """An object in a cycle whose __del__ changes the handed value, collected mid-step."""
    run, module = _run(project, project_store, """
class Meddler:
    def __del__(self):
        KEPT["table"]["k0001"]["id"] = -1


def CHANGE(t):
    m = Meddler()
    m.cycle = m
    del m
    gc.collect()
""")
    assert run.status == "succeeded"
    assert module.KEPT["table"]["k0001"]["id"] == -1  # the finalizer ran
    assert _mutated(run)["read"] == [MUTATED]
    assert project_store.get_snapshot(run.state)["k0001"] == ORIGINAL_1


SPLIT = """
import pinrun

OBJECTS = []
SEEN = {}


class Row:
    def __init__(self, i):
        self.id = i
        self.name = f"row {i}"


@pinrun.step
def make(n: int) -> dict:
    OBJECTS[:] = [Row(i) for i in range(300)]
    return {"table": [vars(row) for row in OBJECTS]}


@pinrun.step(after=[make])
def read(table: list) -> dict:
    SEEN["read"] = table
    OBJECTS[3].name = "renamed through its object"
    return {"read": 1}


@pinrun.step(after=[read])
def last(table: list) -> dict:
    SEEN["last"] = table
    return {"name": table[3]["name"]}


flow = pinrun.Flow("split", [make, read, last])
"""


def test_an_instance_dict_changed_through_its_object_is_a_hazard(
        project: Project, project_store: Store) -> None:
    """Split-table dicts (vars(obj)) are written through their object, not the dict."""
    project.write("split", SPLIT)
    run = record(project.load("split"), {"n": 1}, store=project_store)
    module = sys.modules[f"{project.package}.split"]
    assert run.status == "succeeded"
    assert _mutated(run)["read"] == [MUTATED]
    assert project_store.get_snapshot(run.state)["name"] == "row 3"
    assert module.SEEN["last"] is not module.SEEN["read"]


SHARED = """
import pinrun

SEEN = {}


@pinrun.step
def make(n: int) -> dict:
    inner = {f"k{i:04d}": {"id": i} for i in range(100)}
    return {"a": {"inner": inner, "pad": list(range(200))},
            "b": {"inner": inner, "pad": list(range(200))}}


@pinrun.step(after=[make])
def spoil(a: dict) -> dict:
    a["inner"]["k0001"]["id"] = -1
    return {"spoiled": 1}


@pinrun.step(after=[spoil])
def read_b(b: dict) -> dict:
    SEEN["b"] = b
    return {"id": b["inner"]["k0001"]["id"]}


flow = pinrun.Flow("shared", [make, spoil, read_b])
"""


def test_a_container_shared_by_two_outputs_changed_through_one(
        project: Project, project_store: Store) -> None:
    """Two keys share a dict; a change through the one is not given to the reader of the
    other."""
    project.write("shared", SHARED)
    run = record(project.load("shared"), {"n": 1}, store=project_store)
    module = sys.modules[f"{project.package}.shared"]
    assert run.status == "succeeded"
    assert [h for h in run.steps[1].hazards if "mutated" in h]
    assert module.SEEN["b"]["inner"]["k0001"]["id"] == 1
    assert project_store.get_snapshot(run.state)["id"] == 1


WHOLE = """
import pinrun

SEEN = {}


@pinrun.step
def make(n: int) -> dict:
    return {"table": {f"k{i:04d}": {"id": i} for i in range(200)}}


@pinrun.step(after=[make])
def whole(state) -> dict:
    state["table"]["k0001"]["id"] = -1
    return {"w": 1}


@pinrun.step(after=[whole])
def read(table: dict) -> dict:
    SEEN["read"] = table
    return {"id": table["k0001"]["id"]}


flow = pinrun.Flow("whole", [make, whole, read])
"""


def test_a_change_through_the_whole_state_is_not_handed_on(
        project: Project, project_store: Store) -> None:
    project.write("whole", WHOLE)
    run = record(project.load("whole"), {"n": 1}, store=project_store)
    assert run.status == "succeeded"
    assert project_store.get_snapshot(run.state)["id"] == 1


def test_without_the_c_walks_the_same_bytes_are_stored(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python fallback (no compiler: no Seens) records the very same objects."""
    run, _ = _run(project, project_store, "def CHANGE(t):\n    t['k0001']['id'] = 5\n")
    with_seen = (run.state, [(s.name, s.outputs) for s in run.steps], _mutated(run))
    monkeypatch.setattr(seen, "_encode_seen", None)
    monkeypatch.setattr(seen, "_seen_encoding", None)
    assert seen.encode_seen({"a": 1}) is None
    again = record(project.load("review"), {"n": 1}, store=project_store)
    assert (again.state, [(s.name, s.outputs) for s in again.steps],
            _mutated(again)) == with_seen
    assert codec.decode(codec.encode(project_store.get_snapshot(again.state)["k0001"])) \
        == ORIGINAL_1
