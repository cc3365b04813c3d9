"""The catalogue of guarded calls, and the stand-ins that note them.

Each entry is a function (or a method of a standard-library class) that reads
the world: its answer may differ from one run to the next, or from one
machine to the next, and a step that uses it outside its context cannot be
replayed faithfully. While guards are up (:class:`pinrun.world.guards.Guards`)
each is replaced by a stand-in that notes the call (:func:`note`) with its
kind, its name (``time.perf_counter()``) and the project's file and line
(:func:`pinrun.world.attribution.project_frame`), then makes the real call
(``warn``) or raises :class:`~pinrun.errors.NondeterminismError` (``strict``).

The kinds:

- ``clock``: ``time.time``/``time_ns``, ``monotonic``, ``perf_counter``,
  ``process_time``, ``thread_time`` (and their ``_ns`` forms); ``strftime``,
  ``localtime``, ``gmtime``, ``ctime`` and ``asctime`` *without* a time
  argument (given a time they are pure, and not noted). ``datetime.now()``
  and its kin are watched otherwise (:mod:`pinrun.world.datetime_watch`).
- ``randomness``: the ``random`` module's functions, ``random.SystemRandom``
  draws, ``secrets``, ``os.urandom``; ``uuid``: ``uuid1``, ``uuid4``.
- ``identity``: ``os.getpid``, ``socket.gethostname``, ``platform.node``,
  ``os.uname``, ``getpass.getuser``, ``os.getlogin``, ``os.getuid``,
  ``os.geteuid`` (who and where the step runs).
- ``file system``: ``os.getcwd``/``getcwdb``, ``os.path.abspath`` and
  ``realpath`` of a *relative* path, ``os.path.expanduser`` of a path that
  starts with ``~``, ``os.umask``, and the names ``tempfile`` makes up
  (``mkstemp``, ``mkdtemp``, ``mktemp``, ``NamedTemporaryFile``,
  ``TemporaryDirectory``, ``gettempdir``).
- ``environment``: ``os.environ`` and ``os.getenv``, whoever reads them for
  the step (``expanduser`` reading ``HOME``, ``getpass`` reading ``USER``).

A call made inside another guarded call is part of it and not noted again
(``secrets.token_hex()`` draws from ``os.urandom``; ``tempfile.mkstemp()``
asks ``os.getpid``), except a read of the environment, which says what the
outer call depended on (``os.path.expanduser()`` reading ``HOME``).
"""

from __future__ import annotations

import getpass
import os
import platform
import random
import secrets
import socket
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from pinrun.errors import NondeterminismError
from pinrun.world import refusal
from pinrun.world.attribution import project_frame
from pinrun.world.refusal import GuardedCall, WorldWatch, current_watch

__all__ = [
    "CONDITIONAL",
    "FUNCTIONS",
    "MADE",
    "GuardedEnviron",
    "active_watch",
    "call_name",
    "guarded",
    "judge",
    "note",
    "part_of_a_call",
]

#: Decides, from a call's arguments, whether it reads the world (None: it always does).
When = Callable[[tuple[Any, ...], dict[str, Any]], bool]


def active_watch() -> WorldWatch | None:
    """The guarded step's watch in this context; in a thread the replay started (a step's
    pool: a new thread's context is empty), the replay's own, whose calls the replay
    hands to the step it settles next (see :class:`pinrun.world.refusal.ReplayWatch`)."""
    watch = current_watch()
    if watch is not None:
        return watch if watch.guarded else None
    if not refusal.MARKED[0]:
        return None
    replay: WorldWatch | None = getattr(threading.current_thread(), "_pinrun_replay", None)
    if replay is None or not replay.files:
        return None
    return replay

_ADVICE = {
    "clock": "use ctx.now()", "randomness": "use ctx.random()", "uuid": "use ctx.uuid4()",
    "environment": "pass it as an input, or read it through ctx.effect()",
    "identity": "pass it as an input, or read it through ctx.effect()",
    "file system": "pass absolute paths as inputs, or read it through ctx.effect()",
}

#: numpy's generators want a seed, not a random.Random: one drawn from the context.
_NUMPY_ADVICE = ("seed the generator from the context: "
                 "numpy.random.default_rng(ctx.random().getrandbits(64))")


class _Within(threading.local):
    """The kind of the guarded call this thread is inside, if any (a call inside one is
    part of it)."""

    kind: str | None = None


_WITHIN = _Within()


