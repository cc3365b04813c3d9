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
``today`` or ``utcnow`` (:func:`mentions_datetime_clock`). Each code object
is judged once per process; a library calling ``datetime.now()`` for a
project that never says any of those names is not watched.
"""

from __future__ import annotations

import datetime
import types
import weakref
from collections.abc import Iterable
from typing import Any

from pinrun.world.attribution import project_frame
from pinrun.world.stand_ins import ACTIVE, judge

__all__ = ["mentions_datetime_clock", "profiler"]

_NAMES = frozenset(("now", "today", "utcnow"))
_CALLS = {(datetime.datetime, "now"), (datetime.datetime, "utcnow"),
          (datetime.datetime, "today"), (datetime.date, "today")}
#: Per code object (and the ones nested in it): whether it names one of _NAMES.
_JUDGED: weakref.WeakKeyDictionary[types.CodeType, bool] = weakref.WeakKeyDictionary()


def _names_clock(code: types.CodeType) -> bool:
    found = _JUDGED.get(code)
    if found is None:
        found = not _NAMES.isdisjoint(code.co_names) or any(
            _names_clock(const) for const in code.co_consts if isinstance(const, types.CodeType))
        _JUDGED[code] = found
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
        own = getattr(value, "__dict__", None)
        if isinstance(own, dict):
            for key in ("func", "__wrapped__"):
                if key in own:
                    yield from _codes(own[key], module, depth + 1)


def mentions_datetime_clock(modules: list[types.ModuleType]) -> bool:
    """Whether any code of the modules names ``now``, ``today`` or ``utcnow``."""
    for module in modules:
        name = module.__name__
        for value in list(vars(module).values()):
            if isinstance(value, types.ModuleType):
                continue
            try:
                if any(_names_clock(code) for code in _codes(value, name)):
                    return True
            except Exception:  # an odd object's attribute look-up failed: no code there
                continue
    return False


def profiler(frame: types.FrameType, event: str, arg: Any) -> None:
    """A profile function: notes the datetime clock reads made for a guarded step."""
    if event != "c_call":
        return
    owner: Any = getattr(arg, "__self__", None)
    # Identity first: most owners (a list, a dict) cannot even be hashed.
    if (owner is not datetime.datetime and owner is not datetime.date) or \
            (owner, getattr(arg, "__name__", None)) not in _CALLS:
        return
    watch = ACTIVE.get()
    if watch is None:
        return
    found = project_frame(watch.files, frame)
    if found is None:
        return
    judge(watch, "clock", f"{owner.__name__}.{arg.__name__}()", found)
