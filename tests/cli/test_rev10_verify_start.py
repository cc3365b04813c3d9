"""Review of b4e5797: ``pinrun verify`` starts multiprocessing's resource tracker first
(``world.processes.start_pool_support``). Whatever way verify ends (nothing selected, bad
arguments, --dask, Ctrl-C early, runs verified), it exits with its usual code, its output
pipes close when it does, and no tracker of its outlives it.

Each ``pinrun verify`` runs with a marker variable of its own, which its tracker inherits:
the processes left over are found by it in ``/proc``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import SRC, Project, project_cli

pytestmark = [pytest.mark.slow,
              # Each test finds the processes a verify left by a marker in their
              # /proc/PID/environ: Linux (CI) has it; elsewhere there is no way to look.
              pytest.mark.skipif(not Path("/proc/self/environ").exists(),
                                 reason="no /proc to find leftover processes in")]

MARKER = "PINRUN_REV10_MARKER"


def _marked(marker: str) -> list[int]:
    """The processes whose environment carries ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{MARKER}={marker}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _left_over(marker: str, wait: float = 10.0) -> list[int]:
    """The marked processes still alive ``wait`` seconds at most after verify ended (a
    tracker ends when it reads its pipe's end: at once)."""
    deadline = time.monotonic() + wait
    while True:
        alive = [pid for pid in _marked(marker) if _state(pid) not in ("Z", None)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _env(folder: Path, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(folder)])
    env[MARKER] = marker
    return env


def _verify(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    marker = uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-m", "pinrun", "verify", *args], cwd=folder,
                          env=_env(folder, marker), capture_output=True, text=True,
                          timeout=120, check=False)
    return done, marker


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pinrun", "init"], cwd=tmp_path,
                          env=_env(tmp_path, "init"), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return tmp_path


@pytest.mark.parametrize(("args", "code"), [
    ((), 2),  # nothing selected
    (("--allow-empty",), 0),
    (("--shard", "9/2"), 2),  # refused after the tracker started
    (("--dask", "tcp://127.0.0.1:9", "-j", "2"), 2),  # --dask: no tracker at all
    (("--json", "/no/such/folder/x.json"), 2),
    (("--code", "nonsense"), 2),  # refused by click, before the command's body
])
def test_verify_ends_with_its_code_and_leaves_no_tracker(empty_store: Path, args: tuple[str, ...],
                                                         code: int) -> None:
    done, marker = _verify(empty_store, *args)
    assert done.returncode == code, done.stdout + done.stderr
    assert _left_over(marker) == []
    assert "resource_tracker" not in done.stderr, done.stderr


def test_the_marker_finds_the_tracker(tmp_path: Path) -> None:
    """(The tests above mean something: a tracker started is found by its marker, and ends
    with the process that started it.)"""
    marker = uuid.uuid4().hex
    code = ("import sys; from pinrun.world.processes import start_pool_support; "
            "start_pool_support(); print('up', flush=True); sys.stdin.readline()")
    with subprocess.Popen([sys.executable, "-c", code], env=_env(tmp_path, marker),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as started:
        assert started.stdout is not None
        assert started.stdout.readline() == "up\n"
        deadline = time.monotonic() + 10
        found: list[int] = []
        while not found and time.monotonic() < deadline:  # (its exec may be under way)
            found = [pid for pid in _marked(marker) if pid != started.pid and
                     b"resource_tracker" in _cmdline(pid)]
            time.sleep(0.02)
        started.communicate("\n", timeout=30)
    assert len(found) == 1
    assert _left_over(marker) == []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_verify_of_runs_leaves_no_tracker(project: Project) -> None:
    project.write("steps", """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"twice": 2 * n}


flow = pinrun.Flow("doubling", [double])
""")
    assert project_cli(project, "init").returncode == 0
    for n in range(2):
        done = project_cli(project, "run", project.entry("steps"), "--set", f"n={n}")
        assert done.returncode == 0, done.stdout + done.stderr
    for jobs in ("1", "2"):
        marker = uuid.uuid4().hex
        env = _env(project.root, marker)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
        done = subprocess.run([sys.executable, "-m", "pinrun", "verify", "-j", jobs, "--json",
                               "-"], cwd=project.root, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [run["verdict"] for run in json.loads(done.stdout)["results"]] == \
            ["reproduced"] * 2
        assert _left_over(marker) == []
        assert "resource_tracker" not in done.stderr, done.stderr
