"""The world guard from Python: pinrun.record notes world calls, pinrun.replay refuses them."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.errors import RunFailedError
from pinrun.verifier.replayer import replay
from pinrun.world.refusal import GuardedCall, inside_effect, recording_guard, world_hazards
from tests.helpers import Project
from tests.world_server import counting_server

FLOW = """\
import urllib.request

import pinrun


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pinrun.step
def fetch(url: str) -> dict:
    bodies = [get(url) for _ in range(3)]
    return {"bodies": bodies}


@pinrun.step
def fallback(url: str) -> dict:
    try:
        return {"second": get(url)}
    except pinrun.NondeterminismError:
        return {"second": "hello"}


@pinrun.step
def pooled(url: str) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        return {"bodies": list(pool.map(get, [url, url]))}


flow = pinrun.Flow("looped", [fetch])
threaded = pinrun.Flow("threaded", [pooled])
forgiving = pinrun.Flow("forgiving", [fallback])
"""


def test_replay_refuses_and_allow_world_lets_through(project: Project,
                                                     project_store: Store) -> None:
    """In one process: the replay refuses (named, at the helper's line), allow_world=True
    reaches the server, and the test's own calls after the replay are not refused."""
    project.write("looped", FLOW)
    with counting_server() as (url, hits):
        run = record(project.load("looped"), {"url": url}, store=project_store)
        assert len(hits) == 3
        hazard, = load_hazards(project_store, run.id)
        assert hazard.startswith(f"connected to 127.0.0.1:{url.split(':')[2][:-6]} (3 times) "
                                 f"outside ctx.effect at {project.package}/looped.py:7")
        report = replay(run.id, store=project_store)
        assert report.verdict == "diverged"
        assert len(hits) == 3
        first = report.first_divergence
        assert first is not None
        assert "replay refused socket.getaddrinfo('127.0.0.1'" in first.message
        cause, = (c for c in first.causes if "socket.getaddrinfo" in c.message)
        # The project's line, not the socket module's where the call was stopped.
        assert (cause.kind, Path(cause.file or "").name, cause.line) == (
            "nondeterministic call", "looped.py", 7)
        assert replay(run.id, store=project_store, allow_world=True).reproduced
        assert len(hits) == 6
        # guards="off" stops watching the clock and randomness, never the world.
        off = replay(run.id, store=project_store, guards="off")
        assert off.verdict == "diverged"
        assert len(hits) == 6
        assert replay(run.id, store=project_store, guards="off", allow_world=True).reproduced
        assert len(hits) == 9
        with urllib.request.urlopen(url, timeout=10) as response:  # outside a step: free
            assert response.read() == b"hello"


def test_a_step_that_swallows_the_refusal_reproduces_with_a_hazard(
        project: Project, project_store: Store) -> None:
    """The refusal is an exception the step may catch; the call stays a named hazard."""
    project.write("looped", FLOW)
    with counting_server() as (url, hits):
        run = record(project.load("looped", "forgiving"), {"url": url}, store=project_store)
        report = replay(run.id, store=project_store, code="workdir")
        assert len(hits) == 1
    assert report.reproduced
    assert any("socket.getaddrinfo('127.0.0.1'" in h and "looped.py:7" in h
               for h in report.steps[0].hazards)


def load_hazards(store: Store, run_id: str) -> list[str]:
    """The hazards of a run's steps, as recorded."""
    from pinrun.engine.records import load_run

    return [hazard for step in load_run(store, run_id).steps for hazard in step.hazards]


def test_effects_are_not_noted_and_steps_elsewhere_are_not_watched() -> None:
    """Inside ctx.effect nothing is noted; outside a watched block nothing at all."""
    with counting_server() as (url, hits):
        with recording_guard() as calls, inside_effect(), urllib.request.urlopen(url,
                                                                                timeout=10):
            pass
        assert calls == []
        with urllib.request.urlopen(url, timeout=10):
            pass
        with recording_guard() as calls, urllib.request.urlopen(url, timeout=10):
            pass
    assert len(hits) == 3
    assert [call.kind for call in calls] == ["network", "network"]
    assert all(isinstance(call, GuardedCall) and not call.refused for call in calls)
    line = 1 + Path(__file__).read_text().splitlines().index(
        "        with recording_guard() as calls, urllib.request.urlopen(url, timeout=10):")
    assert world_hazards(calls, Path(__file__).parents[1]) == [
        f"connected to 127.0.0.1:{url.split(':')[2][:-6]} outside ctx.effect at "
        f"verifier/test_world_guard_api.py:{line} (a replay will refuse it)"]


def test_a_recorded_failure_of_the_world_replays_as_refused(project: Project,
                                                            project_store: Store) -> None:
    """A step whose direct call failed when recorded (server gone) diverges on replay: the
    refusal is another error, and it names the call."""
    project.write("looped", FLOW)
    with counting_server() as (url, _):
        pass  # the port is closed again
    with pytest.raises(RunFailedError) as failed:
        record(project.load("looped"), {"url": url}, store=project_store)
    report = replay(failed.value.run.id, store=project_store)
    first = report.first_divergence
    assert first is not None
    assert first.divergence == "failed-differently"
    # Named once: as the call it was, at the project's line (not again as the exception).
    named = [c for c in first.causes if "socket.getaddrinfo('127.0.0.1'" in c.message]
    assert [(c.kind, Path(c.file or "").name) for c in named] == [
        ("nondeterministic call", "looped.py")]
    assert json.dumps(report.as_value())  # the report stays JSON-ready


def test_calls_from_a_steps_threads_are_refused_too(project: Project,
                                                    project_store: Store) -> None:
    """A step calling the server from a thread pool reaches it when recorded; on replay
    the threads' calls are refused as the step's own, and the server hears nothing."""
    project.write("looped", FLOW)
    with counting_server() as (url, hits):
        run = record(project.load("looped", "threaded"), {"url": url}, store=project_store)
        assert len(hits) == 2
        for code in ("pinned", "workdir"):
            report = replay(run.id, store=project_store, code=code)
            assert report.verdict == "diverged"
            first = report.first_divergence
            assert first is not None
            assert "replay refused socket.getaddrinfo('127.0.0.1'" in first.message
        assert len(hits) == 2
        assert replay(run.id, store=project_store, allow_world=True).reproduced
        assert len(hits) == 4


DOORS = """
import ctypes
import multiprocessing
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pinrun

MARKER = {marker!r}


@pinrun.step
def library_threads(url: str) -> dict:
    with ThreadPoolExecutor(2) as pool:  # the threads run urllib: no project line on them
        return {{"n": len(list(pool.map(urllib.request.urlopen, [url, url])))}}


def touch():
    open(MARKER, "w").close()


@pinrun.step
def spawned(url: str) -> dict:
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=os.getpid)
    process.start()
    process.join()
    return {{"n": 1}}


@pinrun.step
def foreign(url: str) -> dict:
    ctypes.CDLL(None).system(b"true")
    return {{"n": 2}}


threads = pinrun.Flow("library_threads", [library_threads])
spawning = pinrun.Flow("spawning", [spawned])
foreign_code = pinrun.Flow("foreign", [foreign])
"""


@pytest.mark.parametrize(("flow", "refused"), [
    ("threads", "socket.getaddrinfo('127.0.0.1'"),
    ("spawning", "_posixsubprocess.fork_exec("),
    ("foreign_code", "ctypes: the C function system()")])
def test_the_other_doors_are_refused_too(project: Project, project_store: Store,
                                         tmp_path: Path, flow: str, refused: str) -> None:
    """Library code on a step's threads, multiprocessing's spawn and libc through ctypes:
    each reaches the world when recorded and is refused on replay, guards on or off."""
    project.write("doors", DOORS.format(marker=str(tmp_path / "marker")))
    with counting_server() as (url, hits):
        run = record(project.load("doors", flow), {"url": url}, store=project_store)
        before = len(hits)
        for guards in ("warn", "off"):
            report = replay(run.id, store=project_store, code="workdir",
                            guards=guards)
            assert report.verdict == "diverged", report.explain()
            first = report.first_divergence
            assert first is not None
            assert refused in first.message
        assert len(hits) == before
        assert replay(run.id, store=project_store, code="workdir", allow_world=True).reproduced


def test_a_module_that_connects_when_imported_is_refused(project: Project,
                                                         project_store: Store) -> None:
    """A pinned module connecting at import time (a client made at module level) cannot
    replay without the world: refused, and the replay says why."""
    with counting_server() as (url, hits):
        project.write("eager", f"""
            import urllib.request
            import pinrun

            urllib.request.urlopen({url!r}, timeout=10).read()

            @pinrun.step
            def go(n: int) -> dict:
                return {{"m": n}}

            flow = pinrun.Flow("eager", [go])
        """)
        run = record(project.load("eager"), {"n": 1}, store=project_store)
        assert len(hits) == 1
        report = replay(run.id, store=project_store)  # pinned: imported afresh from the pin
        assert report.verdict == "error"
        assert "replay refused socket.getaddrinfo('127.0.0.1'" in (report.error or "")
        assert len(hits) == 1
        assert replay(run.id, store=project_store, allow_world=True).reproduced
        assert len(hits) == 2


def test_calls_from_a_steps_threads_are_hazards_when_recorded(project: Project,
                                                              project_store: Store,
                                                              tmp_path: Path) -> None:
    """A step's pool threads reaching the server are noted on the step when recorded,
    with the project's line when its code is on the thread; the test's own server
    thread, started outside the step, is not the step's."""
    project.write("looped", FLOW)
    project.write("doors", DOORS.format(marker=str(tmp_path / "marker")))
    with counting_server() as (url, _):
        pooled = record(project.load("looped", "threaded"), {"url": url},
                        store=project_store)
        library = record(project.load("doors", "threads"), {"url": url}, store=project_store)
    port = url.split(":")[2][:-6]
    assert load_hazards(project_store, pooled.id) == [
        f"connected to 127.0.0.1:{port} (2 times) outside ctx.effect at "
        f"{project.package}/looped.py:7 (a replay will refuse it)"]
    assert [h.split(" outside")[0] for h in load_hazards(project_store, library.id)] == [
        f"connected to 127.0.0.1:{port} (2 times)"]


LEFTOVERS = """
import atexit
import threading
import urllib.request

import pinrun


def get(url):
    urllib.request.urlopen(url, timeout=10).read()


@pinrun.step
def later(url: str) -> dict:
    threading.Timer(0.3, get, [url]).start()  # fires after the step, the replay too
    return {"n": 1}


@pinrun.step
def at_exit(url: str) -> dict:
    atexit.register(get, url)  # a metrics client flushing as the process ends
    return {"n": 2}


@pinrun.step
def slow(url: str) -> dict:
    threading.Event().wait(0.5)
    return {"n": 3}


timer = pinrun.Flow("timer", [later])
exiting = pinrun.Flow("exiting", [at_exit])
waiting = pinrun.Flow("waiting", [slow])
"""


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["timer", "exiting"])
def test_what_a_replay_leaves_behind_stays_refused(project: Project, flow: str) -> None:
    """A timer firing after the step, or an atexit hook, reaches the server when the run
    is recorded, never when `pinrun replay` or `pinrun verify` replays it."""
    from tests.helpers import project_cli

    project.write("leftovers", LEFTOVERS)
    assert project_cli(project, "init").returncode == 0
    with counting_server() as (url, hits):
        done = project_cli(project, "run", project.entry("leftovers", flow), "--set",
                           f"url={json.dumps(url)}")
        assert done.returncode == 0, done.stderr
        assert len(hits) == 1
        assert project_cli(project, "replay", done.stdout.strip()).returncode in (0, 1)
        assert project_cli(project, "verify").returncode in (0, 1)
        assert len(hits) == 1


def test_the_callers_own_threads_are_not_the_replays(project: Project,
                                                     project_store: Store) -> None:
    """While pinrun.replay() runs in one thread, threads the program starts from another
    one reach the world as before; and recording while threads start elsewhere breaks
    nothing."""
    import threading

    project.write("leftovers", LEFTOVERS)
    flow = project.load("leftovers", "waiting")
    failures: list[BaseException] = []
    with counting_server() as (url, hits):
        run = record(flow, {"url": url}, store=project_store)
        stop = threading.Event()

        def call() -> None:
            try:
                urllib.request.urlopen(url, timeout=10).read()
            except BaseException as exc:
                failures.append(exc)

        def program() -> None:  # the caller's own work, starting threads as it goes
            while not stop.is_set():
                thread = threading.Thread(target=call)
                thread.start()
                thread.join()
                stop.wait(0.02)

        worker = threading.Thread(target=program)
        worker.start()
        try:
            assert replay(run.id, store=project_store, code="workdir").reproduced
            for _ in range(3):
                record(flow, {"url": url}, store=project_store)
        finally:
            stop.set()
            worker.join()
    assert failures == []
    assert len(hits) > 0
