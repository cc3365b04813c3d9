"""Resuming runs: interrupted or failed runs continue, under a code version policy."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.engine.lease import RunBusyError, RunLease
from pinrun.engine.records import RunFailedError, display_status, load_run
from pinrun.engine.resume import resume
from pinrun.engine.run import record
from pinrun.errors import InputError
from pinrun.flows.status import CodeChangedError, CodeChangedWarning
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