def note(kind: str, call: str) -> None:
    """Note a guarded call of ``kind`` (``clock``...) named ``call`` (``time.time()``) for
    the step being guarded, attributed to the nearest frame of the project's code; raise
    :class:`NondeterminismError` under strict guards. Nothing when no step is guarded, when
    the call is not the step's (see :mod:`pinrun.world.attribution`), or when it is made
    inside another guarded call (an environment read excepted)."""
    watch = active_watch()
    if watch is not None:
        frame = _made_for(watch, kind)
        if frame is not None:
            judge(watch, kind, call, frame)


def _made_for(watch: WorldWatch, kind: str) -> types.FrameType | None:
    """The project frame a call of ``kind`` is made for, or None: part of an outer guarded
    call, a harmless caller's own business, or not the step's."""
    outer = _WITHIN.kind
    if outer is not None and (kind != "environment" or outer == "environment"):
        return None
    return project_frame(watch.files)


def judge(watch: WorldWatch, kind: str, call: str, frame: types.FrameType) -> None:
    """Note the call, made for the step at ``frame``; under strict guards, refuse it: raise
    :class:`NondeterminismError` naming it, with the call as the error's ``call`` (so the
    report names the project's line, not the library's that made it)."""
    noted = GuardedCall(kind, call, frame.f_code.co_filename, frame.f_lineno,
                        refused=watch.strict)
    watch.calls.append(noted)
    if watch.strict:
        advice = _NUMPY_ADVICE if call.startswith("numpy.") else \
            _ADVICE.get(kind, "go through the context")
        error = NondeterminismError(f"the step called {noted} outside its context; {advice}")
        error.call = noted  # type: ignore[attr-defined]  # read by the report's causes
        raise error


@contextmanager
def part_of_a_call(kind: str) -> Iterator[None]:
    """Inside the block, guarded calls are part of one of ``kind`` already judged (or not
    the step's) and are not noted, an environment read inside a call of another kind
    excepted: a stand-in wraps the real call in it."""
    outer = _WITHIN.kind
    if outer is None or (kind == "environment" and outer != "environment"):
        _WITHIN.kind = kind
    try:
        yield
    finally:
        _WITHIN.kind = outer


def guarded(function: Callable[..., Any], kind: str, call: str,
            when: When | None = None) -> Callable[..., Any]:
    """A stand-in for ``function``: notes the call (when ``when`` says the arguments read
    the world), then makes it, the calls it makes being part of it."""
    def guard(*args: Any, **kwargs: Any) -> Any:
        watch = active_watch()
        if watch is None or (when is not None and not when(args, kwargs)):
            return function(*args, **kwargs)
        # _made_for, spelled out: every guarded call comes here, a logged line too.
        outer = _WITHIN.kind
        if outer is not None and (kind != "environment" or outer == "environment"):
            return function(*args, **kwargs)
        frame = project_frame(watch.files)
        if frame is None:  # what it calls is found not to be the step's the same way
            return function(*args, **kwargs)
        judge(watch, kind, call, frame)
        if outer is None or (kind == "environment" and outer != "environment"):
            _WITHIN.kind = kind  # what it does is part of it
        try:
            return function(*args, **kwargs)
        finally:
            _WITHIN.kind = outer

    guard.__name__ = getattr(function, "__name__", "guard")
    guard.__qualname__ = getattr(function, "__qualname__", guard.__name__)
    guard.__doc__ = getattr(function, "__doc__", None)
    guard.__wrapped__ = function  # type: ignore[attr-defined]
    return guard


class GuardedEnviron(MutableMapping[str, str]):
    """``os.environ``, noting every read."""

    def __init__(self, real: MutableMapping[str, str]) -> None:
        self._real = real

    @property
    def unguarded(self) -> MutableMapping[str, str]:
        """The real ``os.environ``, for pinrun's own reads: they are no step's, so they
        are not noted (and cost no look for the step's frame)."""
        return self._real

    def __getitem__(self, key: str) -> str:
        note("environment", f"os.environ[{key!r}]")
        return self._real[key]

    def get(self, key: str, default: Any = None) -> Any:
        note("environment", f"os.environ.get({key!r})")
        return self._real.get(key, default)

    def __contains__(self, key: object) -> bool:
        note("environment", f"{key!r} in os.environ")
        return key in self._real

    def __iter__(self) -> Iterator[str]:
        note("environment", "iterating os.environ")
        return iter(self._real)

    def __len__(self) -> int:
        return len(self._real)

    def copy(self) -> dict[str, str]:
        """A plain dict of the environment, as ``os.environ.copy()`` gives."""
        note("environment", "os.environ.copy()")
        return dict(self._real)

    def __setitem__(self, key: str, value: str) -> None:
        self._real[key] = value

    def __delitem__(self, key: str) -> None:
        del self._real[key]


