"""A replay never reaches the outside world by default: through the CLI, as a user would.

A real HTTP server on 127.0.0.1 counts the requests it gets; a project's step
calls it directly (urllib) or through ``ctx.effect``, and another starts a
subprocess. ``pinrun`` runs as a real process in the project folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Project, project_cli
from tests.world_server import counting_server

pytestmark = pytest.mark.slow

# Line numbers matter: the tests check that the report names them.
DIRECT = """\
import urllib.request

import pinrun


@pinrun.step
def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return {"body": response.read().decode()}


flow = pinrun.Flow("direct", [fetch])
"""
DIRECT_LINE = 8

THROUGH_EFFECT = """\
import urllib.request

import pinrun


def fetch_fn(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pinrun.step
def fetch(url: str, ctx: pinrun.Context) -> dict:
    return {"body": ctx.effect("fetch", fetch_fn, url)}


flow = pinrun.Flow("effect", [fetch])
"""

SUBPROCESS = """\
import subprocess
import sys

import pinrun


@pinrun.step
def shell(n: int) -> dict:
    done = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                          text=True, check=True)
    return {"out": done.stdout.strip(), "twice": 2 * n}


flow = pinrun.Flow("shelling", [shell])
"""
SUBPROCESS_LINE = 9


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1, in a thread: its URL and the paths it was asked."""
    with counting_server() as served:
        yield served


def _record(project: Project, module: str, *sets: str) -> str:
    assert project_cli(project, "init").returncode == 0
    done = project_cli(project, "run", project.entry(module), *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def _show_hazards(project: Project, run_id: str) -> list[str]:
    shown = project_cli(project, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return [hazard for step in json.loads(shown.stdout)["steps"] for hazard in step["hazards"]]


def test_a_direct_http_call_is_refused_on_replay_and_allowed_on_request(
        project: Project, server: tuple[str, list[str]]) -> None:
    """Recorded once (a hazard on the step); replay and verify refuse it, name it with
    file:line and exit 1 while the server gets nothing; --allow-world lets it through."""
    url, hits = server
    path = project.write("direct", DIRECT)
    run_id = _record(project, "direct", "--set", f"url={json.dumps(url)}")
    assert hits == ["/thing"]
    port = url.split(":")[2].split("/")[0]
    # One hazard: the look-up of the address it then connects to says nothing more.
    assert _show_hazards(project, run_id) == [
        f"connected to 127.0.0.1:{port} outside ctx.effect at {project.package}/direct.py:"
        f"{DIRECT_LINE} (a replay will refuse it)"]
    text = project_cli(project, "show", run_id).stdout
    assert "(a replay will refuse it)" in " ".join(text.split())

    for code in ("pinned", "workdir"):
        replayed = project_cli(project, "replay", run_id, "--code", code, "--json")
        assert replayed.returncode == 1, replayed.stdout + replayed.stderr
        assert hits == ["/thing"]  # nothing reached the server
        report = json.loads(replayed.stdout)
        assert report["verdict"] == "diverged"
        step = report["steps"][0]
        assert step["divergence"] == "error"
        assert "WorldRefusedError: replay refused" in step["message"]
        assert "127.0.0.1" in step["message"]
        refused = [c for c in step["causes"] if c["kind"] == "nondeterministic call"]
        assert refused
        assert refused[0]["line"] == DIRECT_LINE
        assert Path(refused[0]["file"]).name == path.name
        assert "(network)" in refused[0]["message"]

    plain = project_cli(project, "replay", run_id)
    assert plain.returncode == 1
    flat = " ".join(plain.stdout.split())  # as wrapped to the terminal's width
    assert "replay refused socket.getaddrinfo('127.0.0.1'" in flat
    assert f"direct.py:{DIRECT_LINE}" in flat
    assert hits == ["/thing"]

    allowed = project_cli(project, "replay", run_id, "--allow-world", "--json")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert hits == ["/thing", "/thing"]
    assert any("outside its context" in h for h in json.loads(allowed.stdout)["steps"][0][
        "hazards"])

    verified = project_cli(project, "verify", "--json", "-")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert hits == ["/thing", "/thing"]
    result = json.loads(verified.stdout)["results"][0]
    assert result["verdict"] == "diverged"
    assert any(c["line"] == DIRECT_LINE for c in result["steps"][0]["causes"])
    verified = project_cli(project, "verify", "--allow-world")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert hits == ["/thing"] * 3


def test_a_subprocess_is_refused_on_replay(project: Project) -> None:
    """A step running a subprocess records a hazard; its replay is refused and named."""
    project.write("shelling", SUBPROCESS)
    run_id = _record(project, "shelling", "--set", "n=1")
    hazards = _show_hazards(project, run_id)
    assert len(hazards) == 1
    assert hazards[0].startswith("started the process [")
    assert f"shelling.py:{SUBPROCESS_LINE} (a replay will refuse it)" in hazards[0]
    replayed = project_cli(project, "replay", run_id, "--json")
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    step = json.loads(replayed.stdout)["steps"][0]
    assert "replay refused subprocess.Popen([" in step["message"]
    assert any(c["line"] == SUBPROCESS_LINE and c["message"].startswith("subprocess.Popen(")
               for c in step["causes"])
    assert project_cli(project, "replay", run_id, "--allow-world").returncode == 0
    # --guards off stops watching the clock and randomness, never the world.
    assert project_cli(project, "replay", run_id, "--guards", "off").returncode == 1
    assert project_cli(project, "replay", run_id, "--guards", "off",
                       "--allow-world").returncode == 0


def test_the_same_call_through_ctx_effect_never_touches_the_server_on_replay(
        project: Project, server: tuple[str, list[str]]) -> None:
    """Through ctx.effect: recorded without a hazard, replayed from the record."""
    url, hits = server
    project.write("effect", THROUGH_EFFECT)
    run_id = _record(project, "effect", "--set", f"url={json.dumps(url)}")
    assert hits == ["/thing"]
    assert _show_hazards(project, run_id) == []
    for command in (("replay", run_id), ("verify",)):
        done = project_cli(project, *command)
        assert done.returncode == 0, done.stdout + done.stderr
    assert hits == ["/thing"]


def test_pytest_pinrun_refuses_the_world_too(pytester: pytest.Pytester, project: Project,
                                             server: tuple[str, list[str]]) -> None:
    """pytest --pinrun fails the run's test, naming the call; the option lets it through."""
    url, hits = server
    project.write("direct", DIRECT)
    _record(project, "direct", "--set", f"url={json.dumps(url)}")
    store_path = str(project.root / ".pinrun")
    pytester.syspathinsert(project.root)
    failed = pytester.runpytest_subprocess("--pinrun", "--pinrun-store", store_path,
                                           "-p", "no:cacheprovider")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*replay refused socket.getaddrinfo('127.0.0.1'*"])
    assert hits == ["/thing"]
    passed = pytester.runpytest_subprocess("--pinrun", "--pinrun-store", store_path,
                                           "--pinrun-allow-world", "-p", "no:cacheprovider")
    passed.assert_outcomes(passed=1)
    assert hits == ["/thing", "/thing"]
