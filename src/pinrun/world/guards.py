"""Guards: catch a step reaching for time, chance or the outside world around its context.

While guards are up, the clock, randomness, uuid and environment functions
of ``time``, ``random``, ``secrets``, ``uuid`` and ``os`` are guarded
stand-ins, and so are the names the project's modules imported from
them (``from time import time``). A stand-in notes a call made directly by
the project's code, with its file and line, then makes the real call
(``warn``) or raises :class:`NondeterminismError` (``strict``). Calls made by
libraries are not the step's (logging's timestamps, say), so they are not
noted. Network connections and subprocesses are the world guard's
(:mod:`pinrun.world.refusal`): refused inside a guarded step unless the
replay allows the world, then noted like the rest. Only a step being guarded
is watched (a context variable says which). Everything is put back when the
guards end.

``datetime.now()``, ``utcnow()`` and ``date.today()`` cannot be stood in
for: their classes are built into Python, and another class would change
what ``type(x) is datetime`` says in the step. When a project module holds
the ``datetime`` module or one of those classes, a profile function watches
each guarded step instead, and notes those calls when the project's code
makes them.

This module and :mod:`pinrun.world` are the only ones that touch these
modules; the engine and the verifier never do (a test enforces it).
"""

from __future__ import annotations

import datetime
import os
import random
import secrets
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from pinrun.errors import NondeterminismError
from pinrun.world.generators import generator_stand_ins
from pinrun.world.refusal import GuardedCall, WorldWatch, watching_world

__all__ = ["GuardMode", "GuardedCall", "Guards", "NondeterminismError"]

GuardMode = Literal["warn", "strict", "off"]


@dataclass
class _Watch:
    strict: bool
    #: The project's source files: calls from these are the step's.
    files: frozenset[str]
    calls: list[GuardedCall] = field(default_factory=list)


_ACTIVE: ContextVar[_Watch | None] = ContextVar("pinrun_guard", default=None)

_ADVICE = {
    "clock": "use ctx.now()", "randomness": "use ctx.random()", "uuid": "use ctx.uuid4()",
    "environment": "pass it as an input, or read it through ctx.effect()",
}


def _direct_caller(watch: _Watch, behalf: bool = False) -> types.FrameType | None:
    """The frame that called the stand-in, when it is the project's code (``behalf``: the
    nearest frame of the project's code, when a library may call on the step's behalf)."""
    frame: types.FrameType | None = sys._getframe(3)  # _note, the stand-in, its caller
    while frame is not None and (frame.f_code.co_filename == __file__ or
                                 (behalf and frame.f_code.co_filename not in watch.files)):
        frame = frame.f_back  # any frame of this module between the stand-in and its caller
    return frame if frame is not None and frame.f_code.co_filename in watch.files else None


def _note(kind: str, call: str, *, behalf: bool = False) -> None:
    watch = _ACTIVE.get()
    if watch is None:
        return
    frame = _direct_caller(watch, behalf)
    if frame is None:
        return  # a library's own call, not the step's
    noted = GuardedCall(kind, call, frame.f_code.co_filename, frame.f_lineno)
    watch.calls.append(noted)
    if watch.strict:
        raise NondeterminismError(f"the step called {noted} outside its context; "
                                  f"{_ADVICE.get(kind, 'go through the context')}")


def _guarded(function: Callable[..., Any], kind: str, call: str) -> Callable[..., Any]:
    def guard(*args: Any, **kwargs: Any) -> Any:
        _note(kind, call)
        return function(*args, **kwargs)

    guard.__name__ = getattr(function, "__name__", "guard")
    guard.__qualname__ = getattr(function, "__qualname__", guard.__name__)
    guard.__wrapped__ = function  # type: ignore[attr-defined]
    return guard


class _GuardedEnviron(MutableMapping[str, str]):
    """``os.environ``, noting every read."""

    def __init__(self, real: MutableMapping[str, str]) -> None:
        self._real = real

    def __getitem__(self, key: str) -> str:
        _note("environment", f"os.environ[{key!r}]")
        return self._real[key]

    def get(self, key: str, default: Any = None) -> Any:
        _note("environment", f"os.environ.get({key!r})")
        return self._real.get(key, default)

    def __contains__(self, key: object) -> bool:
        _note("environment", f"{key!r} in os.environ")
        return key in self._real

    def __iter__(self) -> Iterator[str]:
        _note("environment", "iterating os.environ")
        return iter(self._real)

    def __len__(self) -> int:
        return len(self._real)

    def copy(self) -> dict[str, str]:
        """A plain dict of the environment, as ``os.environ.copy()`` gives."""
        _note("environment", "os.environ.copy()")
        return dict(self._real)

    def __setitem__(self, key: str, value: str) -> None:
        self._real[key] = value

    def __delitem__(self, key: str) -> None:
        del self._real[key]


#: (module, attribute, kind) of every function a stand-in replaces.
_FUNCTIONS = [
    *((time, name, "clock") for name in ("time", "time_ns", "monotonic", "monotonic_ns")),
    *((random, name, "randomness") for name in (
        "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle",
        "sample", "getrandbits", "gauss", "normalvariate", "triangular", "expovariate",
        "betavariate", "randbytes")),
    *((secrets, name, "randomness") for name in (
        "token_bytes", "token_hex", "token_urlsafe", "choice", "randbelow", "randbits")),
    (uuid, "uuid1", "uuid"), (uuid, "uuid4", "uuid"),
    (os, "urandom", "randomness"), (os, "getenv", "environment"),
]


