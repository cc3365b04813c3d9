"""A large state value a step reads is handed over as it is when it still encodes to its
recorded encoding (no decoded copy); a change, by the step or by anyone, is still caught:
the step is flagged, and the next reader gets the value its record names."""

from __future__ import annotations

import sys

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.records import RunFailedError
from pinrun.engine.run import record
from tests.helpers import Project

HANDED = """
import pinrun

KEPT = {}
SEEN = {}


def table():
    return {f"k{i:04d}": {"id": i, "name": f"item {i}"} for i in range(400)}


@pinrun.step
def make(n: int) -> dict:
    made = table()
    KEPT["table"] = made  # the maker keeps hold of what it returned
    return {"table": made}


@pinrun.step(after=[make])
def meddle(n: int) -> dict:
    KEPT["table"]["k0000"]["name"] = "changed behind the state's back"
    return {"meddled": True}


@pinrun.step(after=[meddle])
def read(table: dict) -> dict:
    SEEN["read"] = table
    return {"name": table["k0000"]["name"]}


@pinrun.step(after=[read])
def spoil(table: dict) -> dict:
    SEEN["spoil"] = table
    table["k0001"]["name"] = "spoiled"  # in place: a hazard, never the state
    return {"spoiled": True}


@pinrun.step(after=[spoil])
def last(table: dict, alias: dict | None = None) -> dict:
    SEEN["last"] = table
    return {"name": table["k0001"]["name"], "count": len(table)}


flow = pinrun.Flow("handed", [make, meddle, read, spoil, last])
"""


def test_a_changed_value_is_never_handed_over(project: Project, project_store: Store) -> None:
    """The maker's own object, changed after it was recorded, is not what the next reader
    gets: it gets the recorded value (decoded), and a step that changes what it was handed
    is flagged while the state keeps the recorded value."""
    project.write("handed_flow", HANDED)
    flow = project.load("handed_flow")
    module = sys.modules[f"{project.package}.handed_flow"]
    run = record(flow, {"n": 1}, store=project_store)
    assert run.status == "succeeded"
    state = project_store.get_snapshot(run.state)
    assert state["name"] == "item 1"  # the step after spoil read the recorded value
    assert state["table"]["k0000"]["name"] == "item 0"
    assert module.SEEN["read"] is not module.KEPT["table"]  # changed since: decoded
    assert module.SEEN["read"]["k0000"]["name"] == "item 0"
    steps = {step.name: step for step in run.steps}
    assert not any("mutated" in hazard for hazard in steps["read"].hazards)
    assert any("mutated its input 'table'" in hazard for hazard in steps["spoil"].hazards)
    assert module.SEEN["last"]["k0001"]["name"] == "item 1"
    assert module.SEEN["last"] is not module.SEEN["spoil"]


UNCHANGED = """
import pinrun

SEEN = []


@pinrun.step
def make(n: int) -> dict:
    table = {f"k{i:04d}": {"id": i, "tags": ["a", "b"]} for i in range(400)}
    SEEN.append(table)
    return {"table": table, "other": table}


@pinrun.step(after=[make])
def both(table: dict, other: dict) -> dict:
    SEEN.extend([table, other])
    return {"same": table is other}


@pinrun.step(after=[make])
def sibling(table: dict) -> dict:
    SEEN.append(table)
    return {"size": len(table)}


flow = pinrun.Flow("unchanged", [make, both, sibling])
"""


def test_an_unchanged_value_is_handed_to_one_reader_once(
        project: Project, project_store: Store) -> None:
    """An unchanged large value is handed over as it is, but only once in a level: a second
    name for the same object, and a sibling reading it, get copies of their own."""
    project.write("unchanged_flow", UNCHANGED)
    run = record(project.load("unchanged_flow"), {"n": 1}, store=project_store)
    assert run.status == "succeeded"
    made, table, other, sibling = project.load("unchanged_flow", "SEEN")
    assert table is made  # what the maker returned, still encoding to its record
    assert other is not made
    assert other == made
    assert sibling is not made
    assert sibling == made
    assert project_store.get_snapshot(run.state)["same"] is False
    assert not any("mutated" in hazard for step in run.steps for hazard in step.hazards)