#: (module or class, attribute, kind) of every function a stand-in always notes.
FUNCTIONS: list[tuple[Any, str, str]] = [
    *((time, name, "clock") for name in (
        "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
        "process_time", "process_time_ns", "thread_time", "thread_time_ns")),
    *((random, name, "randomness") for name in (
        "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle",
        "sample", "getrandbits", "gauss", "normalvariate", "triangular", "expovariate",
        "betavariate", "randbytes")),
    *((random.SystemRandom, name, "randomness") for name in (
        "random", "getrandbits", "randbytes")),
    *((secrets, name, "randomness") for name in (
        "token_bytes", "token_hex", "token_urlsafe", "choice", "randbelow")),
    # secrets.randbits is the generators' (pinrun.world.generators): numpy draws its
    # entropy through it, from C
    (uuid, "uuid1", "uuid"), (uuid, "uuid4", "uuid"),
    (os, "urandom", "randomness"), (os, "getrandom", "randomness"),
    *((time, name, "clock") for name in ("clock_gettime", "clock_gettime_ns")),
    *((os, name, "identity") for name in ("getpid", "getppid", "uname", "getlogin", "getuid",
                                          "geteuid", "cpu_count")),
    (socket, "gethostname", "identity"), (platform, "node", "identity"),
    (getpass, "getuser", "identity"),
    (os, "getcwd", "file system"), (os, "getcwdb", "file system"), (os, "umask", "file system"),
    *((tempfile, name, "file system") for name in (
        "mkstemp", "mkdtemp", "mktemp", "NamedTemporaryFile", "gettempdir", "gettempdirb")),
    (tempfile.TemporaryDirectory, "__init__", "file system"),
]
#: Only what this platform has (os.getrandom is Linux's, for one).
FUNCTIONS = [(owner, name, kind) for owner, name, kind in FUNCTIONS if name in vars(owner)]


def _no_time(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return not args or args[0] is None  # localtime(), gmtime(), ctime(), asctime()


def _no_time_after_format(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return len(args) < 2  # strftime(format): now; strftime(format, t): t


def _relative(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    path: Any = args[0] if args else kwargs.get("path", kwargs.get("filename"))
    try:
        return not os.path.isabs(path)
    except TypeError:  # not a path: the real call says so
        return False


def _home(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    path: Any = args[0] if args else kwargs.get("path")
    try:
        return bool(os.fspath(path)[:1] in ("~", b"~"))
    except TypeError:
        return False


#: (module, attribute, kind, when) of the functions that read the world for some arguments.
CONDITIONAL: list[tuple[Any, str, str, When]] = [
    (time, "strftime", "clock", _no_time_after_format),
    *((time, name, "clock", _no_time) for name in ("localtime", "gmtime", "ctime", "asctime")),
    (os.path, "abspath", "file system", _relative),
    (os.path, "realpath", "file system", _relative),
    (os.path, "expanduser", "file system", _home),
]


def _getenv(real: Callable[..., Any]) -> Callable[..., Any]:
    def getenv(key: str, default: Any = None) -> Any:
        note("environment", f"os.getenv({key!r})")
        with part_of_a_call("environment"):
            return real(key, default)

    getenv.__doc__ = real.__doc__
    getenv.__wrapped__ = real  # type: ignore[attr-defined]
    return getenv


#: (module, attribute, maker) of the stand-ins made to measure: maker(real) -> stand-in.
MADE: list[tuple[Any, str, Callable[[Any], Any]]] = [
    (os, "getenv", _getenv), (os, "environ", GuardedEnviron),
]


def call_name(owner: Any, name: str) -> str:
    """How a guarded call is named: ``time.perf_counter()``, ``os.path.abspath()``,
    ``random.SystemRandom().random()``, ``tempfile.TemporaryDirectory()``."""
    if isinstance(owner, types.ModuleType):
        module = "os.path" if owner is os.path else owner.__name__
        return f"{module}.{name}()"
    if name == "__init__":
        return f"{owner.__module__}.{owner.__qualname__}()"
    return f"{owner.__module__}.{owner.__qualname__}().{name}()"
