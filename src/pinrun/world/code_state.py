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
import __future__

import abc
import collections
import ctypes
import datetime
import decimal
import fractions
import functools
import io
import logging
import os
import pathlib
import queue
import random
import re
import struct
import sys
import threading
import types
import typing
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Final, cast

from pinrun.flows.flow import Flow
from pinrun.flows.module_objects import HEAP_TYPE
from pinrun.flows.step import Step
from pinrun.world.hidden_state import cache_entries
from pinrun.world.numpy_state import raw_numpy_state

# Python raises an audit event for every id() and every read of a function's __code__,
# __defaults__ and __kwdefaults__, and the world's audit hook is called for each (a
# thousand instructions or more, even behind its C gate): the walk makes dozens. The C
# speedups read the same without the events; without a compiler, the builtins.
_address: Callable[[object], int] = id
_function_parts: Callable[[types.FunctionType], tuple[Any, ...]] | None = None


def _string_at(value: object, offset: int, size: int) -> bytes:
    return ctypes.string_at(id(value) + offset, size)


#: A copy of an object's own memory (the random generator's state words).
_object_bytes: Callable[[object, int, int], bytes] = _string_at
try:
    from pinrun.world._speedups import address as _compiled_address
    from pinrun.world._speedups import function_parts as _compiled_function_parts
    from pinrun.world._speedups import object_bytes as _compiled_object_bytes
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    pass
else:
    _address, _function_parts = _compiled_address, _compiled_function_parts
    _object_bytes = _compiled_object_bytes

__all__ = ["MOST_DEPTH", "MOST_ITEMS", "code_state", "process_state", "threads_alive"]

#: Items walked at most; a larger state is not compared (the code is not kept).
MOST_ITEMS: Final = 200_000
#: Nesting walked at most (deeper is not compared): well within any recursion limit.
MOST_DEPTH: Final = 150
_SCALARS: Final = frozenset({str, int, bool, bytes, type(None)})
#: Immutable values of the standard library, by their exact type: compared by identity.
_IMMUTABLE: Final = frozenset({
    re.Pattern, pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath,
    pathlib.WindowsPath, datetime.date, datetime.datetime, datetime.time,
    datetime.timedelta, datetime.timezone, decimal.Decimal, fractions.Fraction, uuid.UUID,
    range, slice, types.CodeType, type(Ellipsis), type(NotImplemented),
    type(vars(collections.namedtuple("_Pair", "a"))["a"]),  # a named tuple's field
    types.MemberDescriptorType, types.GetSetDescriptorType, types.WrapperDescriptorType,
    types.MethodDescriptorType, types.ClassMethodDescriptorType, type(vars(abc.ABC)["_abc_impl"]),
    type(__future__.annotations),
})
#: Forms, not state (typing's own classes, read from its namespace): by identity.
_FORMS: Final = frozenset(
    {item for item in vars(typing).values()
     if isinstance(item, type) and item.__module__ == "typing"} |
    {types.GenericAlias, types.UnionType, type(typing.Any)})
#: Module attributes the import system sets (the loader holds every pinned source).
_IMPORT_MACHINERY: Final = frozenset({"__builtins__", "__loader__", "__spec__"})
_LRU: Final = type(functools.lru_cache(maxsize=None)(lambda: None))
_LOCK: Final = type(threading.Lock())
_RLOCK: Final = type(threading.RLock())
_QUEUES: Final = frozenset({queue.Queue, queue.LifoQueue, queue.PriorityQueue})
_CLOSABLE: Final = frozenset({io.TextIOWrapper, io.BufferedReader, io.BufferedWriter,
                              io.BufferedRandom, io.FileIO, io.BytesIO, io.StringIO})
#: What abc keeps of a class: its registry first (``_abc._get_dump``).
_ABC_DUMP: Final = vars(abc)["_get_dump"]


class _OpaqueError(Exception):
    """A value the walk cannot compare by its contents (or too many items, or too deep)."""


