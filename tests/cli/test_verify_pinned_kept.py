"""A verify worker keeps a run's pinned code loaded for the next replay only while no run
changes it: module state, closures and function attributes a run changes, and module
objects no snapshot can read, make the next replay import the pinned code afresh.

Each throw-away project writes a line to the file ``$PINRUN_TEST_LOADS`` whenever its
module is executed, so the test counts how many times ``pinrun verify --code pinned -j 1``
imported the pinned code for three runs recorded by three ``pinrun run`` processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Project, project_cli

pytestmark = pytest.mark.slow

LOADS = """\
import os

with open(os.environ["PINRUN_TEST_LOADS"], "a") as _log:
    _log.write("loaded\\n")
"""

PURE = LOADS + """
import pinrun

RATES = {"eu": 2, "us": 3}


@pinrun.step
def price(n: int) -> dict:
    return {"total": n * RATES["eu"]}


flow = pinrun.Flow("pure", [price])
"""

#: Three ways a step keeps state its module's globals do not show by value: a generator
#: no snapshot can read, a closure's counter, a function attribute.
HIDDEN = {
    "generator": """
import itertools

TICKETS = (ticket for ticket in itertools.count())


def advance():
    return next(TICKETS)
""",
    "closure": """
def _counter():
    seen = 0

    def bump():
        nonlocal seen
        seen += 1
        return seen
    return bump


advance = _counter()
""",
    "function attribute": """
def advance():
    advance.calls += 1
    return advance.calls


advance.calls = 0
""",
}

STEP = """
import pinrun


@pinrun.step
def count(n: int) -> dict:
    return {"ticket": advance(), "n": n}


flow = pinrun.Flow("hidden", [count])
"""


def _record(project: Project, source: str) -> None:
    """Record three runs of ``source``, each by its own ``pinrun run`` process."""
    project.write("steps", source)
    assert project_cli(project, "init").returncode == 0
    for n in range(3):
        done = project_cli(project, "run", project.entry("steps"), "--set", f"n={n}")
        assert done.returncode == 0, done.stdout + done.stderr


def _verify(project: Project, log: Path, code: str = "pinned") -> tuple[list[str], int]:
    """Verify every run in one worker: the verdicts, and how many times the module ran."""
    before = len(log.read_text().splitlines())
    verified = project_cli(project, "verify", "--code", code, "-j", "1", "--json", "-")
    assert verified.returncode in (0, 1), verified.stdout + verified.stderr
    verdicts = [run["verdict"] for run in json.loads(verified.stdout)["results"]]
    return verdicts, len(log.read_text().splitlines()) - before


def test_code_no_run_changes_is_imported_once_per_worker(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three runs that leave the module as they found it reproduce with the pinned code
    imported once: the worker put the same modules back for the second and third."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    _record(project, PURE)
    assert _verify(project, log) == (["reproduced"] * 3, 1)


@pytest.mark.parametrize("kind", sorted(HIDDEN))
def test_state_no_watch_reads_is_never_carried_into_the_next_pinned_replay(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """State a step advances where no watch reads it by value (a generator global, a
    closure's counter, a function attribute) starts afresh in every pinned replay: the code
    is imported again each time. The code on disk, kept loaded as a long-running worker
    would keep it, carries it over and diverges."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    _record(project, LOADS + HIDDEN[kind] + STEP)
    assert _verify(project, log) == (["reproduced"] * 3, 3)
    carried, _ = _verify(project, log, code="workdir")
    assert carried.count("diverged") == 2, carried
