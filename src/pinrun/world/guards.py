"""Guards: catch a step reaching for time, chance or the outside world around its context.

While guards are up, the functions of the standard library that read the
world (the catalogue: :mod:`pinrun.world.stand_ins`; the clock, randomness,
identity, the file system's names and the environment) are guarded
stand-ins, and so are the names the project's modules imported from them
(``from time import time``, ``from os import getcwd``). A stand-in notes a
call made for the step, with the file and line of the nearest frame of the
project's own code (:mod:`pinrun.world.attribution`: also when a library
makes the call on the step's behalf; not when a harmless caller, such as
logging's timestamps, makes it for itself), then makes the real call
(``warn``) or raises :class:`NondeterminismError` (``strict``). Network
connections and subprocesses are the world guard's
(:mod:`pinrun.world.refusal`): refused inside a guarded step unless the
replay allows the world, then noted like the rest. Only a step being guarded
is watched (a context variable says which). Everything is put back when the
guards end.

``datetime.now()`` and its kin are watched by a profile function instead
(:mod:`pinrun.world.datetime_watch`), for a project whose code names them.

This module and :mod:`pinrun.world` are the only ones that touch these
modules; the engine and the verifier never do (a test enforces it).
"""

from __future__ import annotations

import functools
import operator
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from contextvars import Token
from typing import Any, Literal

from pinrun.errors import NondeterminismError
from pinrun.world import stand_ins
from pinrun.world.datetime_watch import mentions_datetime_clock, watching_datetime
from pinrun.world.files import FileSetup, stop_watching_files, watch_files
from pinrun.world.generators import generator_stand_ins, generators_key
from pinrun.world.refusal import (
    GuardedCall,
    ReplayWatch,
    WorldWatch,
    enter_watch,
    leave_watch,
)

__all__ = ["GuardMode", "GuardedCall", "Guards", "NondeterminismError", "keep_stand_ins"]

GuardMode = Literal["warn", "strict", "off"]


def _stand_ins() -> _Built:
    """(module or class, attribute, real object, guarded stand-in) for everything guarded:
    built once, and again only when a module no longer holds what they stand for (or the
    numpy came in): guards go up for every replay."""
    built = _BUILT[0] if _BUILT else None
    if built is not None and built.holds():
        return built
    built = _Built(_build_stand_ins(), generators_key())
    _BUILT[:] = [built]
    return built


class _Built:
    """The stand-ins built last, what they were built for, the maps both ways, and the
    patches to put them up and take them down (per module, one dictionary update each:
    guards go up and down around every replay outside a worker)."""

    __slots__ = ("by_real", "checked", "classes", "key", "names", "real_of", "reals", "spaces",
                 "wanted")

    def __init__(self, stand_ins: list[tuple[Any, str, Any, Any]], key: object) -> None:
        #: The generators' key they were built for.
        self.key = key
        self.by_real = _ByIdentity([(real, new) for _, _, real, new in stand_ins])
        self.real_of = _ByIdentity([(new, real) for _, _, real, new in stand_ins])
        #: Per module's namespace: {name: stand-in}, and {name: real object}.
        self.wanted: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.reals: list[tuple[dict[str, Any], dict[str, Any]]] = []
        #: (class, name, real object, stand-in): a class is patched by setattr, which
        #: tells its subclasses' attribute caches.
        self.classes: list[tuple[type, str, Any, Any]] = []
        by_module: dict[types.ModuleType, tuple[dict[str, Any], dict[str, Any]]] = {}
        for owner, name, real, new in stand_ins:
            if not isinstance(owner, types.ModuleType):
                self.classes.append((owner, name, real, new))
                continue
            wanted, reals = by_module.setdefault(owner, ({}, {}))
            wanted[name] = new
            reals.setdefault(name, real)  # the object there before any stand-in
        for module, (wanted, reals) in by_module.items():
            self.wanted.append((vars(module), wanted))
            self.reals.append((vars(module), reals))
        #: Each real object stood in for, where it is (a module's dict, or a class's
        #: view) and its name: checked in one pass, in C.
        places: list[tuple[Mapping[str, Any], str, Any]] = [
            (namespace, name, real) for namespace, reals in self.reals
            for name, real in reals.items()]
        places += [(vars(owner), name, real) for owner, name, real, _ in self.classes]
        self.spaces = tuple(space for space, _, _ in places)
        self.names = tuple(name for _, name, _ in places)
        self.checked = tuple(real for _, _, real in places)

    def holds(self) -> bool:
        """Whether the modules still hold what the stand-ins stand for (a test's
        monkeypatch or freezegun may have put something else there since)."""
        if self.key != generators_key():
            return False
        if _all_hold is not None:  # ~10x cheaper than the map below: one is asked a replay
            return _all_hold(self.spaces, self.names, self.checked)
        return all(map(operator.is_, map(_found, self.spaces, self.names), self.checked))


def _found(space: Mapping[str, Any], name: str) -> Any:
    return space.get(name)


