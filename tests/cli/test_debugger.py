"""`pinrun replay RUN --step NAME --pdb`: stops in sync and async steps, and only looks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import SRC, Project, project_cli

FLOWS = """
import asyncio
import pinrun


async def lookup(key):
    await asyncio.sleep(0)
    return key * 2


@pinrun.step
async def fetch(n: int, ctx: pinrun.Context) -> dict:
    doubled = await ctx.effect("lookup", lookup, n)
    when = ctx.now()
    return {"doubled": doubled, "when": when.isoformat()}


@pinrun.step
def stamp(doubled: int, ctx: pinrun.Context) -> dict:
    first = ctx.now()
    return {"stamped": first.isoformat(), "d": doubled}


flow = pinrun.Flow("debugged", [fetch, stamp])
"""


def _debug(project: Project, run_id: str, step: str,
           typed: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    return subprocess.run([sys.executable, "-m", "pinrun", "replay", run_id, "--step", step,
                           "--pdb"], cwd=project.root, env=env, input=typed,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def recorded(project: Project) -> tuple[Project, str]:
    """A recorded run of a flow with an async step and a sync one, both asking the clock."""
    project.write("flows", FLOWS)
    assert project_cli(project, "init").returncode == 0
    done = project_cli(project, "run", project.entry("flows"), "--set", "n=3")
    assert done.returncode == 0, done.stderr
    return project, done.stdout.strip()


@pytest.mark.parametrize(("step", "stop_line"), [
    ("fetch", 'doubled = await ctx.effect("lookup", lookup, n)'),
    ("stamp", "first = ctx.now()")])
def test_pdb_stops_in_the_step_and_only_peeks(recorded: tuple[Project, str], step: str,
                                              stop_line: str) -> None:
    """pdb stops at the step's first line (async too); ctx.now() and an effect evaluated
    at the prompt show the recorded answers, and the replay still reproduces."""
    project, run_id = recorded
    typed = "p ctx.now()\np ctx.now()\n"
    if step == "fetch":
        typed += 'p ctx.effect("lookup", lookup, n)\n'
    done = _debug(project, run_id, step, typed + "c\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"-> {stop_line}" in done.stdout
    shown = [line for line in done.stdout.splitlines() if line.startswith("(Pdb) ")]
    assert shown[0].startswith("(Pdb) datetime.datetime(")
    assert shown[1] == shown[0]  # peeked twice: the same recorded answer, not the next
    if step == "fetch":
        assert shown[2] == "(Pdb) 6"
    assert "reproduced" in done.stdout


@pytest.mark.parametrize("step", ["fetch", "stamp"])
def test_quitting_the_debugger_stops_without_a_verdict(recorded: tuple[Project, str],
                                                       step: str) -> None:
    """`q` at the prompt stops the replay, which says so with no verdict: never a
    divergence of the step."""
    project, run_id = recorded
    done = _debug(project, run_id, step, "q\n")
    assert done.returncode == 1, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert f"could not replay: you quit the debugger in step {step!r}" in said
    assert "diverged" not in said


def test_pdb_on_a_resumed_step_shows_the_code_it_replays(project: Project) -> None:
    """A step a resume ran with fixed code is listed in pdb as that code, not as the
    code the run started with."""
    project.write("resumed", """
        import pinrun

        @pinrun.step
        def mid(base: int) -> dict:
            if base > 5:
                raise RuntimeError("too big")
            return {"half": base // 2}

        flow = pinrun.Flow("resumed", [mid])
    """)
    assert project_cli(project, "init").returncode == 0
    failed = project_cli(project, "run", project.entry("resumed"), "--set", "base=9")
    assert failed.returncode == 1
    run_id = failed.stderr.split("pinrun show ")[1].split("`")[0]
    project.edit("resumed", "    if base > 5:\n", "    print('checking')\n    if base > 50:\n")
    assert project_cli(project, "resume", run_id).returncode == 0
    done = _debug(project, run_id, "mid", "l\nc\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "if base > 50:" in done.stdout
    assert "if base > 5:" not in done.stdout