def code_state(modules: Sequence[types.ModuleType]) -> tuple[Any, ...] | None:
    """What ``modules`` hold, comparable with ``==``; None when any of it cannot be
    compared by its contents (see the module). Never raises."""
    walk = _Walk(modules)
    try:
        state = tuple((module.__name__, walk.namespace(vars(module), 0))
                      for module in sorted(modules, key=lambda module: module.__name__))
    except Exception:  # _OpaqueError, RecursionError, or what an object of the project's raised
        return None
    # The objects compared by identity stay alive with the answer: no id is another's.
    return (state, tuple(walk.held))


def process_state() -> tuple[Any, ...]:
    """What an import may set for the whole process, and a step change after it: the
    global random generators, the loggers, the decimal context, the environment
    variables, the warning filters, ``sys.path``, the working folder and the recursion
    limit. Importing the code again would set them again; kept code does not."""
    loggers = logging.Logger.manager.loggerDict
    numpy_random = sys.modules.get("numpy.random.mtrand")
    generator = getattr(numpy_random, "_rand", None)
    context = decimal.getcontext()
    return (
        _random_state(vars(random)["_inst"]),
        None if generator is None else _numpy_state(generator),
        _logger_state(logging.root),
        _loggers_state(list(loggers.values())),
        # Every setting, flag and trap (its flags are a slow Mapping): what pickling keeps,
        # made in C (a third of repr's instructions); repr for a Context of another kind.
        context.__reduce__()[1] if type(context) is decimal.Context else repr(context),
        _environment(),
        tuple(warnings.filters),
        tuple(sys.path), _cwd(), sys.getrecursionlimit())


def threads_alive() -> tuple[object, ...]:
    """The threads alive, comparable with ``==`` by identity (held, so that no id is
    another's): one a step started may still write after the replay."""
    threads = sorted(threading.enumerate(), key=_address)
    return (tuple(map(_address, threads)), tuple(threads))


def _random_state(generator: random.Random) -> object:
    """A Mersenne Twister's state, comparable with ``==``: its words read as they are
    (2.5 KB, where ``getstate`` makes 625 ints: most of what :func:`process_state`
    cost), and the gauss value it keeps; ``getstate`` where that read is not proven."""
    if _RAW_STATE is None or type(generator) is not random.Random:
        return random.Random.getstate(generator)
    return (_object_bytes(generator, _RAW_STATE[0], _RAW_STATE[1]),
            vars(generator).get("gauss_next"))


def _raw_state_place() -> tuple[int, int] | None:
    """Where a ``random.Random``'s state words lie in the object, checked against
    ``getstate`` on generators made here (before and after a draw); None when this
    Python keeps them otherwise (then ``getstate`` is used)."""
    try:
        offset = object.__basicsize__  # the C struct: the object's head, its index, its words
        for seed in (12345, 67890):
            probe = random.Random(seed)
            for _ in range(2):
                _, internal, _ = probe.getstate()
                *words, index = internal
                expected = struct.pack(f"=i{len(words)}I", index, *words)
                if _object_bytes(probe, offset, len(expected)) != expected:
                    return None
                probe.random()
        return offset, len(expected)
    except Exception:  # another layout, another word size (or past the object): getstate
        return None


_RAW_STATE: Final = _raw_state_place()


def _environment() -> object:
    """The environment variables, as the process holds them (not decoded one by one)."""
    # Guards up: the real mapping, read unnoted (GuardedEnviron.unguarded).
    environ = getattr(os.environ, "unguarded", os.environ)
    held = getattr(environ, "_data", None)  # CPython's os._Environ keeps the raw bytes
    return held.copy() if type(held) is dict else dict(environ)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the folder was deleted
        return None


def _loggers_state(loggers: list[object]) -> list[tuple[object, ...]]:
    """:func:`_logger_state` of each logger among ``loggers`` (placeholders are skipped).

    Made at every pinned replay for every logger of the process, and a service has
    hundreds (one per module of each library), most with no handler and no filter:
    those two are listed only when there are some (a ``map`` over an empty list cost
    ~0.3 us), in one comprehension (~0.15 us a logger, against 0.8 before)."""
    address, kind = _address, logging.Logger
    return [(logger.name, logger.level, logger.propagate, logger.disabled,
             tuple(map(address, handlers)) if (handlers := logger.handlers) else (),
             tuple(map(address, filters)) if (filters := logger.filters) else ())
            for logger in loggers if isinstance(logger, kind)]