def test_reads_back_matches_its_reference() -> None:
    """codec.reads_back (C) answers as its Python reference does, and when it says yes,
    decoding the value's encoding gives the value back, key order and types included."""
    from pinrun.artifacts import codec

    cases: list[object] = [
        {"a": 1, "b": [1.5, None, True, "x"]}, {"b": 1, "a": 2}, {"$a": 1}, {"a": (1,)},
        [1, [2, [3]]], {"\ud800": 1}, {"a": "\ud800"}, {"a": 1, "ab": 2}, {"ab": 1, "a": 2},
        {"a": 1, "a\u00e9": 2, "\u00e9": 3, "\U0001f600": 4}, {"\u00e9": 1, "a": 2},
        {1: "a"}, {"a": {"c": 1, "b": 2}}, {"a": float("nan")}, {"big": 1 << 70}, [],
        {}, {"a": b"x"}, {"a": {1, 2}}, "text", 3, None, [{"z": [], "y": {}}],
        {"a": type("S", (str,), {})("s")}, {type("K", (str,), {})("k"): 1},
    ]
    nested: object = 1
    for _ in range(250):
        nested = [nested]
    cases.append(nested)
    for value in cases:
        answer = codec.reads_back(value)
        assert answer == codec._reads_back_python(value), value
        if answer:
            back = codec.decode(codec.encode(value))
            assert repr(back) == repr(value)  # key order, and types, as they were


WIDE_OUTPUTS = """
import pinrun


@pinrun.step
def spread(n: int) -> dict:
    made = {f"k{i:03d}": i for i in range(100)}
    made["n"] = n + 1  # overwrites an input: on_collision='warn' says so
    return made


@pinrun.step(after=[spread])
def odd(n: int) -> dict:
    made = {f"k{i:03d}": i for i in range(100)}
    made[7] = "not a str"
    return made


flow = pinrun.Flow("wide_outputs", [spread, odd])
"""


def test_wide_outputs_are_checked_as_before(project: Project, project_store: Store) -> None:
    """A wide step's outputs still meet the output policies (an overwrite is a hazard under
    'warn'), and a wide dict with a key that is not a str is still the step's failure."""
    project.write("wide_outputs", WIDE_OUTPUTS)
    with pytest.raises(RunFailedError) as failed:
        record(project.load("wide_outputs"), {"n": 1}, store=project_store)
    spread, odd = failed.value.run.steps
    assert spread.hazards == ("overwrote key 'n'",)
    assert odd.error is not None
    assert odd.error.type.endswith("StepOutputError")
    assert "returned a dict; a step returns a dict of the state keys" in odd.error.message


WHOLE = """
import pinrun

SEEN = {}


@pinrun.step
def spread(n: int) -> dict:
    made = {f"k{i:03d}": {"id": i, "tags": ["a"]} for i in range(100)}
    SEEN["made"] = made["k000"]
    return made


@pinrun.step(after=[spread])
def spoil(state) -> dict:
    SEEN["spoil"] = state["k000"]
    state["k001"]["id"] = -1  # in place: never the state, as before
    return {"spoiled": True}


@pinrun.step(after=[spoil])
def total(state) -> dict:
    SEEN["total"] = state["k000"]
    return {"total": sum(value["id"] for key, value in state.items() if key[:1] == "k")}


flow = pinrun.Flow("whole", [spread, spoil, total])
"""


def test_a_wide_state_is_handed_over_only_as_recorded(
        project: Project, project_store: Store) -> None:
    """A step taking ``state`` is given the wide state's values as they are while they still
    encode to their record; once a step changed one, the next is given the recorded values."""
    project.write("whole_flow", WHOLE)
    run = record(project.load("whole_flow"), {"n": 1}, store=project_store)
    seen = project.load("whole_flow", "SEEN")
    assert seen["spoil"] is seen["made"]  # unchanged: handed over, no copy
    assert seen["total"] is not seen["made"]  # the state changed behind it: decoded
    assert project_store.get_snapshot(run.state)["total"] == sum(range(100))


def test_read_back_all_needs_every_value_the_same() -> None:
    """read_back_all says yes only when every value encodes to its own encoding."""
    from pinrun.artifacts import codec

    values = {f"k{i:03d}": {"i": i} for i in range(100)}
    encodings = {key: codec.encode(value) for key, value in values.items()}
    assert codec.read_back_all(values, encodings)
    assert codec.read_back_all(dict(reversed(values.items())), encodings)
    for key, changed in (("k050", b'{"i":51}'), ("k099", b'{"i":9}'), ("k000", b'{"i":0} ')):
        assert not codec.read_back_all(values, {**encodings, key: changed})
    assert not codec.read_back_all({**values, "k100": (1,)},
                                   {**encodings, "k100": codec.encode((1,))})
    # A key JSON escapes: each value is compared with its own encoding (no joined map).
    assert codec.read_back_all({**values, 'k"q': 1}, {**encodings, 'k"q': b"1"})
    assert not codec.read_back_all({**values, 'k"q': 1}, {**encodings, 'k"q': b"2"})
    assert not codec.read_back_all(values, {**encodings, "k100": b"1"})
