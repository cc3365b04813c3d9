"""Guards name the calls that read the world, attributed to the project's nearest line.

These run the guards directly around a project module's function (a step,
as the replayer runs it): what is noted, where, and what is not.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.errors import NondeterminismError
from pinrun.verifier.replayer import replay
from pinrun.world import SystemWorld, stand_ins
from pinrun.world.attribution import is_harmless_module
from pinrun.world.datetime_watch import mentions_datetime_clock, profiler, watching_datetime
from pinrun.world.guards import GuardedCall, GuardMode, Guards
from tests.helpers import Project

LIBRARY = """\
import logging
import time


def stamp():
    return time.time()


def log_it():
    logging.getLogger("helper").warning("at %s", "now")
"""

STEPS = """\
import asyncio
import logging
import os
import queue
import secrets
import time

import helperlib_reads


def library_clock():
    return helperlib_reads.stamp()  # library_clock


def logs():
    logging.getLogger("steps").warning("stamped")
    helperlib_reads.log_it()
    return 1


def waits():
    try:
        queue.Queue().get(timeout=0.001)
    except queue.Empty:
        pass
    return asyncio.run(asyncio.sleep(0, result=2))


def pure():
    return (time.strftime("%Y", time.gmtime(0)), time.localtime(0), time.ctime(0),
            os.path.abspath("/a/../b"), os.path.realpath("/"), os.path.expanduser("x/y"))


def token():
    return secrets.token_hex(4)  # token


def home():
    return os.path.expanduser("~")  # home


def variable():
    return os.getenv("PINRUN_TEST_VARIABLE")  # variable


def imported_inside():
    from datetime import datetime as moment

    return moment.now()  # imported_inside


def through_pinrun():
    from pinrun.flows.project import is_library_file

    return is_library_file("relative/to/the/working/folder.py")  # resolves it: getcwd


def environment_through_pinrun():
    from pinrun.flows.variables import environment_variable
    from pinrun.world.code_state import process_state

    return environment_variable("PINRUN_TEST_VARIABLE"), process_state()


def environment_itself():
    return os.environ.get("PINRUN_TEST_VARIABLE")  # environment_itself
"""


def _lines(source: str) -> dict[str, int]:
    return {line.rsplit("# ", 1)[1]: number
            for number, line in enumerate(source.splitlines(), start=1) if "  # " in line}


@pytest.fixture
def steps(project: Project, tmp_path: Path) -> Iterator[types.ModuleType]:
    """The project's module of steps, with a helper library outside the project."""
    library = tmp_path / "site-packages"
    library.mkdir()
    (library / "helperlib_reads.py").write_text(LIBRARY)
    sys.path.insert(0, str(library))
    project.write("steps", STEPS)
    try:
        yield sys.modules[project.load("steps", "__name__")]
    finally:
        sys.path.remove(str(library))
        sys.modules.pop("helperlib_reads", None)


def _calls(module: types.ModuleType, function: str, mode: GuardMode = "warn") \
        -> list[GuardedCall]:
    with Guards([module], mode) as watching, watching.step() as calls:
        getattr(module, function)()
    return calls


def test_a_library_call_is_the_projects_line(steps: types.ModuleType) -> None:
    """A helper outside the project calling time.time() for the step: noted at the step's
    line that called the helper."""
    assert [(c.call, c.kind, c.file, c.line) for c in _calls(steps, "library_clock")] == [
        ("time.time()", "clock", steps.__file__, _lines(STEPS)["library_clock"])]


def test_logging_timeouts_and_pure_calls_are_not_noted(steps: types.ModuleType) -> None:
    """Log records' timestamps (the step's or a library's), a queue's timeout, asyncio's
    loop clock, and calls given a time or an absolute path: nothing is noted."""
    for function in ("logs", "waits", "pure"):
        assert _calls(steps, function) == [], function
        assert _calls(steps, function, "strict") == [], function


