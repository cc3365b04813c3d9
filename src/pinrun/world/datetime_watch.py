"""``datetime.now()`` and its kin, watched by a profile function while a step is guarded.

``datetime.now()``, ``today()``, ``utcnow()`` and ``date.today()`` cannot be
stood in for: their classes are built into Python (no attribute can be set
on them), and another class would change what ``type(x) is datetime`` says
in the step. So a profile function (:func:`sys.setprofile`) watches each
guarded step and notes those calls, attributed like every guarded call
(:func:`pinrun.world.attribution.project_frame`), however ``datetime`` was
imported: at module level, inside the step, or by a library for it.

A profile function costs on every call the step makes, so it is turned on
only for a project whose code could make such a call: one whose code objects
(functions, methods, the steps' functions, nested ones) name ``now``,
``today`` or ``utcnow`` together with ``datetime``, ``date`` or a global bound
to them (:func:`mentions_datetime_clock`; ``ctx.now()`` alone does not turn
it on). Each code object is judged once per process; a library calling
``datetime.now()`` for a project that never names them is not watched.
"""

from __future__ import annotations

import datetime
import sys
import threading
import types
import weakref
from collections.abc import Iterable
from typing import Any

from pinrun.flows.module_objects import own_attribute
from pinrun.world.attribution import project_frame
from pinrun.world.refusal import current_watch
from pinrun.world.stand_ins import judge

__all__ = ["mentions_datetime_clock", "profiler", "watching_datetime"]

_NAMES = frozenset(("now", "today", "utcnow"))
_CALLS = {(datetime.datetime, "now"), (datetime.datetime, "utcnow"),
          (datetime.datetime, "today"), (datetime.date, "today")}
_CLOCKS = (datetime, datetime.datetime, datetime.date)
#: Per code object: the names used by it and the codes nested in it that name one of
#: _NAMES (empty: none does).
_JUDGED: weakref.WeakKeyDictionary[types.CodeType, frozenset[str]] = \
    weakref.WeakKeyDictionary()


def _clock_names(code: types.CodeType) -> frozenset[str]:
    found = _JUDGED.get(code)
    if found is None:
        names = set(code.co_names) if not _NAMES.isdisjoint(code.co_names) else set()
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                names |= _clock_names(const)
        found = _JUDGED[code] = frozenset(names)
    return found


def _codes(value: Any, module: str, depth: int = 0) -> Iterable[types.CodeType]:
    """The code objects a module-level value holds: a function's, a method's, the function
    a step or a decorator wraps (``func``, ``__wrapped__`` in its instance dict), a class's
    members (classes defined in the module). Nothing else is asked for attributes: a lazy
    proxy must not import what it stands for."""
    if depth > 3:
        return
    if isinstance(value, types.FunctionType):
        yield value.__code__
    elif isinstance(value, staticmethod | classmethod | types.MethodType):
        yield from _codes(value.__func__, module, depth + 1)
    elif isinstance(value, property):
        yield from _codes(value.fget, module, depth + 1)
    elif isinstance(value, type):
        if value.__module__ == module:
            for member in list(vars(value).values()):
                yield from _codes(member, module, depth + 1)
    else:
        for key in ("func", "__wrapped__"):
            inner = own_attribute(value, key)
            if inner is not None:
                yield from _codes(inner, module, depth + 1)


def mentions_datetime_clock(modules: list[types.ModuleType]) -> bool:
    """Whether any code of the modules calls ``now``, ``today`` or ``utcnow`` on something
    that may be datetime's: code naming ``datetime`` or ``date`` too (``import datetime``
    inside a function, ``datetime.now()``), or a name the module binds to the ``datetime``
    module or its classes (``from datetime import datetime as moment``). ``ctx.now()``
    alone does not count."""
    return any(_module_mentions(module) for module in modules)


#: Per module, what :func:`_module_mentions` found and for how many names: a module
#: judged once per replay is judged once per process (a module that gains a name, or a
#: pinned module loaded afresh, is judged again). Owned by the modules (weak keys).
_MODULES: weakref.WeakKeyDictionary[types.ModuleType, tuple[int, bool]] = \
    weakref.WeakKeyDictionary()


def _module_mentions(module: types.ModuleType) -> bool:
    namespace = vars(module)
    known = _MODULES.get(module)
    if known is not None and known[0] == len(namespace):
        return known[1]
    found = _judge_module(module)
    _MODULES[module] = len(namespace), found
    return found


def _judge_module(module: types.ModuleType) -> bool:
    namespace = vars(module)
    name = module.__name__
    for value in list(namespace.values()):
        if isinstance(value, types.ModuleType):
            continue
        try:
            codes = list(_codes(value, name))
        except Exception:  # an odd object's __dict__ look-up failed: no code there
            continue
        for code in codes:
            names = _clock_names(code)
            if names and ("datetime" in names or "date" in names or any(
                    namespace.get(used) is clock for used in names for clock in _CLOCKS)):
                return True
    return False


class _Profiling(threading.local):
    """How many guarded steps of this thread want the profiler (async steps interleave:
    the first to start turns it on, the last to end puts back what was there)."""

    count = 0
    previous: Any = None


_PROFILING = _Profiling()


class watching_datetime:  # noqa: N801 - used as a function: with watching_datetime()
    """Profile the block's thread for datetime clock reads (see the module's docstring)."""

    __slots__ = ()

    def __enter__(self) -> None:
        if _PROFILING.count == 0:
            _PROFILING.previous = sys.getprofile()
            sys.setprofile(profiler)
        _PROFILING.count += 1

    def __exit__(self, *exc_info: object) -> None:
        _PROFILING.count -= 1
        if _PROFILING.count == 0:
            sys.setprofile(_PROFILING.previous)
            _PROFILING.previous = None


def profiler(frame: types.FrameType, event: str, arg: Any) -> None:
    """A profile function: notes the datetime clock reads made for a guarded step."""
    if event != "c_call":
        return
    owner: Any = getattr(arg, "__self__", None)
    # Identity first: most owners (a list, a dict) cannot even be hashed.
    if (owner is not datetime.datetime and owner is not datetime.date) or \
            (owner, getattr(arg, "__name__", None)) not in _CALLS:
        return
    watch = current_watch()
    if watch is None or not watch.guarded:
        return
    found = project_frame(watch.files, frame)
    if found is None:
        return
    judge(watch, "clock", f"{owner.__name__}.{arg.__name__}()", found)
