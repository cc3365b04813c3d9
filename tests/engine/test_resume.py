"""Resuming runs: interrupted or failed runs continue, under a code version policy."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.engine.lease import RunLease
from pinrun.engine.records import display_status, load_run
from pinrun.engine.resume import resume
from pinrun.engine.run import record
from pinrun.errors import CodeChangedError, InputError, RunBusyError, RunFailedError
from pinrun.flows.status import CodeChangedWarning
from tests.helpers import Project, start_child

SHOP = """
import os
import pinrun

MARKERS = os.path.dirname(__file__)

@pinrun.step
def first(n: int) -> dict:
    return {"doubled": n * 2}

@pinrun.step
def second(doubled: int) -> dict:
    if os.path.exists(os.path.join(MARKERS, "SLOW")):
        print("second started", flush=True)
        import time
        time.sleep(60)
    if os.path.exists(os.path.join(MARKERS, "FAIL")):
        raise RuntimeError("asked to fail")
    return {"done": doubled + 1, "code": "v1"}

flow = pinrun.Flow("shop", [first, second])
"""


def _markers(project: Project) -> Path:
    return project.root / project.package


def test_a_killed_run_is_interrupted_and_resumes(project: Project, project_store: Store) -> None:
    """SIGKILL mid-run: the run shows as interrupted; resume runs only the missing step."""
    project.write("shop", SHOP)
    (_markers(project) / "SLOW").touch()
    child = start_child(
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib;"
        "from pinrun.artifacts.store import Store; from pinrun.engine.run import record;"
        "flow = importlib.import_module(sys.argv[2]).flow;"
        "store = Store.open(sys.argv[3]); record(flow, {'n': 21}, store=store)",
        str(project.root), f"{project.package}.shop", str(project_store.path))
    try:
        assert child.stdout is not None
        first_line = child.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)
    finally:
        _, err = child.communicate()
    assert first_line == "second started", err
    (name,) = project_store.refs("runs/")
    run = load_run(project_store, name.split("/", 1)[1])
    assert run.status == "running"
    assert display_status(project_store, run) == "interrupted"
    assert [s.name for s in run.steps] == ["first"]
    (_markers(project) / "SLOW").unlink()
    resumed = resume(run.id, store=project_store)
    assert resumed.status == "succeeded"
    assert [(s.name, s.attempt) for s in resumed.steps] == [("first", 1), ("second", 1)]
    assert project_store.get_snapshot(resumed.state)["done"] == 43
    assert resumed.steps[0] == run.steps[0]  # the finished step is kept, not re-run
    assert fsck(project_store).ok
    with pytest.raises(InputError, match="already succeeded"):
        resume(run.id, store=project_store)


def test_a_failed_run_retries_the_failed_step(project: Project, project_store: Store) -> None:
    """The failed step runs again as attempt 2; the first attempt stays in the record."""
    project.write("shop", SHOP)
    (_markers(project) / "FAIL").touch()
    with pytest.raises(RunFailedError) as caught:
        record(project.load("shop"), {"n": 1}, store=project_store)
    (_markers(project) / "FAIL").unlink()
    resumed = resume(caught.value.run.id[:20], store=project_store)
    assert [(s.name, s.status, s.attempt) for s in resumed.steps] == [
        ("first", "succeeded", 1), ("second", "failed", 1), ("second", "succeeded", 2)]
    assert resumed.status == "succeeded"
    assert resumed.failed_step is None
    assert load_run(project_store, resumed.id) == resumed


def test_a_live_run_cannot_be_resumed(project: Project, project_store: Store) -> None:
    """While another process holds a run's lease, resume refuses; afterwards it may."""
    project.write("shop", SHOP)
    (_markers(project) / "FAIL").touch()
    with pytest.raises(RunFailedError) as caught:
        record(project.load("shop"), {"n": 1}, store=project_store, durability="run")
    run_id = caught.value.run.id
    (_markers(project) / "FAIL").unlink()
    with RunLease(project_store.path, run_id), pytest.raises(RunBusyError):
        resume(run_id, store=project_store)
    assert resume(run_id, store=project_store).status == "succeeded"


