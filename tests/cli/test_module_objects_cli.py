"""Module-level objects through the command line, as a user meets them (issue 9, items 3, 4).

Each test writes a throw-away project and runs ``python -m pinrun`` in it:
a step reading a logger, a compiled pattern, a path and a time zone through a
helper module records and replays; ``version=`` with a real logic change is
``same-version``; a worker recording three runs in one process pins one code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.helpers import SRC, Project, project_cli

HELPERS = r'''
import logging
import re
from pathlib import Path
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)
ORDER_ID = re.compile(r"^A(\d+)$")
DATA = Path("data") / "orders"
ZONE = ZoneInfo("UTC")


def parse(order_id):
    log.info("parsing %s", order_id)
    found = ORDER_ID.match(order_id)
    return {"n": int(found.group(1)), "where": DATA.as_posix(), "zone": ZONE.key}
'''

FLOW = '''
import pinrun
from PKG.helpers import parse


@pinrun.step
def load(order_id: str) -> dict:
    return {"parsed": parse(order_id)}


flow = pinrun.Flow("orders", [load])
'''


def _pinrun(project: Project, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = project_cli(project, *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


def _json(project: Project, *args: str, code: int = 0) -> Any:
    return json.loads(_pinrun(project, *args, "--json", code=code).stdout)


def _causes(report: dict[str, Any]) -> list[str]:
    return [cause["kind"] for step in report["steps"] for cause in step["causes"]]


@pytest.mark.slow
def test_logger_pattern_path_and_zone_record_and_replay(project: Project) -> None:
    """They record (no refusal), replay both ways, and an edited regex is code drift."""
    project.write("helpers", HELPERS)
    project.write("orders", FLOW.replace("PKG", project.package))
    target = project.entry("orders")
    _pinrun(project, "init")
    _pinrun(project, "pin", target)
    run = _json(project, "run", target, "--set", 'order_id="A12"')
    assert run["status"] == "succeeded"
    assert _json(project, "replay", run["id"])["verdict"] == "reproduced"
    assert _json(project, "replay", run["id"], "--code", "workdir")["verdict"] == "reproduced"
    assert _json(project, "status", target)["changed"] is False
    project.edit("helpers", r'r"^A(\d+)$"', r'r"^A(\d)"')
    status = _json(project, "status", target, code=1)
    assert [step["state"] for step in status["steps"]] == ["changed"]
    assert '+ORDER_ID = re.compile(r"^A(\\d)")' in status["steps"][0]["diff"]
    drifted = _json(project, "replay", run["id"], "--code", "workdir", code=1)
    assert drifted["verdict"] == "diverged"
    assert "code drift" in _causes(drifted)
    assert _json(project, "replay", run["id"])["verdict"] == "reproduced"  # pinned code


VERSIONED = '''
import logging
import pinrun

log = logging.getLogger(__name__)


@pinrun.step(version="1")
def scaled(x: int) -> dict:
    log.debug("scaling %s", x)
    return {"y": x * 2}


flow = pinrun.Flow("versioned", [scaled])
'''


@pytest.mark.slow
def test_version_with_a_logic_change_is_same_version(project: Project) -> None:
    """status says same-version with the diff (exit 0, as documented); replay names the change."""
    project.write("versioned", VERSIONED)
    target = project.entry("versioned")
    _pinrun(project, "init")
    _pinrun(project, "pin", target)
    run = _json(project, "run", target, "--set", "x=2")
    project.edit("versioned", "x * 2", "x * 3")
    status = _json(project, "status", target)
    assert [step["state"] for step in status["steps"]] == ["same-version"]
    assert '+    return {"y": x * 3}' in status["steps"][0]["diff"]
    text = _pinrun(project, "status", target).stdout
    assert "the code matches" not in text
    assert "version= did not change" in " ".join(text.split())
    drifted = _json(project, "replay", run["id"], "--code", "workdir", code=1)
    assert "code drift" in _causes(drifted)
    assert "same-version" in json.dumps(drifted)


CACHE = '''
SEEN: list[str] = []
'''

WORKER_FLOW = '''
import pinrun
from PKG import cache


@pinrun.step
def remember(order_id: str) -> dict:
    cache.SEEN.append(order_id)
    return {"seen": len(cache.SEEN)}


flow = pinrun.Flow("worker", [remember])
'''

WORKER = '''
import json, pinrun
from PKG.worker import flow

with pinrun.open_store() as store:
    print(json.dumps([pinrun.record(flow, {"order_id": "A1"}, store=store).id
                      for _ in range(3)]))
'''


@pytest.mark.slow
def test_a_worker_pins_one_code_for_identical_runs(project: Project) -> None:
    """Three runs in one process pin one code; the cache is hidden state, never code drift."""
    project.write("cache", CACHE)
    project.write("worker", WORKER_FLOW.replace("PKG", project.package))
    _pinrun(project, "init")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(project.root)]),
               PYTHONHASHSEED="0")
    env.pop("PINRUN_STORE", None)
    worker = subprocess.run([sys.executable, "-c",
                             textwrap.dedent(WORKER.replace("PKG", project.package))],
                            cwd=project.root, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert worker.returncode == 0, worker.stderr
    runs = json.loads(worker.stdout)
    shown = [_json(project, "show", run) for run in runs]
    assert len({item["steps"][0]["code"] for item in shown}) == 1
    hazard = (f"module state: {project.package}.cache.SEEN changed (hidden state a worker "
              "carries into its next run)")
    assert all(hazard in item["steps"][0]["hazards"] for item in shown)
    pinned = _json(project, "replay", runs[1], code=1)
    assert pinned["verdict"] == "diverged"
    assert "module state" in _causes(pinned)
    assert "not pinned" not in json.dumps(pinned)
    for run in runs:
        workdir = project_cli(project, "replay", run, "--code", "workdir", "--json")
        assert workdir.returncode in (0, 1), workdir.stderr
        assert "code drift" not in _causes(json.loads(workdir.stdout))
