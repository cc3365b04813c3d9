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

#: A module shaped like production code: a module logger, a compiled pattern, an enum, a
#: dataclass settings object, a cache filled at import, and a thread pool the step does
#: not use (one with live workers keeps their threads' state: never kept).
PURE = LOADS + """
import dataclasses
import enum
import functools
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import pinrun

log = logging.getLogger(__name__)
POOL = ThreadPoolExecutor(2)
CODE = re.compile(r"[a-z]{2}")


class Plan(enum.IntEnum):
    BASIC = 1
    PRO = 2


@dataclasses.dataclass
class Settings:
    region: str = "eu"
    limits: list = dataclasses.field(default_factory=lambda: [10, 20])


SETTINGS = Settings()


@functools.lru_cache(maxsize=None)
def rate(region: str) -> int:
    return 2 if region == "eu" else 3


rate("eu")


@pinrun.step
def price(n: int) -> dict:
    log.info("pricing %s", n)
    doubled = sum(x * rate(SETTINGS.region) for x in range(n + 1))
    return {"total": doubled + Plan.PRO, "ok": bool(CODE.match(SETTINGS.region))}


flow = pinrun.Flow("pure", [price])
"""

#: Ways a step keeps state in its code: a generator no snapshot can read, a closure's
#: counter, a function attribute, a dunder global, a callable object, a module the step
#: imports itself.
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
    "dunder global": """
__tally = {"n": 0}


def advance():
    __tally["n"] += 1
    return __tally["n"]
""",
    "callable object": """
class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.n


advance = Counter()
""",
    "lazy import": """
def advance():
    from .helper import COUNT  # imported by the step, not by the module

    COUNT["n"] += 1
    return COUNT["n"]
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
    """Three runs that leave a production-shaped module as they found it reproduce with
    the pinned code imported once: the worker put the same modules back."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    _record(project, PURE)
    assert _verify(project, log) == (["reproduced"] * 3, 1)


@pytest.mark.parametrize("kind", sorted(HIDDEN))
def test_state_no_watch_reads_is_never_carried_into_the_next_pinned_replay(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """State a step keeps in its code starts afresh in every pinned replay: the code is
    imported again each time. The code on disk, kept loaded as a long-running worker would
    keep it, carries it over and diverges."""
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("PINRUN_TEST_LOADS", str(log))
    project.write("helper", 'COUNT = {"n": 0}\n')
    _record(project, LOADS + HIDDEN[kind] + STEP)
    assert _verify(project, log) == (["reproduced"] * 3, 3)
    carried, _ = _verify(project, log, code="workdir")
    assert carried.count("diverged") == 2, carried
