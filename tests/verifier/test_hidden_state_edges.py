"""A plain replay looks at hidden state at the run's edges, and names the step that made a
change by replaying the run again step by step (:mod:`pinrun.verifier.hidden_judge`).

Each flow is recorded, its module's state put back as a fresh process would
find it, then replayed in this process with the code on disk.
"""

from __future__ import annotations

import sys

import pinrun
from pinrun.artifacts.store import Store
from tests.helpers import Project

SOURCE = """
import pinrun

SEEN = []
CLIENT = None
STACK = []


def client():
    global CLIENT
    if CLIENT is None:
        CLIENT = {"connected": True}
    return CLIENT


@pinrun.step
def first(n: int) -> dict:
    return {"a": n + 1}


@pinrun.step
def grow(a: int) -> dict:
    SEEN.append(a)
    return {"seen": len(SEEN)}


@pinrun.step
def connect(a: int) -> dict:
    return {"connected": client()["connected"] and a > 0}


@pinrun.step
def push(n: int) -> dict:
    STACK.append(n)
    return {"pushed": n}


@pinrun.step
def pop(pushed: int) -> dict:
    return {"popped": STACK.pop() + pushed}


@pinrun.step
def last(a: int) -> dict:
    return {"z": a * 2}


grow_flow = pinrun.Flow("grow", [first, grow, last])
once_flow = pinrun.Flow("once", [first, connect, last])
put_back_flow = pinrun.Flow("put_back", [push, pop])
"""


def _fresh(project: Project) -> None:
    """Put the module's state back as a new process would find it."""
    module = sys.modules[f"{project.package}.edges"]
    module.SEEN.clear()
    module.STACK.clear()
    vars(module)["CLIENT"] = None


def _replayed(project: Project, store: Store, flow: str,
              repeat: int = 1) -> pinrun.ReplayReport:
    project.write("edges", SOURCE)
    run = pinrun.record(project.load("edges", flow), {"n": 1}, store=store)
    _fresh(project)
    return pinrun.replay(run.id, store=store, code="workdir", repeat=repeat)


def test_the_step_that_changed_hidden_state_is_named(project: Project,
                                                     project_store: Store) -> None:
    """``grow`` appends to a global: named on ``grow`` alone; the verdict is the first
    replay's (the second, which found the list grown, would have diverged)."""
    report = _replayed(project, project_store, "grow_flow")
    assert report.verdict == "reproduced", report.explain()
    hazards = {step.name: step.hazards for step in report.steps}
    owner = f"module state: {project.package}.edges.SEEN changed"
    assert [h for h in hazards["grow"] if h.startswith(owner)], hazards
    assert (hazards["first"], hazards["last"]) == ([], []), hazards
    assert len(sys.modules[f"{project.package}.edges"].SEEN) == 2  # replayed twice


def test_a_change_made_once_is_named_on_the_run(project: Project,
                                                project_store: Store) -> None:
    """A client made on first use is not made again by the second replay: the change is
    named, by its owner, as made by a step of the run, on its last step."""
    report = _replayed(project, project_store, "once_flow")
    assert report.reproduced, report.explain()
    hazards = {step.name: step.hazards for step in report.steps}
    assert (hazards["first"], hazards["connect"]) == ([], []), hazards
    (hazard,) = hazards["last"]
    assert hazard.startswith(f"module state: {project.package}.edges.CLIENT changed by a "
                             "step of this run"), hazard
    assert "a change made once" in hazard, hazard


def test_a_change_put_back_by_a_later_step_is_not_carried(project: Project,
                                                          project_store: Store) -> None:
    """``push`` appends, ``pop`` takes it back: the run leaves nothing for the next one,
    and a plain replay names nothing."""
    report = _replayed(project, project_store, "put_back_flow")
    assert report.reproduced, report.explain()
    assert [step.hazards for step in report.steps] == [[], []]


def test_repeat_looks_step_by_step_from_the_start(project: Project,
                                                  project_store: Store) -> None:
    """With ``repeat``, every step is looked at after it runs: the change made once is
    named on the step that made it, and the list pushed and popped on both steps."""
    report = _replayed(project, project_store, "once_flow", repeat=2)
    hazards = {step.name: step.hazards for step in report.steps}
    owner = f"module state: {project.package}.edges.CLIENT changed"
    assert any(h.startswith(owner) and "(in repetition 1)" in h
               for h in hazards["connect"]), hazards
    assert hazards["last"] == [], hazards
    _fresh(project)
    put_back = _replayed(project, project_store, "put_back_flow", repeat=2)
    assert all(step.hazards for step in put_back.steps), [s.hazards for s in put_back.steps]