_all_hold: Callable[[tuple[Mapping[str, Any], ...], tuple[str, ...], tuple[Any, ...]], bool] | None
try:
    from pinrun.world._speedups import all_hold as _all_hold
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _all_hold = None


#: The stand-ins built last.
_BUILT: list[_Built] = []


def _build_stand_ins() -> list[tuple[Any, str, Any, Any]]:
    out: list[tuple[Any, str, Any, Any]] = [
        (owner, name, vars(owner)[name],
         stand_ins.guarded(getattr(owner, name), kind, stand_ins.call_name(owner, name)))
        for owner, name, kind in stand_ins.FUNCTIONS]
    out += [(owner, name, vars(owner)[name],
             stand_ins.guarded(getattr(owner, name), kind, stand_ins.call_name(owner, name),
                               when))
            for owner, name, kind, when in stand_ins.CONDITIONAL]
    out += [(owner, name, vars(owner)[name], make(vars(owner)[name]))
            for owner, name, make in stand_ins.MADE]
    for owner, name, _, stand_in in out:
        if isinstance(stand_in, types.FunctionType):
            # pickle finds a function by module and name, and checks it is the same object:
            # while patched, the stand-in is (a process started with target=os.getpid).
            module = owner if isinstance(owner, types.ModuleType) else sys.modules.get(
                owner.__module__)
            stand_in.__module__ = getattr(module, "__name__", stand_in.__module__)
            stand_in.__qualname__ = name if isinstance(owner, types.ModuleType) else \
                f"{owner.__qualname__}.{name}"
    out += generator_stand_ins()  # random.Random, numpy
    return out


class _ByIdentity:
    """Objects mapped to others by identity, without ``id()``: it raises an audit event,
    which every audit hook of the process is called for. Functions, methods and
    classes are looked up by hash (then checked to be the very object); the few
    objects that cannot be hashed (``os.environ``) are compared one by one."""

    __slots__ = ("hashed", "kinds", "other")

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        self.hashed: dict[Any, tuple[Any, Any]] = {}
        self.other: list[tuple[Any, Any]] = []
        for key, value in pairs:
            try:
                self.hashed[key] = (key, value)
            except TypeError:
                self.other.append((key, value))
        #: Only a value of one of these types can be a key: the others are not looked up.
        self.kinds = frozenset(type(key) for key, _ in pairs)

    def get(self, key: object) -> Any:
        """What ``key`` (the very object) maps to, or None."""
        if type(key) not in self.kinds:
            return None
        try:
            found = self.hashed.get(key)
        except TypeError:  # unhashable
            found = None
        if found is not None and found[0] is key:
            return found[1]
        return next((value for known, value in self.other if known is key), None)


_NOTHING = _ByIdentity([])