def _logger_state(logger: logging.Logger) -> tuple[object, ...]:
    return (logger.name, logger.level, logger.propagate, logger.disabled,
            tuple(map(_address, logger.handlers)), tuple(map(_address, logger.filters)))


def _numpy_state(generator: object) -> object:
    raw = raw_numpy_state(generator)  # its memory, where that read is proven (~3 us)
    if raw is not None:
        return raw
    try:
        state = cast("Any", generator).get_state()
        return tuple(item.tobytes() if hasattr(item, "tobytes") else item for item in state)
    except Exception:  # not the RandomState this expects: compared as never equal
        return object()


class _Methods:
    """The walk's kinds other than the common ones: the part of a walk that stays in
    Python (see :class:`_PyWalk` for the rest, and ``_walk.c`` for it in C)."""

    __slots__ = ()
    #: Objects compared by identity (held, so that their ids stay theirs).
    held: list[object]
    #: Per object walked, the order it was first met in (a cycle is walked once).
    seen: dict[int, int]
    #: The namespaces of the project's modules: a function whose globals are one of
    #: them is the project's, whatever its ``__module__`` says.
    own: set[int]
    items: int

    def __init__(self, modules: Sequence[types.ModuleType]) -> None:
        raise NotImplementedError

    def same(self, value: object) -> tuple[str, int]:
        raise NotImplementedError

    def pairs(self, items: Iterable[tuple[object, object]], depth: int) -> tuple[Any, ...]:
        raise NotImplementedError

    def namespace(self, names: Mapping[str, Any], depth: int) -> tuple[Any, ...]:
        raise NotImplementedError

    def value(self, value: object, depth: int) -> object:
        raise NotImplementedError

    def _composite(self, kind: type, value: Any, depth: int) -> object:
        if kind is types.FunctionType:  # what modules hold most
            return self._function(value, depth)
        walk = self.value
        if kind is list or kind is tuple or kind is set or kind is frozenset:
            # A set in its iteration order: the order is what a step sees.
            return (kind, tuple(walk(item, depth) for item in value))
        if kind is dict or kind is collections.OrderedDict or kind is collections.Counter or \
                kind is types.MappingProxyType:
            return (kind, self.pairs(list(value.items()), depth))
        if kind is collections.defaultdict:
            return (kind, walk(value.default_factory, depth),
                    self.pairs(list(value.items()), depth))
        if kind is bytearray:
            return (bytearray, bytes(value))
        if kind is collections.deque:
            return (kind, value.maxlen, tuple(walk(item, depth) for item in value))
        if issubclass(kind, type):
            return self._class(value, depth)
        if issubclass(kind, types.ModuleType):
            if _address(vars(value)) in self.own:
                return ("module", value.__name__)
            if sys.modules.get(value.__name__) is value:
                return self.same(value)
            return (kind, self.namespace(vars(value), depth))  # made at run time
        if kind is staticmethod or kind is classmethod:
            return (kind, walk(value.__func__, depth))
        if kind is property:
            return (kind, walk(value.fget, depth), walk(value.fset, depth),
                    walk(value.fdel, depth))
        if kind is types.MethodType:
            return (kind, walk(value.__func__, depth), walk(value.__self__, depth))
        if kind is types.BuiltinFunctionType:
            owner = value.__self__
            if owner is None or isinstance(owner, types.ModuleType | type):
                return self.same(value)
            return (kind, value.__name__, walk(owner, depth))  # bound: what it is bound to
        if kind is functools.partial:
            return (kind, walk(value.func, depth), walk(value.args, depth),
                    walk(value.keywords, depth))
        if kind is _LRU:
            entries = cache_entries(value, value.cache_info().currsize)
            if entries is None:
                raise _OpaqueError
            return (kind, walk(value.__wrapped__, depth), self.pairs(entries, depth),
                    walk(getattr(value, "__dict__", None), depth))
        if (kind is logging.Logger or kind is logging.RootLogger) and (
                logging.Logger.manager.loggerDict.get(value.name) is value or
                value is logging.root):
            return ("logger", self.same(value), _logger_state(cast("logging.Logger", value)))
        if kind in _QUEUES:
            return (kind, self.same(value), value.unfinished_tasks,
                    tuple(walk(item, depth) for item in value.queue))
        if kind is threading.Event:
            return (kind, self.same(value), value.is_set())
        if kind is threading.Semaphore or kind is threading.BoundedSemaphore:
            return (kind, self.same(value), value._value)
        if kind is _LOCK:
            return (kind, self.same(value), value.locked())
        if kind is _RLOCK:
            return (kind, self.same(value), value._is_owned())
        if kind is threading.Condition:
            return (kind, self.same(value), walk(value._lock, depth), len(value._waiters))
        if kind is ThreadPoolExecutor:
            if value._threads or value._shutdown:  # live workers keep their own state
                raise _OpaqueError
            return (kind, self.same(value))
        if kind in _CLOSABLE and value.closed:  # a file closed: nothing left to change
            return self.same(value)
        if issubclass(kind, random.Random):
            return (kind, self.same(value), random.Random.getstate(value),
                    self._attributes(value, depth))
        if kind is Step:
            return (kind, self.same(value), walk(value.func, depth))
        if kind is Flow:
            return self.same(value)
        if kind is ProcessPoolExecutor or issubclass(kind, threading.Thread):
            raise _OpaqueError
        base = _plain_base(kind)
        if base is None:  # C state no attribute shows (a thread-local, an array, a socket)
            raise _OpaqueError
        # A class defined in Python: its attributes and slots, and what its base holds.
        held = None if base is object else (
            tuple(walk(item, depth) for item in cast("Any", base).__iter__(value))
            if base is tuple or base is frozenset else
            (base, cast("Callable[[object], str]", base.__repr__)(value)))
        return (kind, self.same(value), walk(kind, depth), self._attributes(value, depth),
                held)

    def _function(self, func: types.FunctionType, depth: int) -> object:
        globals_, code, defaults, keywords, closure, attributes = (
            _function_parts(func) if _function_parts is not None
            else _python_function_parts(func))
        if _address(globals_) not in self.own:
            home = sys.modules.get(str(globals_.get("__name__")))
            if home is not None and vars(home) is globals_:
                return self.same(func)  # another module's function: not the project's
        walk = self.value
        cells = []
        for cell in closure or ():
            try:
                cells.append(walk(cell.cell_contents, depth))
            except ValueError:  # an empty cell (a name assigned later)
                cells.append("empty")
        # Most functions have no defaults and no attributes: nothing to walk there.
        return ("function", self.same(func), self.same(code), func.__name__,
                None if defaults is None else walk(defaults, depth),
                None if keywords is None else walk(keywords, depth),
                tuple(cells), walk(attributes, depth) if attributes else None)

    def _class(self, cls: type, depth: int) -> object:
        home = sys.modules.get(cls.__module__) if type(cls.__module__) is str else None
        if home is not None and _address(vars(home)) not in self.own and \
                _resolve(home, cls.__qualname__) is cls:
            return self.same(cls)  # another module's class, found there under its name
        registry: object = None
        if isinstance(cls, abc.ABCMeta):
            registered = _ABC_DUMP(cls)[0]
            registry = tuple(sorted(_address(ref()) for ref in registered))
        return ("class", self.same(cls), self.same(type(cls)),
                tuple(map(self.same, cls.__bases__)), cls.__name__, registry,
                tuple(map(self.same, type.__subclasses__(cls))),
                self.namespace(vars(cls), depth))

    def _attributes(self, value: object, depth: int) -> object:
        # Read through the object's own descriptors only: no __getattr__ of the project's.
        mro = type(value).__mro__
        has_dict = any("__dict__" in vars(klass) for klass in mro[:-1])
        own = object.__getattribute__(value, "__dict__") if has_dict else None
        found: list[object] = [self.value(own, depth) if type(own) is dict else None]
        for klass in mro:
            for member in list(vars(klass).values()):
                if type(member) is types.MemberDescriptorType:
                    try:
                        found.append(self.value(member.__get__(value, klass), depth))
                    except AttributeError:  # a slot not set
                        found.append("unset")
        return tuple(found)