def test_a_call_inside_a_guarded_call_is_part_of_it(steps: types.ModuleType) -> None:
    """secrets.token_hex() is noted once (not again for its os.urandom), os.getenv once
    with its variable; expanduser names the HOME read it depends on too."""
    lines = _lines(STEPS)
    assert [c.call for c in _calls(steps, "token")] == ["secrets.token_hex()"]
    assert [c.call for c in _calls(steps, "variable")] == ["os.getenv('PINRUN_TEST_VARIABLE')"]
    home = _calls(steps, "home")
    assert [c.call for c in home][:1] == ["os.path.expanduser()"]
    assert "os.environ['HOME']" in [c.call for c in home]
    assert {c.line for c in home} == {lines["home"]}


def test_datetime_imported_inside_the_step_is_watched(steps: types.ModuleType) -> None:
    """The module never holds datetime, the function imports it: still noted, and strict
    guards refuse it with the call attached to the error."""
    line = _lines(STEPS)["imported_inside"]
    assert [(c.call, c.line) for c in _calls(steps, "imported_inside")] == [
        ("datetime.now()", line)]
    with pytest.raises(NondeterminismError, match=r"datetime\.now\(\)") as raised:
        _calls(steps, "imported_inside", "strict")
    assert getattr(raised.value, "call").line == line  # noqa: B009 - set on the instance


def test_the_profiler_is_on_only_for_code_naming_the_datetime_clock(
        project: Project) -> None:
    """A module holding datetime but never calling now/today/utcnow is not profiled; a
    step's function that names today() is."""
    project.write("quiet", "import datetime\n\n\ndef f():\n    return datetime.date(2020, 1, 2)\n")
    project.write("loud", "import pinrun\n\n\n@pinrun.step\ndef f(n: int) -> dict:\n"
                          "    import datetime\n    return {'d': datetime.date.today()}\n")
    quiet = sys.modules[project.load("quiet", "__name__")]
    loud = sys.modules[project.load("loud", "__name__")]
    assert not mentions_datetime_clock([quiet])
    assert mentions_datetime_clock([quiet, loud])


def test_judging_a_module_runs_none_of_its_objects_code_nor_makes_their_dicts(
        project: Project) -> None:
    """The step a module holds is found through its function without asking for the
    step's ``__dict__`` (CPython keeps its attributes inline until then, and every read
    of them by the engine is slower after); a ``func`` property or a ``__getattr__`` of
    an object of the user's never runs."""
    project.write("held", "import pinrun\n\n\nclass Lazy:\n    @property\n"
                          "    def func(self):\n        raise AssertionError('ran')\n\n"
                          "    def __getattr__(self, name):\n"
                          "        raise AssertionError(name)\n\n\nLAZY = Lazy()\n\n\n"
                          "@pinrun.step\ndef f(n: int) -> dict:\n"
                          "    import datetime\n    return {'d': datetime.date.today()}\n")
    held = sys.modules[project.load("held", "__name__")]
    step = vars(held)["f"]

    def shows_dict(found: object) -> bool:
        # Inline attributes show to the collector one by one; a made __dict__ as a dict.
        return any(type(ref) is dict and "func" in ref for ref in gc.get_referents(found))

    assert not shows_dict(step)
    assert mentions_datetime_clock([held])
    assert not shows_dict(step)
    assert vars(step)["func"] is not None  # asking for the dict makes it: the check tells
    assert shows_dict(step)


def test_a_function_held_in_a_dataclass_field_with_a_default_is_judged(
        project: Project) -> None:
    """``func: Callable | None = None`` in a dataclass: the class holds None under that
    name, the object its own function, whose ``datetime.now()`` is found."""
    project.write("tasks", "import dataclasses\nimport datetime\n\n\n"
                           "@dataclasses.dataclass\nclass Task:\n    name: str\n"
                           "    func: object = None\n\n\n"
                           "TASK = Task('stamp', func=lambda: datetime.datetime.now())\n")
    assert mentions_datetime_clock([sys.modules[project.load("tasks", "__name__")]])