class _Shared:
    """What every Guards in the process shares: the patches, and who still needs them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        #: The stand-ins up now (None: none).
        self.patched: _Built | None = None
        #: The stand-in of each real object, and back (built as they go up).
        self.by_real = self.real_of = _NOTHING
        #: Whether they stay up for good (a verify worker: :func:`keep_stand_ins`).
        self.kept = False
        #: The last module loaded when they went up (see :func:`_imported_since`).
        self.last_module: tuple[str, Any] | None = None


_SHARED = _Shared()


def _put_up() -> None:
    """Patch the stand-ins in (the lock held, none up yet)."""
    _SHARED.last_module = next(reversed(sys.modules.items()), None)
    built = _SHARED.patched = _stand_ins()
    for namespace, wanted in built.wanted:
        namespace.update(wanted)
    for owner, name, _, stand_in in built.classes:
        setattr(owner, name, stand_in)
    _SHARED.by_real, _SHARED.real_of = built.by_real, built.real_of


def _take_down() -> None:
    """Put the real objects back (the lock held), also in the modules first imported
    while the stand-ins were up (they took stand-ins by name: ``from time import time``)."""
    real_of = _SHARED.real_of
    # The real objects first: a module imported meanwhile (in another thread) takes them.
    built, _SHARED.patched = _SHARED.patched, None
    if built is not None:
        for namespace, reals in built.reals:
            namespace.update(reals)
        for owner, name, real, _ in built.classes:
            setattr(owner, name, real)
    last, _SHARED.last_module = _SHARED.last_module, None  # not kept: a module may go
    for module in _imported_since(last):
        found = getattr(module, "__dict__", None)
        if isinstance(found, dict):
            for name, value in list(found.items()):
                real = real_of.get(value)
                if real is not None:
                    found[name] = real
    _SHARED.by_real = _SHARED.real_of = _NOTHING


def _imported_since(last: tuple[str, Any] | None) -> list[Any]:
    """The modules imported since ``last`` (name, module) was the last one: sys.modules
    keeps the order modules came in, so they are found from the end, without a copy of
    it all (a process may have thousands). All of them when ``last`` is gone."""
    try:
        return _walk_back(reversed(sys.modules.items()), last)
    except RuntimeError:  # another thread imported a module meanwhile: from a copy
        return _walk_back(reversed(list(sys.modules.items())), last)


def _walk_back(items: Iterator[tuple[str, Any]], last: tuple[str, Any] | None) -> list[Any]:
    found = []
    for name, module in items:
        if last is not None and name == last[0] and module is last[1]:
            break
        found.append(module)
    return found


def keep_stand_ins() -> None:
    """Put the stand-ins up for good in this process: a verify worker, which replays run
    after run and is done with the world, calls it once, so each replay's guards do not
    put them up and take them down again. Idle between steps: a stand-in called while no
    step is guarded only makes the real call."""
    with _SHARED.lock:
        if _SHARED.kept:
            return
        if _SHARED.depth == 0:
            _put_up()
        _SHARED.depth += 1
        _SHARED.kept = True


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
        #: Profiling costs every call: only when the project's code names now/today/utcnow.
        self._watch_datetime = mode != "off" and mentions_datetime_clock(modules)

    def __enter__(self) -> Guards:
        if self.mode == "off":
            return self
        with _SHARED.lock:
            # Guards may overlap (replays in threads): the first patches, the last restores.
            if _SHARED.depth == 0:
                _put_up()
            elif _SHARED.kept and _BUILT and _BUILT[0].key != generators_key():
                _take_down()  # numpy came in since they went up for good: again, with it
                _put_up()
            _SHARED.depth += 1
            by_real = _SHARED.by_real
        for module in self.modules:  # names the project imported: from time import time
            namespace = vars(module)
            for name, stand_in in _imported_names(module, by_real):
                self._swapped.append((namespace, name, namespace[name]))
                namespace[name] = stand_in
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.mode == "off":
            return
        for namespace, name, value in reversed(self._swapped):
            namespace[name] = value
        self._swapped.clear()
        with _SHARED.lock:
            _SHARED.depth -= 1
            if _SHARED.depth == 0:
                _take_down()

    def step(self) -> _StepWatch:
        """Watch the calls of one step (in this context): a context manager whose value is
        the list they go to."""
        return _StepWatch(self, None, None)

    def step_reading(self, setup: FileSetup,
                     replay: ReplayWatch | None = None) -> Callable[[], _StepWatch]:
        """Like :meth:`step` (a step guard, called once per step), watching the files
        each step reads too (:mod:`pinrun.world.files`): their :class:`FileWatch` ends
        the list. ``replay``: the replay refusing the world, whose threads read for the
        step running now."""
        return functools.partial(_StepWatch, self, setup, replay)


def _imported_names(module: types.ModuleType, by_real: _ByIdentity) -> list[tuple[str, Any]]:
    """(name, stand-in) for each name in a module's namespace bound to a real object
    stood in for. Scanned at every replay (a global may have been bound to one since:
    ``_clock = time.time`` while the stand-ins were down); only a value of a type stood
    in for is looked up, so most names cost a set look-up. (Remembering a namespace's
    objects to skip the scan would keep them alive, and with them the modules they
    reach: pinned code's fresh modules, replay after replay.)"""
    kinds = by_real.kinds
    return [(name, stand_in) for name, value in list(vars(module).items())
            if type(value) in kinds and not name.startswith("__")
            and (stand_in := by_real.get(value)) is not None]


class _StepWatch(WorldWatch):
    """One guarded step (:meth:`Guards.step`): the step's world watch itself, for its
    world calls, its guards' notes and (with a file setup) its reads. A context manager
    rather than a generator, and one object: it is entered around every replayed step."""

    __slots__ = ("_datetime", "_guards", "_replay", "_setup", "_token")

    def __init__(self, guards: Guards, setup: FileSetup | None,
                 replay: ReplayWatch | None) -> None:
        # World calls go to the same list as the guards' notes, in the order they came.
        super().__init__(refuse=not guards.allow_world, files=guards.files, guarded=True,
                         strict=guards.mode == "strict")
        self._guards = guards
        self._setup = setup
        self._replay = replay
        self._token: Token[WorldWatch | None] | None = None

    def __enter__(self) -> list[GuardedCall]:
        guards = self._guards
        if guards.mode == "off":
            return []
        self._token = enter_watch(self)
        if self._setup is not None:
            watch_files(self, self._setup, self._replay)
        self._datetime = watching_datetime() if guards._watch_datetime else None
        if self._datetime is not None:
            try:
                self._datetime.__enter__()
            except BaseException:
                leave_watch(self._token)
                if self._setup is not None:
                    stop_watching_files(self, self._replay)
                raise
        return self.calls

    def __exit__(self, *exc_info: object) -> None:
        if self._token is None:
            return
        try:
            if self._datetime is not None:
                self._datetime.__exit__(*exc_info)
        finally:
            leave_watch(self._token)
            if self._setup is not None:
                stop_watching_files(self, self._replay)