def _stand_ins() -> list[tuple[types.ModuleType, str, Any, Any]]:
    """(module, attribute, real object, guarded stand-in) for everything guarded."""
    out: list[tuple[types.ModuleType, str, Any, Any]] = [(module, name, getattr(module, name),
            _guarded(getattr(module, name), kind, f"{module.__name__}.{name}()"))
           for module, name, kind in _FUNCTIONS]
    out.append((os, "environ", os.environ, _GuardedEnviron(os.environ)))
    out += generator_stand_ins(_note, _ACTIVE.get)  # random.Random, numpy's generators
    return out




class _Shared:
    """What every Guards in the process shares: the patches, and who still needs them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.stand_ins: list[tuple[types.ModuleType, str, Any, Any]] = []
        self.patched: list[tuple[dict[str, Any], str, Any]] = []


_SHARED = _Shared()


_DATETIME_CALLS = {(datetime.datetime, "now"), (datetime.datetime, "utcnow"),
                   (datetime.datetime, "today"), (datetime.date, "today")}


def _datetime_profiler(frame: types.FrameType, event: str, arg: Any) -> None:
    """A profile function: notes the datetime clock reads the project's code makes."""
    if event != "c_call":
        return
    owner: Any = getattr(arg, "__self__", None)
    # Identity first: most owners (a list, a dict) cannot even be hashed.
    if (owner is not datetime.datetime and owner is not datetime.date) or \
            (owner, getattr(arg, "__name__", None)) not in _DATETIME_CALLS:
        return
    watch = _ACTIVE.get()
    if watch is None or frame.f_code.co_filename not in watch.files:
        return
    noted = GuardedCall("clock", f"{owner.__name__}.{arg.__name__}()",
                        frame.f_code.co_filename, frame.f_lineno)
    watch.calls.append(noted)
    if watch.strict:
        raise NondeterminismError(f"the step called {noted} outside its context; use "
                                  "ctx.now()")


def _uses_datetime(modules: list[types.ModuleType]) -> bool:
    """Whether any of the modules holds the datetime module or its classes."""
    wanted = (datetime, datetime.datetime, datetime.date)
    return any(value is candidate for module in modules for value in vars(module).values()
               for candidate in wanted)


class Guards:
    """Rewire the project's modules to guarded stand-ins for as long as the block lasts.

    ``modules``: the project's modules (the step code). ``mode``: ``warn``
    notes calls, ``strict`` also raises :class:`NondeterminismError` in the
    step, ``off`` does nothing (no watch at all: the world too is let
    through). Network connections and subprocesses are refused in a guarded
    step (:func:`~pinrun.world.refusal.refusal`, whatever the mode but ``off``) unless
    ``allow_world``, when they are only noted. Use :meth:`step` around each
    step.
    """

    def __init__(self, modules: list[types.ModuleType], mode: GuardMode = "warn", *,
                 allow_world: bool = False) -> None:
        self.modules = modules
        self.mode = mode
        self.allow_world = allow_world
        self.files = frozenset(f for module in modules
                               if isinstance(f := getattr(module, "__file__", None), str))
        self._swapped: list[tuple[dict[str, Any], str, Any]] = []
        self._before: set[str] = set()
        #: Profiling costs every call: only when the project can reach datetime at all.
        self._watch_datetime = mode != "off" and _uses_datetime(modules)

    def __enter__(self) -> Guards:
        if self.mode == "off":
            return self
        with _SHARED.lock:
            # Guards may overlap (replays in threads): the first patches, the last restores.
            if _SHARED.depth == 0:
                _SHARED.stand_ins = _stand_ins()
                for module, name, real, stand_in in _SHARED.stand_ins:
                    _SHARED.patched.append((vars(module), name, real))
                    setattr(module, name, stand_in)
            _SHARED.depth += 1
            by_real = {id(real): stand_in for _, _, real, stand_in in _SHARED.stand_ins}
        for module in self.modules:  # names the project imported: from time import time
            namespace = vars(module)
            for name, value in list(namespace.items()):
                stand_in = by_real.get(id(value))
                if stand_in is not None and not name.startswith("__"):
                    self._swapped.append((namespace, name, value))
                    namespace[name] = stand_in
        self._before = set(sys.modules)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.mode == "off":
            return
        for namespace, name, value in reversed(self._swapped):
            namespace[name] = value
        self._swapped.clear()
        with _SHARED.lock:
            real_of = {id(stand_in): real for _, _, real, stand_in in _SHARED.stand_ins}
            # A module first imported while guarded took stand-ins by name: give it the real.
            for module_name in set(sys.modules) - self._before:
                module = sys.modules.get(module_name)
                namespace = getattr(module, "__dict__", None)
                if not isinstance(namespace, dict):
                    continue
                for name, value in list(namespace.items()):
                    real = real_of.get(id(value))
                    if real is not None:
                        namespace[name] = real
            _SHARED.depth -= 1
            if _SHARED.depth == 0:
                for namespace, name, value in reversed(_SHARED.patched):
                    namespace[name] = value
                _SHARED.patched.clear()
                _SHARED.stand_ins = []

    @contextmanager
    def step(self) -> Iterator[list[GuardedCall]]:
        """Watch the calls of one step (in this context); yields the list they go to."""
        if self.mode == "off":
            yield []
            return
        watch = _Watch(strict=self.mode == "strict", files=self.files)
        token = _ACTIVE.set(watch)
        previous = sys.getprofile()
        if self._watch_datetime:
            sys.setprofile(_datetime_profiler)
        try:
            # World calls go to the same list, in the order they were made.
            with watching_world(WorldWatch(refuse=not self.allow_world, files=self.files,
                                           calls=watch.calls)):
                yield watch.calls
        finally:
            if self._watch_datetime:
                sys.setprofile(previous)
            _ACTIVE.reset(token)