def _failed_run(project: Project, store: Store) -> str:
    project.write("shop", SHOP)
    (_markers(project) / "FAIL").touch()
    with pytest.raises(RunFailedError) as caught:
        record(project.load("shop"), {"n": 1}, store=store)
    (_markers(project) / "FAIL").unlink()
    project.edit("shop", '"code": "v1"', '"code": "v2"')
    return caught.value.run.id


def test_warn_policy_runs_the_code_on_disk_and_says_so(project: Project,
                                                       project_store: Store) -> None:
    """The default policy warns that the code changed, then runs the new code."""
    run_id = _failed_run(project, project_store)
    with pytest.warns(CodeChangedWarning, match="step 'second' changed"):
        resumed = resume(run_id, store=project_store)
    assert project_store.get_snapshot(resumed.state)["code"] == "v2"
    assert resumed.steps[-1].code != resumed.steps[1].code  # the new code is pinned too


def test_strict_policy_refuses_changed_code(project: Project, project_store: Store) -> None:
    """strict refuses before anything runs; the record is untouched."""
    run_id = _failed_run(project, project_store)
    before = load_run(project_store, run_id)
    with pytest.raises(CodeChangedError, match="Refusing"):
        resume(run_id, store=project_store, code_policy="strict")
    assert load_run(project_store, run_id) == before


def test_artifact_policy_runs_the_pinned_code(project: Project, project_store: Store) -> None:
    """artifact imports the pinned sources, whatever is on disk, and restores sys.modules."""
    run_id = _failed_run(project, project_store)
    on_disk = project.load("shop")  # the edited module, imported before the resume
    resumed = resume(run_id, store=project_store, code_policy="artifact")
    assert project_store.get_snapshot(resumed.state)["code"] == "v1"
    # The pinned code fingerprints as it did when recorded: the same step object.
    assert resumed.steps[-1].code == resumed.steps[1].code
    assert sys.modules[f"{project.package}.shop"].flow is on_disk


def test_disabled_policy_does_not_check(project: Project, project_store: Store) -> None:
    """disabled runs the code on disk without a warning."""
    run_id = _failed_run(project, project_store)
    resumed = resume(run_id, store=project_store, code_policy="disabled")
    assert project_store.get_snapshot(resumed.state)["code"] == "v2"


def test_a_flow_with_other_steps_cannot_resume_a_run(project: Project,
                                                     project_store: Store) -> None:
    """Resuming with a flow whose steps differ is refused, naming both step lists."""
    run_id = _failed_run(project, project_store)
    project.edit("shop", 'pinrun.Flow("shop", [first, second])', 'pinrun.Flow("shop", [first])')
    with pytest.raises(InputError, match="resumes only with the same steps"):
        resume(run_id, store=project_store, code_policy="disabled")


