"""Everything the project's modules hold, as one value that compares equal only when
nothing in them changed: the proof that loaded code may serve another replay.

Pinned replay keeps the code one replay loaded for the next replay only when
that replay left the code exactly as it found it (:mod:`pinrun.verifier.kept_code`).
The hidden-state watch (:mod:`pinrun.world.hidden_state`) cannot be that proof:
it names changes worth a hazard and skips, by design, what rarely matters. This
is an allow-list instead. :func:`code_state` walks every binding of the modules:
every global (dunders included), the dict of every class they define (nested
classes too), the defaults, keyword defaults, closure cells and attributes of
every function they define, and what all of those hold, down to the last item
(no size cut-off). It answers None as soon as it meets something it cannot
compare by its contents; then the code is never kept.

* **By contents:** numbers, strings, bytes, None; lists, tuples, dicts, sets,
  frozensets, deques and bytearrays of such values; objects of classes defined
  in Python, by their attributes and slots (an enum member, a dataclass, a
  settings object); ``functools.partial`` and bound methods by what they bind;
  a ``functools.lru_cache`` by its entries; a queue by its items, an event by
  whether it is set, a lock by whether it is held.
* **By identity** (nothing in them the project's code keeps): modules;
  functions, classes and builtins of other modules; immutable values of the
  standard library (patterns, paths, dates, decimals, uuids, time zones);
  loggers registered with :mod:`logging` (the same objects whether the code is
  imported again or not); pinrun's flows; executors and threads; closed files.
* **Anything else** (an object of a C type not named here: a socket, a numpy
  array, a generator, a thread-local) makes the answer None.

The walk reads attributes without running the project's code (``vars``, slot
descriptors, ``cache_info``), and stops at :data:`MOST_ITEMS` items (None).
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import datetime
import decimal
import fractions
import functools
import io
import logging
import pathlib
import queue
import re
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, cast

from pinrun.flows.module_objects import HEAP_TYPE
from pinrun.world.hidden_state import cache_entries

__all__ = ["MOST_ITEMS", "code_state"]

#: Items walked at most; a larger state is not compared (the code is not kept).
MOST_ITEMS: Final = 200_000
_SCALARS: Final = frozenset({str, int, bool, bytes, type(None)})
#: Immutable values of the standard library: compared by identity.
_IMMUTABLE: Final = (re.Pattern, pathlib.PurePath, datetime.date, datetime.time,
                     datetime.timedelta, datetime.tzinfo, decimal.Decimal, fractions.Fraction,
                     uuid.UUID, range, slice, types.CodeType, type(Ellipsis),
                     type(NotImplemented), types.GenericAlias, types.UnionType,
                     type(vars(collections.namedtuple("_Pair", "a"))["a"]))  # its fields
#: What abc keeps per class (its isinstance caches and registry): machinery, by identity.
_ABC_DATA: Final = type(getattr(abc.ABC, "_abc_impl", None))
#: Where the types of values that are forms, not state, come from: by identity.
_FORMS: Final = frozenset({"typing", "typing_extensions", "__future__"})
#: Module attributes the import system sets (the loader holds every pinned source).
_IMPORT_MACHINERY: Final = frozenset({"__builtins__", "__loader__", "__spec__"})
#: Concurrency machinery holding nothing of the project's between steps: by identity.
_MACHINERY: Final = (concurrent.futures.Executor, threading.Thread, type(threading.RLock()),
                     threading.Condition)
_BY_IDENTITY: Final = (types.ModuleType, _ABC_DATA, *_IMMUTABLE, *_MACHINERY)
_LRU: Final = type(functools.lru_cache(maxsize=None)(lambda: None))
_DESCRIPTORS: Final = (types.MemberDescriptorType, types.GetSetDescriptorType,
                       types.WrapperDescriptorType, types.MethodDescriptorType,
                       types.ClassMethodDescriptorType, types.BuiltinFunctionType)


class _OpaqueError(Exception):
    """A value the walk cannot compare by its contents (or too many items)."""


def code_state(modules: Sequence[types.ModuleType]) -> tuple[Any, ...] | None:
    """What ``modules`` hold, comparable with ``==``; None when any of it cannot be
    compared by its contents (see the module)."""
    walk = _Walk({module.__name__ for module in modules})
    try:
        return tuple((module.__name__, walk.namespace(vars(module)))
                     for module in sorted(modules, key=lambda module: module.__name__))
    except (_OpaqueError, RecursionError):
        return None


class _Walk:
    """One walk: the project's module names, what was seen (cycles), the items counted."""

    __slots__ = ("items", "own", "seen")

    def __init__(self, own: set[str]) -> None:
        self.own = own
        self.seen: set[int] = set()
        self.items = 0

    def pairs(self, items: Iterable[tuple[object, object]]) -> tuple[Any, ...]:
        """Walked key and value pairs. The pairs and their list are made for the walk:
        never marked as seen (their ids are reused by the next temporary ones)."""
        walk = self.value
        return tuple((walk(key), walk(item)) for key, item in items)

    def namespace(self, names: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple((name, _same(value) if name in _IMPORT_MACHINERY else self.value(value))
                     for name, value in list(names.items()))

    def value(self, value: object) -> object:
        self.items += 1
        if self.items > MOST_ITEMS:
            raise _OpaqueError
        kind = type(value)
        if kind in _SCALARS:
            return (kind, value)
        if kind is float:
            return (float, value.hex())  # type: ignore[attr-defined]
        if kind is complex:
            return (complex, repr(value))
        if isinstance(value, _BY_IDENTITY) or \
                (isinstance(value, _DESCRIPTORS) and not _bound(value)) or \
                kind.__module__.split(".", 1)[0] in _FORMS:
            return _same(value)
        # Containers and objects are walked once per walk (a cycle is not walked again).
        key = id(value)
        if key in self.seen:
            return ("seen", key, value)
        self.seen.add(key)
        return self._composite(kind, value)

    def _composite(self, kind: type, value: Any) -> object:
        walk = self.value
        if kind is list or kind is tuple:
            return (kind, tuple(map(walk, value)))
        if kind is dict:
            return (dict, self.pairs(list(value.items())))
        if kind is set or kind is frozenset:
            return (kind, frozenset(map(walk, value)))
        if kind is types.MappingProxyType:
            return (kind, self.pairs(value.items()))
        if kind is bytearray:
            return (bytearray, bytes(value))
        if kind is collections.deque:
            return (kind, value.maxlen, tuple(map(walk, value)))
        if isinstance(value, types.FunctionType):
            return self._function(value)
        if isinstance(value, type):
            return self._class(value)
        if isinstance(value, staticmethod | classmethod):
            return (kind, walk(value.__func__))
        if isinstance(value, property):
            return (kind, walk(value.fget), walk(value.fset), walk(value.fdel))
        if isinstance(value, types.MethodType):
            return (kind, walk(value.__func__), walk(value.__self__))
        if isinstance(value, types.BuiltinMethodType):  # bound to an object: that object
            return (kind, value.__name__, walk(value.__self__))
        if isinstance(value, functools.partial):
            return (kind, walk(value.func), walk(value.args), walk(value.keywords))
        if isinstance(value, _LRU):
            entries = cache_entries(value, value.cache_info().currsize)
            if entries is None:
                raise _OpaqueError
            return (kind, walk(value.__wrapped__), self.pairs(entries),
                    walk(getattr(value, "__dict__", None)))
        if isinstance(value, logging.Logger):
            if logging.Logger.manager.loggerDict.get(value.name) is value or \
                    value is logging.root:
                return _same(value)
            raise _OpaqueError
        if isinstance(value, queue.Queue):
            return (kind, _same(value), walk(value.queue))
        if isinstance(value, threading.Event):
            return (kind, _same(value), value.is_set())
        if isinstance(value, threading.Semaphore):
            return (kind, _same(value), value._value)
        if kind is type(threading.Lock()):
            return (kind, _same(value), value.locked())
        if isinstance(value, io.IOBase) and value.closed:  # a file closed: nothing to change
            return _same(value)
        if kind.__module__.split(".", 1)[0] == "pinrun":
            return self._pinrun(value)
        base = _plain_base(kind)
        if base is None:  # C state no attribute shows (a thread-local, an array, a socket)
            raise _OpaqueError
        # A class defined in Python: its attributes and slots, and what its base holds.
        held = None if base is object else (
            walk(tuple(tuple.__iter__(value))) if base is tuple else
            walk(frozenset(frozenset.__iter__(value))) if base is frozenset else
            (base, cast("Callable[[object], str]", base.__repr__)(value)))
        return (kind, _same(value), self._class_of(kind), self._attributes(value), held)

    def _function(self, func: types.FunctionType) -> object:
        if func.__module__ not in self.own:
            return _same(func)
        walk = self.value
        cells = []
        for cell in func.__closure__ or ():
            try:
                cells.append(walk(cell.cell_contents))
            except ValueError:  # an empty cell (a name assigned later)
                cells.append("empty")
        return ("function", _same(func), walk(func.__defaults__), walk(func.__kwdefaults__),
                tuple(cells), walk(func.__dict__))

    def _class(self, cls: type) -> object:
        if cls.__module__ not in self.own:
            return _same(cls)
        return ("class", _same(cls), self.namespace(vars(cls)))

    def _class_of(self, kind: type) -> object:
        return self.value(kind) if kind.__module__ in self.own else _same(kind)

    def _attributes(self, value: object) -> object:
        # Read through the object's own descriptor only: no __getattr__ of the project's.
        has_dict = any("__dict__" in vars(klass) for klass in type(value).__mro__[:-1])
        own = object.__getattribute__(value, "__dict__") if has_dict else None
        found: list[object] = [self.value(own) if type(own) is dict else None]
        for klass in type(value).__mro__:
            for name in vars(klass).get("__slots__", ()) if isinstance(
                    vars(klass).get("__slots__", ()), tuple | list) else ():
                slot = vars(klass).get(name)
                if isinstance(slot, types.MemberDescriptorType):
                    try:
                        found.append(self.value(slot.__get__(value, klass)))
                    except AttributeError:  # a slot not set
                        found.append("unset")
        return tuple(found)

    def _pinrun(self, value: object) -> object:
        """pinrun's own objects: a step by its function, anything else (a flow) as itself."""
        func = getattr(value, "func", None) if type(value).__name__ == "Step" else None
        return ("pinrun", _same(value), self.value(func) if func is not None else None)


#: Builtin bases whose value a Python class may extend (an IntEnum, a NamedTuple).
_BASES: Final = (object, int, str, float, bytes, tuple, frozenset)


def _plain_base(kind: type) -> type | None:
    """The builtin base of a class defined in Python whose instances hold nothing but
    that base's value, their attributes and their slots; None for any other class (a C
    type, even one made at run time, or a Python class over one: state no attribute
    shows). Told by the instance layout: the base's size, a pointer per slot, and the
    ``__dict__`` and ``__weakref__`` pointers."""
    base = next((klass for klass in kind.__mro__ if klass in _BASES), None)
    if base is None or not kind.__flags__ & HEAP_TYPE:
        return None
    slots = sum(isinstance(member, types.MemberDescriptorType)
                for klass in kind.__mro__ if klass is not base
                for member in vars(klass).values())
    # A dict kept before the object (Python 3.11's managed dict) takes no room in it.
    in_object = bool(kind.__dictoffset__) and not kind.__flags__ & _MANAGED_DICT
    size = base.__basicsize__ + _POINTER * (slots + in_object + bool(kind.__weakrefoffset__))
    return base if kind.__basicsize__ == size else None


_POINTER: Final = tuple.__itemsize__
#: Py_TPFLAGS_MANAGED_DICT (3.11+): the instance dict lives before the object.
_MANAGED_DICT: Final = 1 << 4


def _same(value: object) -> tuple[str, int, object]:
    """Compared by identity: the object is held, so its id is not another's meanwhile."""
    return ("is", id(value), value)


def _bound(value: object) -> bool:
    """Whether a builtin is a method bound to an object (``items.append``), not a module's
    function."""
    owner = getattr(value, "__self__", None)
    return owner is not None and not isinstance(owner, types.ModuleType | type)
