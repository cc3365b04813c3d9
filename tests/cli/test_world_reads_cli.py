"""Every call that reads the world is named, through the CLI, as a user would run it.

One throw-away project has a step per kind of call (the clock, randomness,
identity, the file system's names, the environment; one made by a library
outside the project for the step). ``pinrun run`` records it; a plain
``pinrun replay`` catches the calls whose value differs from one process to
the next, ``--guards strict`` the others (on one machine the host name or the
working folder are the same), and the report names each call with the
project's file and line. Deterministic counterparts reproduce with no hazard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SRC, Project

pytestmark = pytest.mark.slow

#: A library outside the project (a folder named like an installed one), making calls for
#: the step: the report must name the project's line that called it.
LIBRARY = """\
import os
import time


def stamp():
    return time.time()


def home_of_config():
    return os.environ.get("HOME", "")
"""

# Each step's line of interest carries a marker comment "# <name>": the test finds it.
READS = """\
import getpass
import os
import platform
import random
import shutil
import socket
import tempfile
import time
from os import getcwd

import pinrun
import readslib


@pinrun.step
def perf(n: int) -> dict:
    return {"perf": time.perf_counter() + n}  # perf


@pinrun.step
def pid(n: int) -> dict:
    return {"pid": os.getpid() + n}  # pid


@pinrun.step
def clock_inside(n: int) -> dict:
    import datetime

    return {"clock_inside": datetime.datetime.now().isoformat()}  # clock_inside


