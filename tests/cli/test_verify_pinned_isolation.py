"""Pinned replays in one verify worker are isolated: module state one run changes never
reaches the next run's replay, whatever the worker keeps loaded between runs.

A throw-away project whose step counts its calls in a module-level dict and returns the
count; each run is recorded by its own ``pinrun run`` process (so each recorded 1), and
``pinrun verify --code pinned -j 1`` replays them all, one after the other, in one worker.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import Project, project_cli

pytestmark = pytest.mark.slow

STEPS = """\
import pinrun

CALLS = {"n": 0}


@pinrun.step
def count(n: int) -> dict:
    CALLS["n"] += 1
    return {"calls": CALLS["n"], "seen": n}


@pinrun.step(after=[count])
def double(calls: int) -> dict:
    return {"twice": calls * 2}


flow = pinrun.Flow("counting", [count, double])
"""


def test_a_run_mutating_module_state_does_not_leak_into_the_next_pinned_replay(
        project: Project) -> None:
    """Three runs whose step bumps a module-level counter all reproduce under
    `pinrun verify --code pinned -j 1`: each replay starts from the pinned module's state."""
    project.write("steps", STEPS)
    assert project_cli(project, "init").returncode == 0
    for n in range(3):
        done = project_cli(project, "run", project.entry("steps"), "--set", f"n={n}")
        assert done.returncode == 0, done.stdout + done.stderr
    verified = project_cli(project, "verify", "--code", "pinned", "-j", "1", "--json", "-")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    runs = json.loads(verified.stdout)["results"]
    assert len(runs) == 3
    assert [run["verdict"] for run in runs] == ["reproduced"] * 3
    # The workdir code keeps its modules loaded from run to run, as a long-running
    # worker would: there the counter carries over, and the second run diverges.
    carried = project_cli(project, "verify", "--code", "workdir", "-j", "1", "--json", "-")
    assert carried.returncode == 1, carried.stdout + carried.stderr
    verdicts = [run["verdict"] for run in json.loads(carried.stdout)["results"]]
    assert verdicts.count("diverged") == 2, verdicts
