"""Review of 644e288 (pinrun's own environment reads go to the real ``os.environ`` while
guards are up): a pinned replay whose step changes the environment never lets the next
pinned replay in the same process reuse the code the first one imported.

The verify worker keeps the stand-ins up for good (``keep_stand_ins``), so both kept-code
checks (:func:`pinrun.verifier.kept_code.state_of`) read the environment through
``GuardedEnviron.unguarded``. Each throw-away project writes a line to
``$PINRUN_TEST_LOADS`` whenever its module runs, so the tests count fresh imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SRC, Project, project_cli

pytestmark = pytest.mark.slow

LOADS = """\
import os

with open(os.environ["PINRUN_TEST_LOADS"], "a") as _log:
    _log.write("loaded\\n")

import pinrun
"""

#: How a step changes the environment (n: the run's input).
CHANGES = {
    "set": 'os.environ["PINRUN_REV10_MARK"] = str(n)',
    "set the same": 'os.environ["PINRUN_REV10_MARK"] = "same"',
    "update": 'os.environ.update({"PINRUN_REV10_MARK": str(n)})',
    # (pop would read the value: noted, refused under strict guards)
    "delete": ('try:\n        del os.environ["PINRUN_REV10_GONE"]\n'
               '    except KeyError:\n        pass'),
    "setdefault": 'os.environ.setdefault("PINRUN_REV10_MARK", str(n))',
}

STEP = """

@pinrun.step
def mark(n: int) -> dict:
    {change}
    return {{"n": n}}


flow = pinrun.Flow("marking", [mark])
"""


def _record(project: Project, change: str, runs: int = 3) -> None:
    project.write("steps", LOADS + STEP.format(change=change))
    assert project_cli(project, "init").returncode == 0
    for n in range(runs):
        done = project_cli(project, "run", project.entry("steps"), "--set", f"n={n}")
        assert done.returncode == 0, done.stdout + done.stderr


def _verify(project: Project, log: Path, guards: str) -> tuple[list[str], int]:
    before = len(log.read_text().splitlines())
    verified = project_cli(project, "verify", "--code", "pinned", "-j", "1", "--guards",
                           guards, "--json", "-")
    assert verified.returncode in (0, 1), verified.stdout + verified.stderr
    verdicts = [run["verdict"] for run in json.loads(verified.stdout)["results"]]
    return verdicts, len(log.read_text().splitlines()) - before


@pytest.mark.parametrize("guards", ["warn", "strict"])
@pytest.mark.parametrize("kind", ["set", "update", "delete"])
def test_a_step_changing_the_environment_makes_the_next_worker_replay_import_afresh(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
        guards: str) -> None:
    """Three runs, each changing the environment, verified in one worker: every replay
    imports the pinned code afresh (the kept-code check saw the change)."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    if kind == "delete":  # each run deletes it; the worker's first replay really does
        monkeypatch.setenv("PINRUN_REV10_GONE", "here")
        _record(project, CHANGES[kind], runs=1)
        for _ in range(2):  # the second and third recorded with the variable set too
            done = project_cli(project, "run", project.entry("steps"), "--set", "n=9")
            assert done.returncode == 0, done.stdout + done.stderr
        verdicts, loads = _verify(project, log, guards)
        # The worker puts the environment back after each run: each replay finds the
        # variable and deletes it again, so each imports afresh.
        assert verdicts == ["reproduced"] * 3
        assert loads == 3
        assert os.environ["PINRUN_REV10_GONE"] == "here"
        return
    _record(project, CHANGES[kind])
    verdicts, loads = _verify(project, log, guards)
    assert verdicts == ["reproduced"] * 3
    assert loads == 3


@pytest.mark.parametrize("guards", ["warn", "strict"])
def test_a_step_setting_what_is_already_set_keeps_the_code(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guards: str) -> None:
    """Control: the variable is set in the worker's environment already, and each step
    sets the same value: nothing changes, so the first replay's code serves all three
    (and, the other way round, with the variable unset each replay sets it: a change,
    put back after each run, so each imports afresh)."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    monkeypatch.setenv("PINRUN_REV10_MARK", "same")
    _record(project, CHANGES["set the same"])
    verdicts, loads = _verify(project, log, guards)
    assert verdicts == ["reproduced"] * 3
    assert loads == 1
    monkeypatch.delenv("PINRUN_REV10_MARK")
    verdicts, loads = _verify(project, log, guards)
    assert verdicts == ["reproduced"] * 3
    assert loads == 3


REPLAY_THRICE = """
import os, sys


def main():  # names kept out of __main__, which the project's modules may count in
    from pathlib import Path

    import pinrun
    from pinrun.artifacts.store import Store
    from pinrun.verifier.verify import Selection, select_runs
    from pinrun.world.guards import keep_stand_ins

    guards, worker = sys.argv[1], sys.argv[2] == "1"
    if worker:  # as a verify worker: the stand-ins up for good
        keep_stand_ins()
    with Store.open(Path(".pinrun")) as store:
        (run_id,) = select_runs(store, Selection())
        for _ in range(3):
            report = pinrun.replay(run_id, store=store, code="pinned", guards=guards)
            assert report.verdict == "reproduced", report
            print("mark", os.environ.get("PINRUN_REV10_MARK"), type(os.environ).__name__)


main()
"""


@pytest.mark.parametrize("worker", [False, True])
@pytest.mark.parametrize("guards", ["warn", "strict"])
def test_one_run_replayed_in_one_process_imports_afresh_after_it_set_a_variable(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guards: str,
        worker: bool) -> None:
    """The same run replayed pinned three times in one process (guards put up per replay,
    or kept up as in a verify worker), its step setting a variable that was unset: the
    second replay imports afresh (the environment changed), the third reuses the
    second's code (its step set what was already set)."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    monkeypatch.delenv("PINRUN_REV10_MARK", raising=False)
    _record(project, CHANGES["set"], runs=1)
    before = len(log.read_text().splitlines())
    script = tmp_path / "replay_thrice.py"  # outside the project: not one of its modules
    script.write_text(REPLAY_THRICE)
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    env["PYTHONHASHSEED"] = "0"  # as recorded: replayed here, not in a child
    done = subprocess.run([sys.executable, str(script), guards, "1" if worker else "0"],
                          cwd=project.root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    kind = "GuardedEnviron" if worker else "_Environ"
    assert done.stdout.splitlines() == [f"mark 0 {kind}"] * 3
    assert len(log.read_text().splitlines()) - before == 2


def test_the_environment_one_replay_sets_is_what_the_next_fresh_import_sees(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A verify worker puts the environment back after each run: a module that reads a
    variable at import (not a step's read, so nothing is noted) sees what the process
    had, not what the previous run's step set, and each run reproduces as it does alone
    (found by review rev10; before, the second run diverged)."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    monkeypatch.delenv("PINRUN_REV10_MARK", raising=False)
    source = LOADS + """
SEEN = os.environ.get("PINRUN_REV10_MARK", "unset")


@pinrun.step
def mark(n: int) -> dict:
    os.environ["PINRUN_REV10_MARK"] = "set by a step"
    return {"n": n, "seen": SEEN}


flow = pinrun.Flow("marking", [mark])
"""
    project.write("steps", source)
    assert project_cli(project, "init").returncode == 0
    for n in range(2):
        done = project_cli(project, "run", project.entry("steps"), "--set", f"n={n}")
        assert done.returncode == 0, done.stdout + done.stderr
    verdicts, _ = _verify(project, log, "warn")
    assert "PINRUN_REV10_MARK" not in os.environ
    assert verdicts == ["reproduced", "reproduced"], verdicts
