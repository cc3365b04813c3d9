"""pinrun replay: the verdict, the table, --json and the exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from tests.cli.conftest import invoke
from tests.helpers import SRC, Project

SHOP = """
import pinrun


@pinrun.step
def first(n: int) -> dict:
    return {"doubled": n * 2}


@pinrun.step
def second(doubled: int) -> dict:
    return {"done": doubled + 1, "code": "v1"}


flow = pinrun.Flow("shop", [first, second])
"""


@pytest.fixture
def runner(project: Project, project_cli: CliRunner) -> CliRunner:
    """A CLI runner in the project folder, with a store and the shop flow."""
    project.write("shop", SHOP)
    return project_cli



def test_replay_reproduces_then_diverges_on_workdir(runner: CliRunner,
                                                    project: Project) -> None:
    """Exit 0 with a table when it reproduces; exit 1 with the diff and the code drift."""
    run_id = invoke(runner, "run", project.entry("shop"), "--set", "n=2").stdout.strip()
    out = invoke(runner, "replay", run_id).output
    assert "pinned code: reproduced" in out
    project.edit("shop", '"code": "v1"', '"code": "v2"')
    diverged = invoke(runner, "replay", run_id, "--code", "workdir", code=1).output
    assert "first divergence: step 'second'" in diverged
    assert "~ code: 'v1' -> 'v2'" in diverged
    assert "code drift" in diverged
    assert '+    return {"done": doubled + 1, "code": "v2"}' in diverged
    data = json.loads(invoke(runner, "replay", run_id, "--code", "workdir", "--json",
                             code=1).stdout)
    assert data["verdict"] == "diverged"
    assert data["first_divergence"] == "second"
    assert data["steps"][1]["changes"] == [
        {"path": "code", "kind": "changed", "recorded": "'v1'", "replayed": "'v2'",
         "detail": []}]
    assert invoke(runner, "replay", run_id, "--code", "pinned").exit_code == 0


def test_a_damaged_object_met_during_replay_exits_3(runner: CliRunner, project: Project,
                                                    tmp_path: Path) -> None:
    """A corrupted step output: a store error naming the digest, not a divergence."""
    run_id = invoke(runner, "run", project.entry("shop"), "--set", "n=2").stdout.strip()
    with Store.open(project.root / ".pinrun") as store:
        events = load_run(store, run_id).steps[1].events
        env = store.environment

        def damage(txn: object) -> None:
            record = bytearray(txn.get(events.raw, db=env.dbs["objects"]))  # type: ignore[attr-defined]
            record[-1] ^= 0xFF
            txn.put(events.raw, bytes(record), db=env.dbs["objects"])  # type: ignore[attr-defined]

        env.write(damage)
    result = invoke(runner, "replay", run_id, code=3)
    assert events.hex in result.stderr


def test_replay_of_an_unknown_run_exits_2(runner: CliRunner) -> None:
    """A run id that is not in the store is bad input."""
    assert "no run 'nope' in this store" in invoke(runner, "replay", "nope", code=2).stderr


CLOCKED = """
import time
import pinrun


@pinrun.step
def stamp(n: int) -> dict:
    return {"stamped": time.time()}


flow = pinrun.Flow("clocked", [stamp])
"""


def test_replay_names_a_clock_read_and_strict_fails_it(runner: CliRunner,
                                                       project: Project) -> None:
    """The cause names time.time() with its line; --guards strict fails the step."""
    project.write("clocked", CLOCKED)
    run_id = invoke(runner, "run", project.entry("clocked"), "--set", "n=1").stdout.strip()
    out = invoke(runner, "replay", run_id, code=1).output
    assert "nondeterministic call: time.time() (clock) outside the context" in out
    assert "clocked.py:8" in out.replace("\n", "")
    strict = json.loads(invoke(runner, "replay", run_id, "--guards", "strict", "--json",
                               code=1).stdout)
    assert strict["steps"][0]["divergence"] == "error"
    assert "use ctx.now()" in strict["steps"][0]["message"]


def test_replay_stops_in_pdb_at_a_step(runner: CliRunner, project: Project) -> None:
    """--step NAME --pdb: the debugger at the step's first line, its inputs at hand."""
    run_id = invoke(runner, "run", project.entry("shop"), "--set", "n=21").stdout.strip()
    done = subprocess.run(
        [sys.executable, "-m", "pinrun", "replay", run_id, "--step", "second", "--pdb"],
        input="p doubled * 1000\ncontinue\n", cwd=project.root, capture_output=True,
        text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(project.root)])})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "42000" in done.stdout
    assert "(Pdb)" in done.stdout
    assert "reproduced" in done.stdout
    bad = invoke(runner, "replay", run_id, "--pdb", code=2)
    assert "--step NAME" in bad.stderr
    unknown = invoke(runner, "replay", run_id, "--step", "nope", "--pdb", code=2)
    assert "no recorded step 'nope'" in unknown.stderr


def test_replay_perturb_and_repeat_options(runner: CliRunner, project: Project) -> None:
    """A deterministic run survives --repeat and every --perturb variation."""
    run_id = invoke(runner, "run", project.entry("shop"), "--set", "n=2").stdout.strip()
    data = json.loads(invoke(runner, "replay", run_id, "--repeat", "2", "--perturb",
                             "hashseed,tz,locale", "--json").stdout)
    assert data["verdict"] == "reproduced"
    assert data["repeat"] == 2
    assert [(p["kind"], p["verdict"]) for p in data["perturbations"]] == [
        ("hashseed", "reproduced"), ("tz", "reproduced"), ("locale", "reproduced")]
    assert "choose among" in invoke(runner, "replay", run_id, "--perturb", "moon",
                                    code=2).stderr