def test_ctx_now_alone_does_not_turn_the_profiler_on(project: Project) -> None:
    """ctx.now() names now, but not datetime: no profiler; a name bound to datetime's
    class (from datetime import datetime as moment) is enough."""
    project.write("ctxclock", "def f(ctx):\n    return ctx.now()\n")
    project.write("aliased", "from datetime import datetime as moment\n\n\n"
                             "def f():\n    return moment.now()\n")
    assert not mentions_datetime_clock([sys.modules[project.load("ctxclock", "__name__")]])
    assert mentions_datetime_clock([sys.modules[project.load("aliased", "__name__")]])


def test_interleaved_async_steps_put_the_profile_back() -> None:
    """Two steps of one thread (async tasks) start and end interleaved: the profiler is
    on while either runs, and what was there before is back after both."""
    first, second = watching_datetime(), watching_datetime()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert sys.getprofile() is profiler
    second.__exit__(None, None, None)
    assert sys.getprofile() is None


def test_pinruns_own_calls_are_not_the_steps(steps: types.ModuleType) -> None:
    """pinrun's own code, called by the step, resolving a relative path (the working
    folder): not noted."""
    assert _calls(steps, "through_pinrun", "strict") == []


def test_pinruns_own_environment_reads_are_not_the_steps(
        steps: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """pinrun reading a variable, or the whole environment (the kept-code check), from a
    guarded step reads the real mapping: nothing is noted, even under strict guards, and it
    reads what ``os.environ`` holds; the step's own read is still noted at its line.

    pinrun's reads do not even go through the guarded mapping: each read through it looks
    for the step's frame, and the kept-code check, reading every variable, cost a verify
    worker ~0.5 M instructions a pinned replay that way."""
    monkeypatch.setenv("PINRUN_TEST_VARIABLE", "set")
    asked: list[str] = []
    real_note = stand_ins.note

    def counted(kind: str, call: str) -> None:
        asked.append(call)
        real_note(kind, call)

    monkeypatch.setattr(stand_ins, "note", counted)
    with Guards([steps], "strict") as watching, watching.step() as calls:
        assert isinstance(os.environ, stand_ins.GuardedEnviron)
        variable, state = steps.environment_through_pinrun()
    assert calls == []
    assert asked == []
    assert variable == "set"
    assert b"PINRUN_TEST_VARIABLE" in state[5] or "PINRUN_TEST_VARIABLE" in state[5]
    assert [(c.call, c.line) for c in _calls(steps, "environment_itself")] == [
        ("os.environ.get('PINRUN_TEST_VARIABLE')", _lines(STEPS)["environment_itself"])]
    assert asked == ["os.environ.get('PINRUN_TEST_VARIABLE')"]


def test_stand_ins_are_put_back_and_pickle_as_the_real_functions(
        steps: types.ModuleType) -> None:
    """While guarded, a stand-in pickles as the function it stands for (a process started
    with target=os.getpid); afterwards every patched attribute is the real one again."""
    before = {(id(owner), name): vars(owner)[name]
              for owner, name, _ in stand_ins.FUNCTIONS}
    with Guards([steps]):
        assert os.getpid is not before[id(os), "getpid"]
        assert pickle.loads(pickle.dumps(os.getpid)) is os.getpid
        wrapped = getattr(time.perf_counter, "__wrapped__")  # noqa: B009 - unknown to mypy
        assert wrapped is before[id(time), "perf_counter"]
    assert {(id(owner), name): vars(owner)[name]
            for owner, name, _ in stand_ins.FUNCTIONS} == before
    assert not isinstance(os.environ, stand_ins.GuardedEnviron)
    assert SystemWorld().entropy(2)  # the real os.urandom


def test_the_harmless_list_covers_packages_and_their_modules() -> None:
    """A module inside a harmless package is harmless; a look-alike name is not."""
    assert is_harmless_module("logging.handlers")
    assert is_harmless_module("concurrent.futures.thread")
    assert not is_harmless_module("concurrent")
    assert not is_harmless_module("loggingx")
    assert not is_harmless_module("tempfile")


THREADED = """
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import pinrun


def tick(_):
    return time.perf_counter() > 0, np.random.normal() is not None


@pinrun.step
def fan(n: int) -> dict:
    with ThreadPoolExecutor(2) as pool:
        return {"ticks": [list(found) for found in pool.map(tick, range(n))]}


flow = pinrun.Flow("threaded_reads", [fan])
"""


def test_reads_in_a_steps_own_threads_are_named(project: Project,
                                                project_store: Store) -> None:
    """A step's pool threads calling perf_counter and numpy's global generator: the replay
    names both at the thread function's lines, and strict guards refuse them there."""
    project.write("threaded_reads", THREADED)
    run = record(project.load("threaded_reads"), {"n": 2}, store=project_store)
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()
    hazards = " ".join(report.steps[0].hazards)
    assert "time.perf_counter() (clock)" in hazards
    assert "numpy.random.normal() (randomness)" in hazards
    assert "threaded_reads.py:11" in hazards
    strict = replay(run.id, store=project_store, code="workdir", guards="strict")
    assert strict.verdict == "diverged"
    assert strict.first_divergence is not None
    assert "NondeterminismError" in strict.first_divergence.message


CAUGHT = """
import os
import time

import pinrun


def stamp():
    try:
        return int(time.time()) % 2
    except Exception:
        return 0


@pinrun.step
def shrug(n: int) -> dict:
    try:
        home = os.getcwd()
    except Exception:
        home = "/"
    return {"n": n, "cwd": len(home) > 0, "stamp": stamp() * 0}


flow = pinrun.Flow("caught", [shrug])
"""


def test_strict_guards_fail_a_step_that_catches_their_refusal(
        project: Project, project_store: Store) -> None:
    """Under strict guards, a step that catches the refusal (except Exception) and goes on
    still diverges, naming the refused call; warn mode reproduces with hazards."""
    project.write("caught", CAUGHT)
    run = record(project.load("caught"), {"n": 1}, store=project_store)
    warned = replay(run.id, store=project_store, code="workdir")
    assert warned.reproduced, warned.explain()
    strict = replay(run.id, store=project_store, code="workdir", guards="strict")
    assert strict.verdict == "diverged"
    first = strict.first_divergence
    assert first is not None
    assert "strict guards refused os.getcwd() (file system)" in first.message
    assert "the step went on past the refusal (it caught it" in first.message
    assert [cause.kind for cause in first.causes][:2] == ["nondeterministic call"] * 2


LAZY = """
import os

import pinrun

_SESSION = None


@pinrun.step
def use(n: int) -> dict:
    global _SESSION
    if _SESSION is None:
        _SESSION = f"s-{os.getpid()}"
    return {"m": n, "ok": _SESSION.startswith("s-")}


flow = pinrun.Flow("lazyinit", [use])
"""


def test_repeat_keeps_the_hazards_of_earlier_repetitions(project: Project,
                                                         project_store: Store) -> None:
    """A lazily set global shows its hazards (the module state it changed, the getpid it
    called) in the first repetition only: --repeat keeps them, saying which repetition."""
    project.write("lazyinit", LAZY)
    run = record(project.load("lazyinit"), {"n": 1}, store=project_store)
    vars(sys.modules[f"{project.package}.lazyinit"])["_SESSION"] = None  # as a fresh worker
    report = replay(run.id, store=project_store, code="workdir", repeat=3)
    assert report.reproduced, report.explain()
    hazards = report.steps[0].hazards
    assert any("_SESSION changed" in hazard and hazard.endswith("(in repetition 1)")
               for hazard in hazards), hazards
    assert any("os.getpid()" in hazard and hazard.endswith("(in repetition 1)")
               for hazard in hazards), hazards