def test_bad_policy_and_durability_are_refused(store: Store, tmp_path: Path) -> None:
    """Unknown option values are clear input errors."""
    with pytest.raises(InputError, match="code policy"):
        resume("x", store=store, code_policy="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="durability"):
        resume("x", store=store, durability="always")  # type: ignore[arg-type]


LEVELS = """
import os
import pinrun

HERE = os.path.dirname(__file__)
CHARGES = []


def fail_if_marked(name):
    if os.path.exists(os.path.join(HERE, name)):
        raise RuntimeError(f"{name} asked to fail")


@pinrun.step
def start(k: int) -> dict:
    return {"started": True}


@pinrun.step(after=["start"])
def writer(started: bool) -> dict:
    return {"k": 100, "dup": "writer"}


@pinrun.step(after=["start"])
def reader(k: int) -> dict:
    fail_if_marked("FAIL_READER")
    return {"seen": k}


@pinrun.step(after=["start"])
def dup_writer(started: bool) -> dict:
    fail_if_marked("FAIL_DUP")
    return {"dup": "dup_writer"}


flow = pinrun.Flow("levels", [start, writer, reader], on_collision="overwrite")
dups = pinrun.Flow("dups", [start, writer, dup_writer], on_collision="overwrite")


@pinrun.step
async def a(n: int, ctx: pinrun.Context) -> dict:
    fail_if_marked("FAIL_A")
    return {"a": n}


@pinrun.step(after=[])
async def b(n: int, ctx: pinrun.Context) -> dict:
    return {"b": ctx.effect("charge_card", CHARGES.append, n)}


concurrent = pinrun.Flow("concurrent", [a, b], max_concurrency=4)
"""


def test_a_resumed_level_reads_the_state_as_the_level_began(project: Project,
                                                            project_store: Store) -> None:
    """The remaining step of a half-done level reads the level's base, not its siblings'."""
    project.write("levels", LEVELS)
    marker = _markers(project) / "FAIL_READER"
    marker.touch()
    with pytest.raises(RunFailedError) as caught:
        record(project.load("levels"), {"k": 1}, store=project_store)
    assert caught.value.run.level_start is not None
    marker.unlink()
    resumed = resume(caught.value.run.id, store=project_store)
    assert project_store.get_snapshot(resumed.state)["seen"] == 1  # as in a run that never failed
    assert resumed.level_start is None


def test_a_resumed_level_still_refuses_two_writers_of_one_key(project: Project,
                                                              project_store: Store) -> None:
    """A sibling that finished before the interruption still counts for collisions."""
    project.write("levels", LEVELS)
    marker = _markers(project) / "FAIL_DUP"
    marker.touch()
    with pytest.raises(RunFailedError):
        record(project.load("levels", "dups"), {"k": 1}, store=project_store)
    marker.unlink()
    (name,) = project_store.refs("runs/")
    with pytest.raises(RunFailedError, match="same level"):
        resume(name.split("/", 1)[1], store=project_store)


def test_a_failing_async_sibling_keeps_the_others_record(project: Project,
                                                         project_store: Store) -> None:
    """Concurrent siblings all ran: each is recorded, so resume does not run them again."""
    project.write("levels", LEVELS)
    marker = _markers(project) / "FAIL_A"
    marker.touch()
    module_flow = project.load("levels", "concurrent")
    charges = sys.modules[f"{project.package}.levels"].CHARGES
    with pytest.raises(RunFailedError):
        record(module_flow, {"n": 7}, store=project_store)
    run = load_run(project_store, project_store.refs("runs/").popitem()[0].split("/", 1)[1])
    assert [(s.name, s.status) for s in run.steps] == [("a", "failed"), ("b", "succeeded")]
    marker.unlink()
    # CHARGES is a global the step reads, so its fingerprint changed with it: no check.
    resumed = resume(run.id, store=project_store, flow=module_flow, code_policy="disabled")
    assert [s.name for s in resumed.steps] == ["a", "b", "a"]
    assert charges == [7]  # the card was charged once


def test_a_second_resume_at_once_is_refused_whatever_the_durability(
        project: Project, project_store: Store) -> None:
    """The lease is taken before anything else, for every durability."""
    run_id = _failed_run(project, project_store)
    with RunLease(project_store.path, run_id), pytest.raises(RunBusyError):
        resume(run_id, store=project_store, durability="run", code_policy="disabled")


def test_an_ambiguous_run_prefix_says_so(project: Project, project_store: Store) -> None:
    """A prefix of several run ids is an input error that shows one of them."""
    project.write("shop", SHOP)
    flow = project.load("shop")
    record(flow, {"n": 1}, store=project_store)
    record(flow, {"n": 2}, store=project_store)
    with pytest.raises(InputError, match="is the start of 2 run ids"):
        load_run(project_store, "2")


EXITS = """
import sys
import pinrun

@pinrun.step
def leave(n: int) -> dict:
    sys.exit(3)

flow = pinrun.Flow("exits", [leave])
"""


def test_sys_exit_in_a_step_is_a_recorded_failure(project: Project,
                                                  project_store: Store) -> None:
    """SystemExit does not end the run unrecorded: the step failed."""
    project.write("exits", EXITS)
    with pytest.raises(RunFailedError) as caught:
        record(project.load("exits"), {"n": 1}, store=project_store)
    assert isinstance(caught.value.__cause__, SystemExit)
    assert load_run(project_store, caught.value.run.id).status == "failed"


def test_recording_inside_a_running_event_loop(project: Project, project_store: Store) -> None:
    """An async step of a flow recorded from async code runs on a loop of its own."""
    import asyncio

    project.write("levels", LEVELS)
    flow = project.load("levels", "concurrent")

    async def main() -> str:
        return record(flow, {"n": 3}, store=project_store).status

    assert asyncio.run(main()) == "succeeded"