class _PyWalk(_Methods):
    """One walk in Python: the project's modules, what was seen (cycles), the objects
    held. ``_walk.c``'s Walker does the same, case by case (tests hold them equal)."""

    __slots__ = ("held", "items", "own", "seen")

    def __init__(self, modules: Sequence[types.ModuleType]) -> None:
        self.own = _own(modules)
        self.seen = {}
        self.held = []
        self.items = 0

    def same(self, value: object) -> tuple[str, int]:
        self.held.append(value)
        return ("is", _address(value))

    def pairs(self, items: Iterable[tuple[object, object]], depth: int) -> tuple[Any, ...]:
        """Walked key and value pairs (made for the walk: never marked as seen)."""
        walk = self.value
        return tuple((walk(key, depth), walk(item, depth)) for key, item in items)

    def namespace(self, names: Mapping[str, Any], depth: int) -> tuple[Any, ...]:
        walk = self.value
        found: list[tuple[Any, ...]] = []
        for name, value in list(names.items()):
            kind = type(value)
            if kind is str or kind is int or kind is bool:  # most globals: walked in line
                self.items += 1
                found.append((name, kind, value))
            else:
                found.append((name, self.same(value) if name in _IMPORT_MACHINERY
                              else walk(value, depth)))
        return tuple(found)

    def value(self, value: object, depth: int) -> object:
        self.items += 1
        if self.items > MOST_ITEMS or depth > MOST_DEPTH:
            raise _OpaqueError
        kind = type(value)
        if kind in _SCALARS:
            return (kind, value)
        if kind is float:
            return (float, cast("float", value).hex())
        if kind is complex:
            return (complex, repr(value))
        if kind in _IMMUTABLE or kind in _FORMS:
            return self.same(value)
        key = _address(value)
        order = self.seen.get(key)
        if order is not None:  # met before in this walk: a cycle, or shared
            return ("seen", order)
        self.seen[key] = len(self.seen)
        self.held.append(value)
        return self._composite(kind, value, depth + 1)


