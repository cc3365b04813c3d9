"""Hidden state named by its owner, through ``pinrun replay --repeat 2 --json`` (issue 11).

A throw-away project records one run per flow with ``pinrun run`` and replays
it twice in one process: a mutable default argument, a class-level list and a
mutated ``lru_cache`` result each make the second repetition diverge, and the
cause names the owner and the repetition that changed it; an ``lru_cache`` of a
pure function, a module-level logger, a compiled pattern and a constant
reproduce with no hazard.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.helpers import Project, project_cli

FLOWS = """
import asyncio
import functools
import logging
import re

import pinrun

log = logging.getLogger(__name__)
WORD = re.compile(r"[a-z]+")
LIMIT = 3


def remember(x, seen=[]):
    seen.append(x)
    return len(seen)


@pinrun.step
def defaults(n: int) -> dict:
    return {"count": remember(n)}


class Registry:
    items = []

    @classmethod
    def add(cls, item):
        cls.items.append(item)
        return list(cls.items)


@pinrun.step
def register(n: int) -> dict:
    return {"items": Registry.add(n)}


@functools.lru_cache(maxsize=None)
def settings():
    return {"tags": []}


@pinrun.step
def tag(n: int) -> dict:
    found = settings()
    found["tags"].append(n)
    return {"tags": list(found["tags"])}


@functools.lru_cache(maxsize=32)
def square(x):
    return x * x


@pinrun.step
def pure(n: int) -> dict:
    return {"square": square(n) + square(n + 1)}


@pinrun.step
def logged(n: int) -> dict:
    log.info("logging %s", n)
    return {"words": WORD.findall("a1bc2def")[:LIMIT], "limit": LIMIT + n}


BAG = []


@pinrun.step
async def left(n: int) -> dict:
    await asyncio.sleep(0)
    BAG.append(n)
    return {"left": len(BAG)}


@pinrun.step(after=[])
async def right(n: int) -> dict:
    await asyncio.sleep(0)
    return {"right": n}


default_flow = pinrun.Flow("defaults", [defaults])
class_flow = pinrun.Flow("registry", [register])
cache_flow = pinrun.Flow("tags", [tag])
pure_flow = pinrun.Flow("pure", [pure, logged])
concurrent_flow = pinrun.Flow("concurrent", [left, right], max_concurrency=2)
"""


def _pinrun(project: Project, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = project_cli(project, *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


def _replay_twice(project: Project, flow: str, *, code: int,
                  guards: str = "warn") -> dict[str, Any]:
    """Record one run of ``flow`` and replay it with ``--repeat 2 --json``."""
    run_id = _pinrun(project, "run", project.entry("flows", flow), "--set", "n=2").stdout.strip()
    report = json.loads(_pinrun(project, "replay", run_id, "--repeat", "2", "--guards", guards,
                                "--json", code=code).stdout)
    assert isinstance(report, dict)
    return report


@pytest.fixture
def flows(project: Project) -> Project:
    """The project with its flows written and its store made."""
    project.write("flows", FLOWS)
    _pinrun(project, "init")
    return project


def _causes(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [cause for step in report["steps"] for cause in step["causes"]]


@pytest.mark.slow
@pytest.mark.parametrize(("flow", "kind", "owner"), [
    ("default_flow", "default argument", "flows.remember(seen=...)"),
    ("class_flow", "module state", "flows.Registry.items"),
    ("cache_flow", "cache", "flows.settings()"),
])
def test_repeat_names_the_owner_and_the_repetition(flows: Project, flow: str, kind: str,
                                                   owner: str) -> None:
    """The second repetition diverges; the cause names the owner, the step and the
    repetition that changed it, and the repetition that read it again."""
    report = _replay_twice(flows, flow, code=1)
    assert report["verdict"] == "diverged"
    assert report["repetition"] == 2
    named = [cause for cause in _causes(report) if cause["kind"] == kind]
    assert len(named) == 1, _causes(report)
    message = named[0]["message"]
    assert message.startswith(f"{flows.package}.{owner} "), message
    assert "in repetition 1, read again in repetition 2" in message, message
    step = report["steps"][0]["name"]
    assert f"changed by step {step!r}" in message, message


@pytest.mark.slow
def test_a_mutated_cache_result_is_a_hazard_when_read_again(flows: Project) -> None:
    """The first repetition fills the cache (no hazard); the second changes a cached result
    in place, a hazard naming the cache."""
    report = _replay_twice(flows, "cache_flow", code=1)
    hazards = report["steps"][0]["hazards"]
    assert any(hazard.startswith(f"cache: {flows.package}.flows.settings() holds a result "
                                 "changed in place") for hazard in hazards), hazards


@pytest.mark.slow
def test_pure_cache_logger_pattern_and_constant_reproduce_with_no_hazard(
        flows: Project) -> None:
    """A cache of a pure function filling up, a logger, a compiled pattern and a constant:
    reproduced twice over, and no hazard at all."""
    report = _replay_twice(flows, "pure_flow", code=0)
    assert report["verdict"] == "reproduced"
    assert [step["hazards"] for step in report["steps"]] == [[], []]
    strict = _replay_twice(flows, "pure_flow", code=0, guards="strict")
    assert strict["verdict"] == "reproduced"


@pytest.mark.slow
def test_concurrent_steps_share_the_blame(flows: Project) -> None:
    """Async steps of one level run concurrently: the change is named on each as made by
    one of them, and the diverging step's cause says so."""
    report = _replay_twice(flows, "concurrent_flow", code=1)
    hazards = {step["name"]: step["hazards"] for step in report["steps"]}
    owner = f"module state: {flows.package}.flows.BAG changed"
    assert any(h.startswith(owner) and "'right'" in h for h in hazards["left"]), hazards
    assert any(h.startswith(owner) and "'left'" in h for h in hazards["right"]), hazards
    (cause,) = [c for c in _causes(report) if c["kind"] == "module state"]
    assert "changed by one of steps" in cause["message"], cause
    assert "in repetition 1, read again in repetition 2" in cause["message"], cause
