"""What recording no longer redoes per step keeps its guarantees: a level of one step reads
the walk's own state and entries (no copies), a module set whose code owns no hidden
state is not looked at again while the same modules are loaded."""

from __future__ import annotations

import sys

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.execution import StepHiddenState, _code_watch
from pinrun.engine.run import record
from tests.helpers import Project

ROUNDS = """
import pinrun


@pinrun.step
def bump(n: int) -> dict:
    return {"n": n + 1, "seen": [n]}


@pinrun.step
def again(n: int, seen: list) -> dict:
    seen.append(n)  # in place: a hazard, never the state
    return {"n": n * 10, "seen": seen}


flow = pinrun.Flow("rounds", [bump, again])
"""


def test_a_step_reading_the_key_it_writes_reads_it_as_it_was(
        project: Project, project_store: Store) -> None:
    """Steps alone in their level that read and write the same key: each step's inputs
    are the state before it, its outputs after it, and the final state is the last."""
    project.write("rounds", ROUNDS)
    run = record(project.load("rounds"), {"n": 1}, store=project_store)
    bump, again = run.steps
    assert bump.outputs is not None
    assert again.outputs is not None
    assert project_store.get_snapshot(bump.inputs) == {"n": 1}
    assert project_store.get_snapshot(bump.outputs) == {"n": 2, "seen": [1]}
    assert project_store.get_snapshot(again.inputs) == {"n": 2, "seen": [1]}
    assert project_store.get_snapshot(again.outputs) == {"n": 20, "seen": [1, 2]}
    assert any("mutated its input 'seen'" in hazard for hazard in again.hazards)
    assert project_store.get_snapshot(run.state) == {"n": 20, "seen": [1, 2]}
    assert project_store.get_snapshot(run.inputs) == {"n": 1}
    # Recorded again in the same process: the very same trees (content-addressed).
    second = record(project.load("rounds"), {"n": 1}, store=project_store)
    assert [(s.inputs, s.outputs) for s in second.steps] == \
        [(s.inputs, s.outputs) for s in run.steps]
    assert second.state == run.state


QUIET = """
import pinrun


@pinrun.step
def work(n: int) -> dict:
    return {"m": n + 1}


flow = pinrun.Flow("quiet", [work])
"""

LOUD = """
import pinrun


class Seen:
    items = []


@pinrun.step
def work(n: int) -> dict:
    Seen.items.append(n)
    return {"m": n + 1}


flow = pinrun.Flow("quiet", [work])
"""


def test_quiet_modules_are_looked_at_again_once_loaded_anew(
        project: Project, project_store: Store) -> None:
    """A step whose modules' code owns no hidden state is remembered as quiet for those
    module objects only: loaded again with a class attribute it changes, the change is a
    hazard at once."""
    project.write("quiet", QUIET)
    run = pinrun.record(project.load("quiet"), {"n": 1}, store=project_store)
    assert run.steps[0].hazards == ()
    module = f"{project.package}.quiet"
    hidden = StepHiddenState(modules=(module,))
    assert _code_watch(hidden) is None
    assert hidden.quiet
    assert hidden.quiet[0][0]() is sys.modules[module]
    assert _code_watch(hidden) is None  # the same module object: nothing looked at
    project.write("quiet", LOUD)
    project.forget()
    run = pinrun.record(project.load("quiet"), {"n": 2}, store=project_store)
    assert any(hazard.startswith(f"module state: {module}.Seen.items changed")
               for hazard in run.steps[0].hazards), run.steps[0].hazards
    assert _code_watch(hidden) is not None  # another module object: looked at again


WIDE = """
import pinrun


@pinrun.step
def spread(n: int) -> dict:
    return {f"k{i:03d}": {"i": i, "of": [n, "x"]} for i in range(200)}


@pinrun.step
def gather(state) -> dict:
    mine = dict(state)
    mine["k000"]["i"] = -1  # a fresh copy: the run's state must not see this
    return {"total": sum(value["i"] for key, value in mine.items() if key.startswith("k"))}


flow = pinrun.Flow("wide", [spread, gather])
"""


def test_a_wide_step_encoded_and_read_at_once_records_what_one_by_one_would(
        project: Project, project_store: Store) -> None:
    """200 plain outputs encoded by one call, read back by a `state` step in one call:
    the same snapshots as value by value, each read a fresh copy, and replay reproduces."""
    from pinrun.artifacts import codec

    project.write("wide", WIDE)
    run = record(project.load("wide"), {"n": 7}, store=project_store)
    spread, gather = run.steps
    assert spread.outputs is not None
    outputs = project_store.get_snapshot(spread.outputs)
    expected = {f"k{i:03d}": {"i": i, "of": [7, "x"]} for i in range(200)}
    assert outputs == expected
    # (both one-call paths apply to this map: the steps above took them)
    encodings = {key: codec.encode(value) for key, value in expected.items()}
    assert codec.encode_many(expected) == encodings
    assert codec.decode_many(encodings) == expected
    assert project_store.get_snapshot(run.state)["k000"] == {"i": 0, "of": [7, "x"]}
    assert project_store.get_snapshot(run.state)["total"] == sum(range(1, 200)) - 1
    assert not any("mutated" in hazard for hazard in gather.hazards)
    report = pinrun.replay(run.id, store=project_store, code="workdir",
                           project_root=project.root)
    assert report.verdict == "reproduced", report.error


def test_the_times_a_run_stamps_are_isoformat_s() -> None:
    """iso_time, which writes the times a recording stamps (its start, each step's), gives
    datetime.isoformat's text: naive or UTC, with and without microseconds, at the ends of
    the years; any other zone, or a subclass, is isoformat's own answer."""
    import datetime as dt

    from pinrun.engine import run as run_module

    class Stamp(dt.datetime):
        def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
            return "mine"

    zones = [None, dt.UTC, dt.timezone(dt.timedelta(hours=-3, minutes=-30)),
             dt.timezone(dt.timedelta(0))]
    moments = [(1, 1, 1, 0, 0, 0, 0), (999, 9, 9, 9, 9, 9, 9), (2026, 12, 7, 15, 6, 30, 40009),
               (9999, 12, 31, 23, 59, 59, 999999), (2020, 2, 29, 12, 0, 0, 100000)]
    for zone in zones:
        for moment in moments:
            value = dt.datetime(*moment, tzinfo=zone)
            assert run_module.iso_time(value) == value.isoformat()
    assert run_module.iso_time(Stamp(2020, 1, 1, tzinfo=dt.UTC)) == "mine"
