"""A plain replay looks at hidden state at the run's edges and names a change by its owner,
as made during the run; the process then looks after every step at those modules, so the
next replay of the same code names the step (:mod:`pinrun.verifier.hidden_judge`).

Each flow is recorded, its module's state put back as a fresh process would
find it, then replayed in this process with the code on disk.
"""

from __future__ import annotations

import sys

import pinrun
from pinrun.artifacts.store import Store
from tests.helpers import Project

SOURCE = """
import functools

import pinrun

SEEN = []
CLIENT = None
STACK = []


@functools.lru_cache(maxsize=None)
def rates():
    return {"EU": 0.2}


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


@pinrun.step
def load(n: int) -> dict:
    return {"rate": rates()["EU"] + n}


@pinrun.step
def tweak(rate: float) -> dict:
    rates()["EU"] *= 2
    return {"tweaked": rate}


grow_flow = pinrun.Flow("grow", [first, grow, last])
once_flow = pinrun.Flow("once", [first, connect, last])
put_back_flow = pinrun.Flow("put_back", [push, pop])
cache_flow = pinrun.Flow("cache", [load, tweak])
"""


def _fresh(project: Project) -> None:
    """Put the module's state back as a new process would find it."""
    module = sys.modules[f"{project.package}.edges"]
    module.SEEN.clear()
    module.STACK.clear()
    vars(module)["CLIENT"] = None
    module.rates.cache_clear()


def _replayed(project: Project, store: Store, flow: str,
              repeat: int = 1) -> pinrun.ReplayReport:
    project.write("edges", SOURCE)
    run = pinrun.record(project.load("edges", flow), {"n": 1}, store=store)
    _fresh(project)
    return pinrun.replay(run.id, store=store, code="workdir", repeat=repeat)


def test_a_change_is_named_by_its_owner_then_by_its_step(project: Project,
                                                         project_store: Store) -> None:
    """``grow`` appends to a global: the first replay names the global, as changed during
    the run (on its last step), and runs the project's code once; the next replay of the
    same code in this process looks after every step and names ``grow``."""
    report = _replayed(project, project_store, "grow_flow")
    assert report.verdict == "reproduced", report.explain()
    hazards = {step.name: step.hazards for step in report.steps}
    assert (hazards["first"], hazards["grow"]) == ([], []), hazards
    (hazard,) = hazards["last"]
    assert hazard.startswith(f"module state: {project.package}.edges.SEEN changed during "
                             "this run, by one of its steps ('first', 'grow', 'last')"), hazard
    assert "--repeat 2" in hazard, hazard
    assert len(sys.modules[f"{project.package}.edges"].SEEN) == 1  # the code ran once
    again = pinrun.replay(report.run_id, store=project_store, code="workdir")
    hazards = {step.name: step.hazards for step in again.steps}
    assert hazards["grow"] == [f"module state: {project.package}.edges.SEEN changed "
                               "(hidden state a worker carries into its next run)"], hazards
    assert (hazards["first"], hazards["last"]) == ([], []), hazards


def test_a_change_made_once_is_named_on_the_run(project: Project,
                                                project_store: Store) -> None:
    """A client made on first use: named by its owner, on the run's last step."""
    report = _replayed(project, project_store, "once_flow")
    assert report.reproduced, report.explain()
    hazards = {step.name: step.hazards for step in report.steps}
    assert (hazards["first"], hazards["connect"]) == ([], []), hazards
    (hazard,) = hazards["last"]
    assert hazard.startswith(f"module state: {project.package}.edges.CLIENT changed during "
                             "this run"), hazard


def test_a_cached_result_filled_and_changed_in_one_run_is_named_by_the_next(
        project: Project, project_store: Store) -> None:
    """``load`` fills a cache whose result is a dict, ``tweak`` changes it in place: the
    edges see a cache that filled up (no hazard), so the next replay of the same code
    looks after every step and names the change on ``tweak``."""
    report = _replayed(project, project_store, "cache_flow")
    assert [step.hazards for step in report.steps] == [[], []]
    again = pinrun.replay(report.run_id, store=project_store, code="workdir")
    hazards = {step.name: step.hazards for step in again.steps}
    assert hazards["load"] == [], hazards
    assert any(hazard.startswith(f"cache: {project.package}.edges.rates() holds a result "
                                 "changed in place") for hazard in hazards["tweak"]), hazards


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
