"""run_verification's values: made in the workers and sent as JSON, they are exactly what
verify_runs' results make into data; JSON that would not carry a value exactly is not used;
the pool's tasks shrink as the runs run out."""

from __future__ import annotations

import math
from typing import Any

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.records import run_ref
from pinrun.verifier.local_pool import task_size
from pinrun.verifier.report import ReplayReport
from pinrun.verifier.verify import run_verification, verify_runs
from pinrun.verifier.worker import RunResult, _values_answer, chunk_results, chunk_values
from tests.helpers import Project
from tests.verifier.test_corrupt_recorded_output import _damage
from tests.verifier.test_verify_brief import STEPS


def _timeless(value: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in value.items() if key != "seconds"}


@pytest.mark.slow
def test_values_are_the_results_made_into_data(project: Project, project_store: Store) -> None:
    """Runs that reproduce, one that diverges and one whose record is gone, on two workers:
    run_verification yields, in the same order, exactly what verify_runs' results make
    into data (times apart); with fail_fast both stop at the same run."""
    project.write("pricing", STEPS)
    flow = project.load("pricing")
    runs = [pinrun.record(flow, {"n": n}, store=project_store).id for n in (1, 2, 3, 4)]
    project.write("pricing", STEPS.replace('n * RATE["eu"]', 'n * RATE["eu"] + (n == 3)'))
    record = project_store.get_ref(run_ref(runs[1]))
    assert record is not None
    _damage(project_store, record, delete=True)
    arguments: dict[str, Any] = {"code": "workdir", "guards": "warn", "jobs": 2,
                                 "project_root": project.root}
    values = list(run_verification(project_store, runs, **arguments))
    objects = [result.as_value() for result in verify_runs(project_store, runs, **arguments)]
    assert [value["verdict"] for value in values] == \
        ["error", "reproduced", "diverged", "reproduced"]
    assert [_timeless(value) for value in values] == [_timeless(value) for value in objects]
    assert values[0]["store_error"] is True
    assert values[2]["steps"][0]["status"] != "match"
    assert all(value["seconds"] > 0 for value in values[1:])
    stopped = list(run_verification(project_store, [runs[0], runs[2], runs[3]],
                                    fail_fast=True, **arguments))
    assert [value["run"] for value in stopped] == [runs[0], runs[2]]


def test_values_go_as_json_only_when_json_carries_them_exactly() -> None:
    """A worker's values go as JSON when they read back the same; a NaN (JSON would make
    it null) sends that chunk pickled, and the parent still gets the exact value."""
    plain = [RunResult("r1", ReplayReport("r1", "flow", "workdir", "reproduced"),
                       seconds=0.25), RunResult("r2", error="it failed", store_error=True)]
    data = _values_answer(plain)
    assert data.startswith(b"[")
    assert chunk_values(data, ["r1", "r2"]) == [result.as_value() for result in plain]
    odd = [RunResult("r3", error="odd", seconds=math.nan)]
    data = _values_answer(odd)
    assert not data.startswith(b"[")
    assert [result.run_id for result in chunk_results(data, ["r3"])] == ["r3"]
    (value,) = chunk_values(data, ["r3"])
    assert value["error"] == "odd"
    assert math.isnan(value["seconds"])


@pytest.mark.parametrize("data", [
    b"[1, 2", b"[1]", b'[{"run": "r1"}]', b"\x80garbage",
    b'[{"run": "r1", "verdict": "reproduced"}, {"run": "r3", "verdict": "reproduced"}]',
    b'[{"run": "r1", "verdict": "reproduced"}, {"run": "r2"}]'])
def test_an_unreadable_values_answer_is_an_error_for_each_run(data: bytes) -> None:
    """An answer that is not one value per run, in order, each naming its run and a verdict
    (cut short, of other items, of another length or runs, or not a pickle) is an error
    value for each of the chunk's runs."""
    values = chunk_values(data, ["r1", "r2"])
    assert [value["run"] for value in values] == ["r1", "r2"]
    assert all(value["verdict"] == "error" for value in values)
    assert all("could not be read" in value["error"] for value in values)


def test_tasks_shrink_as_the_runs_run_out() -> None:
    """A task takes at most 64 runs, about a quarter of each worker's share of the runs
    still to come, and at least one: the last tasks of a group are short."""
    assert task_size(10_000, 2) == 64
    assert task_size(500, 2) == 62
    assert task_size(100, 2) == 12
    assert task_size(40, 1) == 10
    assert task_size(7, 2) == 1
    assert task_size(0, 4) == 1
    remaining, sizes = 1_000, []
    while remaining > 0:
        sizes.append(min(task_size(remaining, 2), remaining))
        remaining -= sizes[-1]
    assert sizes[0] == 64
    assert sizes[-8:] == [1] * 8
    assert sizes == sorted(sizes, reverse=True)