def _own(modules: Sequence[types.ModuleType]) -> set[int]:
    return {_address(vars(module)) for module in modules}


#: The walk code_state makes: its common cases in C (``_walk.c``, a tenth of the
#: instructions), or all in Python without a compiler.
_Walk: type[_Methods] = _PyWalk
try:
    from pinrun.world._speedups import Walker, configure_walk
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    pass
else:
    configure_walk(_IMMUTABLE | _FORMS, _IMPORT_MACHINERY, Flow, _OpaqueError, MOST_ITEMS,
                   MOST_DEPTH)

    class _CWalk(Walker, _Methods):
        """The walk with its common cases in C (``Walker``, which starts it empty); the
        rest in :class:`_Methods`."""

        __slots__ = ()

        def __init__(self, modules: Sequence[types.ModuleType]) -> None:
            self.own.update(_own(modules))  # (read-only members: filled, not replaced)

    _Walk = _CWalk


def _python_function_parts(func: types.FunctionType) -> tuple[Any, ...]:
    return (func.__globals__, func.__code__, func.__defaults__, func.__kwdefaults__,
            func.__closure__, func.__dict__)


def _resolve(module: types.ModuleType, qualname: str) -> object:
    found: object = module
    for part in qualname.split("."):
        found = vars(found).get(part) if hasattr(found, "__dict__") else None
        if found is None:
            return None
    return found


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
    slots = sum(type(member) is types.MemberDescriptorType
                for klass in kind.__mro__ if klass is not base
                for member in vars(klass).values())
    # A dict kept before the object (Python 3.11's managed dict) takes no room in it.
    in_object = bool(kind.__dictoffset__) and not kind.__flags__ & _MANAGED_DICT
    size = base.__basicsize__ + _POINTER * (slots + in_object + bool(kind.__weakrefoffset__))
    return base if kind.__basicsize__ == size else None


_POINTER: Final = tuple.__itemsize__
#: Py_TPFLAGS_MANAGED_DICT (3.11+): the instance dict lives before the object.
_MANAGED_DICT: Final = 1 << 4
