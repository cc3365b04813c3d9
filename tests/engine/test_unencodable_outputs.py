"""A step that returns what cannot be stored has failed: recorded, never left running.

Whatever stops a step's outputs from being encoded (a type the codec does not
know, an int too long for the interpreter to print, a mapping of the step's
own that raises) is that step's recorded failure, so the run ends ``failed``
and ``pinrun show`` says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.errors import RunFailedError
from tests.helpers import Project, project_cli

FLOW = """
import pinrun


@pinrun.step
def first(n: int) -> dict:
    return {"doubled": n * 2}


@pinrun.step
def opaque(doubled: int) -> dict:
    return {"thing": object()}


@pinrun.step
def huge(doubled: int) -> dict:
    return {"big": 10 ** 5000}


opaque_flow = pinrun.Flow("opaque", [first, opaque])
huge_flow = pinrun.Flow("huge", [first, huge])
"""


_cli = project_cli


@pytest.mark.slow
@pytest.mark.parametrize(("flow", "step", "kind"), [
    ("opaque_flow", "opaque", "object"), ("huge_flow", "huge", "int")])
def test_pinrun_run_records_an_unencodable_output_as_a_failed_step(
        project: Project, flow: str, step: str, kind: str) -> None:
    """`pinrun run` exits 1 with one line; the run is failed (not interrupted) and
    `pinrun show` names the step's UnsupportedValueError with its path."""
    project.write("shop", FLOW)
    assert _cli(project, "init").returncode == 0
    done = _cli(project, "run", project.entry("shop", flow), "--set", "n=2", "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    run_id = json.loads(done.stdout)["id"]
    (listed,) = json.loads(_cli(project, "runs", "--json").stdout)
    assert (listed["id"], listed["status"], listed["failed_step"]) == (run_id, "failed", step)
    shown = _cli(project, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    steps = json.loads(shown.stdout)["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("first", "succeeded"),
                                                         (step, "failed")]
    error = steps[1]["error"]
    assert error["type"] == "pinrun.errors.UnsupportedValueError"
    assert f"the outputs of step {step!r}" in error["message"]
    assert kind in error["message"]
    text = _cli(project, "show", run_id).stdout
    assert f"{step} failed: pinrun.errors.UnsupportedValueError" in " ".join(text.split())


class _Exploding(Mapping[str, Any]):
    """A mapping of the step's own whose keys cannot even be listed."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no keys today")

    def __len__(self) -> int:
        return 1


def test_any_exception_from_the_outputs_is_the_steps_recorded_failure(
        project_store: Store) -> None:
    """A returned mapping that raises while read is recorded as that step's failure,
    and the failed run replays as reproduced (the same error comes back)."""

    @pinrun.step
    def explode(n: int) -> Any:
        return _Exploding()

    flow = pinrun.Flow("exploding", [explode])
    with pytest.raises(RunFailedError) as caught:
        pinrun.record(flow, {"n": 1}, store=project_store)
    run = load_run(project_store, caught.value.run.id)
    assert run.status == "failed"
    (step,) = run.steps
    assert step.error is not None
    assert (step.error.type, step.error.message) == ("RuntimeError", "no keys today")
    report = pinrun.replay(run.id, store=project_store, code="workdir", flow=flow)
    assert report.verdict == "reproduced"
