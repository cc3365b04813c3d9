"""Replay's hard cases: failing or mutated effects, new steps, datetime identity, leaks."""

from __future__ import annotations

import sys
import time

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.errors import RunFailedError
from pinrun.verifier.replayer import replay
from tests.helpers import Project

HARD = """
import datetime
import pinrun
from {package} import lazy_helper_loader


def unreachable(order_id):
    raise ConnectionError(f"cannot reach the API for {{order_id}}")


def rows(count):
    return [{{"row": n}} for n in range(count)]


@pinrun.step
def fetch(order_id: str, ctx: pinrun.Context) -> dict:
    return {{"data": ctx.effect("fetch", unreachable, order_id)}}


failing_effect = pinrun.Flow("failing_effect", [fetch])


@pinrun.step
def extend(n: int, ctx: pinrun.Context) -> dict:
    found = ctx.effect("rows", rows, n)
    found.append({{"row": "added by the step"}})
    return {{"rows": found}}


mutated_effect = pinrun.Flow("mutated_effect", [extend])


@pinrun.step
def first(n: int) -> dict:
    return {{"x": n + 1}}


growing = pinrun.Flow("growing", [first])


@pinrun.step
def stamped(n: int) -> dict:
    return {{"at": datetime.datetime.now().isoformat()}}


stamping = pinrun.Flow("stamping", [stamped])


@pinrun.step
def exact(n: int, ctx: pinrun.Context) -> dict:
    return {{"is_datetime": type(ctx.now()) is datetime.datetime}}


identity = pinrun.Flow("identity", [exact])


@pinrun.step
def lazy(n: int) -> dict:
    return {{"stamp_is_real": lazy_helper_loader.load()}}


lazily = pinrun.Flow("lazily", [lazy])
"""

LOADER = """
import importlib


def load():
    module = importlib.import_module(__package__ + ".late")
    return module.real()
"""

LATE = """
import time
from time import time as clock


def real():
    return clock is time.time
"""


@pytest.fixture
def hard(project: Project) -> Project:
    """The flows of this file, in a package with a module imported late."""
    project.write("lazy_helper_loader", LOADER)
    project.write("late", LATE)
    project.write("hard", HARD.format(package=project.package))
    return project


def test_an_effect_that_raised_raises_again_and_the_failure_reproduces(
        hard: Project, project_store: Store) -> None:
    """The exception is recorded as the effect's answer, so replay fails the same way."""
    with pytest.raises(RunFailedError) as caught:
        record(hard.load("hard", "failing_effect"), {"order_id": "A1"}, store=project_store)
    report = replay(caught.value.run.id, store=project_store)
    assert report.reproduced, report.explain()


def test_a_step_changing_an_effect_result_reproduces(hard: Project,
                                                     project_store: Store) -> None:
    """The step gets a copy of the result; the recorded answer stays as it was."""
    run = record(hard.load("hard", "mutated_effect"), {"n": 2}, store=project_store)
    assert replay(run.id, store=project_store).reproduced


def test_a_step_added_to_the_code_is_a_divergence(hard: Project,
                                                  project_store: Store) -> None:
    """A finished run replayed with code that has one more step: diverged, 'added'."""
    run = record(hard.load("hard", "growing"), {"n": 1}, store=project_store)
    hard.edit("hard", 'pinrun.Flow("growing", [first])',
              'pinrun.Flow("growing", [first, extend])')
    report = replay(run.id, store=project_store, code="workdir")
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    assert (first.name, first.divergence) == ("extend", "added")


def test_guards_keep_the_datetime_class_itself(hard: Project, project_store: Store) -> None:
    """type(x) is datetime holds under guards, as it did when recorded."""
    run = record(hard.load("hard", "identity"), {"n": 1}, store=project_store)
    assert replay(run.id, store=project_store, code="workdir").reproduced


def test_a_module_imported_during_a_guarded_step_gets_the_real_functions_back(
        hard: Project, project_store: Store) -> None:
    """Names a late module imported while guarded are the real ones afterwards."""
    run = record(hard.load("hard", "lazily"), {"n": 1}, store=project_store)
    sys.modules.pop(f"{hard.package}.late", None)
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()
    assert sys.modules[f"{hard.package}.late"].clock is time.time
    assert time.time.__module__ == "time"
    assert str(hard.root) in sys.path  # the fixture's entry, and no second one
    assert sys.path.count(str(hard.root)) == 1


def test_datetime_now_is_named_with_file_and_line(hard: Project, project_store: Store) -> None:
    """datetime.now() in a step: the cause names it; strict fails the step."""
    run = record(hard.load("hard", "stamping"), {"n": 1}, store=project_store)
    report = replay(run.id, store=project_store, code="workdir")
    first = report.first_divergence
    assert first is not None
    cause = next(c for c in first.causes if c.kind == "nondeterministic call")
    assert cause.message.startswith("datetime.now()")
    assert cause.file is not None
    assert cause.file.endswith("hard.py")
    strict = replay(run.id, store=project_store, code="workdir", guards="strict")
    failed = strict.first_divergence
    assert failed is not None
    assert failed.divergence == "error"
    assert sys.getprofile() is None