@pinrun.step
def tempname(n: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:  # tempname
        return {"tempname": os.path.basename(folder)}


@pinrun.step
def system_random(n: int) -> dict:
    return {"system_random": random.SystemRandom().random()}  # system_random


@pinrun.step
def library_clock(n: int) -> dict:
    return {"library_clock": readslib.stamp()}  # library_clock


@pinrun.step
def cwd_imported(n: int) -> dict:
    return {"cwd_imported": getcwd()}  # cwd_imported


@pinrun.step
def cwd(n: int) -> dict:
    return {"cwd": os.getcwd()}  # cwd


@pinrun.step
def hostname(n: int) -> dict:
    return {"hostname": socket.gethostname()}  # hostname


@pinrun.step
def node(n: int) -> dict:
    return {"node": platform.node()}  # node


@pinrun.step
def user(n: int) -> dict:
    return {"user": getpass.getuser()}  # user


@pinrun.step
def absolute(n: int) -> dict:
    return {"absolute": os.path.abspath("data.csv")}  # absolute


@pinrun.step
def home(n: int) -> dict:
    return {"home": os.path.expanduser("~/settings.ini")}  # home


@pinrun.step
def umask(n: int) -> dict:
    old = os.umask(0o022)  # umask
    os.umask(old)
    return {"umask": old}


@pinrun.step
def stamp(n: int) -> dict:
    return {"stamp": time.strftime("%Y")}  # stamp


@pinrun.step
def path_env(n: int) -> dict:
    return {"path_env": shutil.which("sh") or ""}  # path_env


@pinrun.step
def library_env(n: int) -> dict:
    return {"library_env": readslib.home_of_config()}  # library_env


flow = pinrun.Flow("reads", [perf, pid, clock_inside, tempname, system_random, library_clock,
                             cwd_imported, cwd, hostname, node, user, absolute, home, umask,
                             stamp, path_env, library_env])
"""

#: step -> the call its cause names.
CALLS = {
    "perf": "time.perf_counter() (clock)", "pid": "os.getpid() (identity)",
    "clock_inside": "datetime.now() (clock)",
    "tempname": "tempfile.TemporaryDirectory() (file system)",
    "system_random": "random.SystemRandom().random() (randomness)",
    "library_clock": "time.time() (clock)",
    "cwd_imported": "os.getcwd() (file system)", "cwd": "os.getcwd() (file system)",
    "hostname": "socket.gethostname() (identity)", "node": "platform.node() (identity)",
    "user": "getpass.getuser() (identity)", "absolute": "os.path.abspath() (file system)",
    "home": "os.path.expanduser() (file system)", "umask": "os.umask() (file system)",
    "stamp": "time.strftime() (clock)", "path_env": "os.environ.get('PATH') (environment)",
    "library_env": "os.environ.get('HOME') (environment)",
}
#: The steps whose value differs from one process to the next: a plain replay catches them.
VARYING = {"perf", "pid", "clock_inside", "tempname", "system_random", "library_clock"}

DETERMINISTIC = """\
import logging
import os
import time

import pinrun

logging.basicConfig(format="%(asctime)s %(process)d %(levelname)s %(message)s")


@pinrun.step
def steady(n: int) -> dict:
    # (A module-level logger is module state whose level cache a call fills: the module
    # state guard's business, not the clock's.)
    logging.getLogger("steady").warning("working on %s", n)
    return {"when": time.strftime("%Y-%m-%d %H:%M", time.gmtime(86400 * n)),
            "local": list(time.localtime(0))[:1],
            "where": os.path.abspath("/srv/data/../data.csv")}


flow = pinrun.Flow("steady", [steady])
"""


def _pinrun(project: Project, library: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root), str(library)])
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def _lines(source: str) -> dict[str, int]:
    return {line.rsplit("# ", 1)[1]: number
            for number, line in enumerate(source.splitlines(), start=1) if "  # " in line}


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A folder outside the project, laid out like an installed distribution's."""
    folder = tmp_path / "elsewhere" / "site-packages"
    folder.mkdir(parents=True)
    (folder / "readslib.py").write_text(LIBRARY)
    return folder


def _replay(project: Project, library: Path, run_id: str, *args: str) -> dict[str, Any]:
    done = _pinrun(project, library, "replay", run_id, "--code", "workdir", "--json", *args)
    assert done.returncode == 1, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["verdict"] == "diverged"
    return report


def _cause(step: dict[str, Any]) -> dict[str, Any]:
    causes: list[dict[str, Any]] = [c for c in step["causes"]
                                     if c["kind"] == "nondeterministic call"]
    assert causes, step
    return causes[0]


def test_each_kind_of_world_read_is_named_with_the_projects_line(
        project: Project, library: Path) -> None:
    """Recorded through the CLI, a plain replay names each call whose value differs
    (with the project's file and line, also when a library outside the project made it)
    and lists the others as hazards; --guards strict names every one of them."""
    path = project.write("reads", READS)
    lines = _lines(READS)
    assert _pinrun(project, library, "init").returncode == 0
    done = _pinrun(project, library, "run", project.entry("reads"), "--set", "n=1")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.strip()

    plain = {step["name"]: step for step in _replay(project, library, run_id)["steps"]}
    for name in VARYING:
        step = plain[name]
        assert step["status"] == "diverged", (name, step)
        cause = _cause(step)
        assert cause["message"] == f"{CALLS[name]} outside the context", name
        assert (Path(cause["file"]), cause["line"]) == (path, lines[name]), name
    for name in set(CALLS) - VARYING:
        step = plain[name]
        assert step["status"] == "match", (name, step)
        assert f"called {CALLS[name]} at {path}:{lines[name]} outside its context" in \
            step["hazards"], (name, step["hazards"])

    strict = _replay(project, library, run_id, "--guards", "strict")
    steps = {step["name"]: step for step in strict["steps"]}
    for name, call in CALLS.items():
        step = steps[name]
        assert step["status"] == "diverged", (name, step)
        assert "NondeterminismError" in step["message"], name
        cause = _cause(step)
        assert cause["message"] == f"{call} outside the context", name
        assert (Path(cause["file"]), cause["line"]) == (path, lines[name]), name
        # The refusal is named once, as the call, not again as the library's exception.
        assert not [c for c in step["causes"] if c["kind"] == "exception"], (name, step)


def test_logging_timestamps_and_pure_calls_reproduce_with_no_hazard(
        project: Project, library: Path) -> None:
    """Logging with timestamps, strftime/localtime given a time and abspath of an absolute
    path read nothing of the world: even --guards strict reproduces, with no hazard."""
    project.write("steady", DETERMINISTIC)
    assert _pinrun(project, library, "init").returncode == 0
    done = _pinrun(project, library, "run", project.entry("steady"), "--set", "n=3")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.strip()
    replayed = _pinrun(project, library, "replay", run_id, "--code", "workdir",
                       "--guards", "strict", "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    report = json.loads(replayed.stdout)
    assert report["verdict"] == "reproduced"
    assert [step["hazards"] for step in report["steps"]] == [[]]
    assert "working on 3" in replayed.stderr  # the step did log, with its timestamp


#: A step whose own thread reads the clock: under strict guards the refusal ends the thread.
THREADED = """\
import threading
import time

import pinrun


@pinrun.step
def stamp(n: int) -> dict:
    seen = []
    worker = threading.Thread(target=lambda: seen.append(time.time()))
    worker.start()
    worker.join()
    return {"next": n + 1}


flow = pinrun.Flow("threaded", [stamp])
"""


def test_a_refusal_that_ends_a_steps_thread_is_reported_without_a_traceback(
        project: Project, library: Path) -> None:
    """--guards strict refuses a clock read in a thread the step started: the replay
    diverges naming the call and its line, and stderr shows no thread traceback."""
    project.write("threaded", THREADED)
    assert _pinrun(project, library, "init").returncode == 0
    done = _pinrun(project, library, "run", project.entry("threaded"), "--set", "n=1")
    assert done.returncode == 0, done.stderr
    replayed = _pinrun(project, library, "replay", done.stdout.strip(), "--guards", "strict")
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "Traceback" not in replayed.stderr, replayed.stderr
    assert "Exception in thread" not in replayed.stderr, replayed.stderr
    assert "strict guards refused time.time() (clock)" in replayed.stdout
    assert "threaded.py:10 outside its context" in replayed.stdout, replayed.stdout
