"""Module-level objects, as a code fingerprint sees them.

A step's code reads module-level names: constants, caches, loggers, clients.
What such a name contributes to the fingerprint must depend on the code, never
on what a long-lived process did since it imported it. This module holds the
rules the fingerprint walker applies:

* :func:`ignored_object` and :func:`fixed_reference`: loggers (not part of
  what a step computes), compiled patterns, paths and time zones (by what
  identifies them);
* :func:`is_immutable`: the canonical values that cannot change in place,
  which count by value;
* :func:`state_snapshot`: bytes that change when a piece of module state
  changes, to see hidden state change between runs (a cache, an object's
  attributes, a random generator's state);
* :class:`ModuleDefinitions`: the statements of a module's source that bind a
  name at module level, which is how everything else counts: a cache by its
  definition (``SEEN: set[str] = set()``), never by what it holds now.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import contextvars
import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import logging
import pathlib
import random
import re
import sys
import types
import uuid
from collections.abc import Iterator
from typing import Any, Final

from pinrun.data_classes import data_class

__all__ = [
    "HEAP_TYPE",
    "ModuleDefinitions",
    "fixed_reference",
    "ignored_object",
    "is_immutable",
    "never_state",
    "own_attribute",
    "shared_definitions",
    "snapshot_view",
    "state_snapshot",
]

#: (and ``fractions.Fraction``, checked apart: :func:`_is_fraction`.)
_SCALARS: Final = (type(None), bool, int, float, complex, str, bytes, decimal.Decimal,
                   datetime.date, datetime.time, datetime.timedelta,
                   datetime.tzinfo, uuid.UUID, range, enum.Enum)
_LOGGING: Final = (logging.Logger, logging.LoggerAdapter, logging.PlaceHolder)
#: Past this many nested items a value counts as state: checking it would cost too much.
_MAX_ITEMS: Final = 10_000


def never_state(value: object) -> bool:
    """Whether ``value`` is an object that carries no state a step computes with: a flow
    or a step (pinrun's), a ``__future__`` feature, a typing form."""
    return type(value).__module__.split(".", 1)[0] in _NEVER_STATE


def ignored_object(value: object) -> bool:
    """Whether ``value`` is a logger: what it is configured to do is not what a step computes."""
    return isinstance(value, _LOGGING)


def fixed_reference(value: object, qualified: str) -> list[Any] | None:
    """The reference of an object identified by what it was built from, or None.

    A compiled pattern by its pattern and flags, a path by its type (named
    ``qualified``) and text, a time zone by its key.
    """
    if isinstance(value, re.Pattern):
        return ["pattern", value.pattern, value.flags]
    if isinstance(value, pathlib.PurePath):
        return ["path", qualified, str(value)]
    zoneinfo = sys.modules.get("zoneinfo")  # not imported: no value can be a ZoneInfo
    if zoneinfo is not None and isinstance(value, zoneinfo.ZoneInfo):
        return ["zone", value.key if value.key is not None else str(value)]
    return None


def is_immutable(value: object) -> bool:
    """Whether ``value`` and everything in it cannot change in place.

    Scalars, enum members, and tuples, frozensets, frozen dataclasses and
    frozen pydantic models made of such values. Anything else (a list, a dict,
    a plain dataclass, an array, an object of any other type) is state.
    """
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > _MAX_ITEMS:
            return False
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, tuple | frozenset):
            stack.extend(item)
        elif _is_fraction(item):
            continue
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            params = getattr(type(item), "__dataclass_params__", None)
            if params is None or not params.frozen:
                return False
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif _frozen_model(item):
            stack.extend(vars(item).values())  # a pydantic model keeps its fields there
        else:
            return False
    return True


def _is_fraction(value: object) -> bool:
    """Whether ``value`` is a ``fractions.Fraction``: only when :mod:`fractions` is loaded
    (no value can be one before), which a fresh worker need not import for the check."""
    fractions = sys.modules.get("fractions")
    return fractions is not None and isinstance(value, fractions.Fraction)


def _frozen_model(value: object) -> bool:
    config = getattr(type(value), "model_config", None)
    return isinstance(config, dict) and bool(config.get("frozen")) and \
        callable(getattr(value, "model_dump", None))


@data_class(frozen=True)
class ModuleDefinitions:
    """Where a module's source binds its module-level names, read once per fingerprint."""

    #: name -> the module-level statements that bind or fill it, in source order.
    statements: dict[str, list[ast.AST]]
    #: Names that some function of the module declares ``global`` (it rebinds them).
    rebound: frozenset[str]

    @classmethod
    def of(cls, namespace: dict[str, Any]) -> ModuleDefinitions | None:
        """The definitions of the module whose globals are ``namespace``; None without source.

        Inside :func:`shared_definitions`, each module's are read once for the block.
        """
        shared = _SHARED.get()
        if shared is None:
            return cls._read(namespace)
        known = shared.get(id(namespace))
        if known is None:
            # The namespace is kept with its answer, so its id cannot be reused meanwhile.
            known = shared[id(namespace)] = (namespace, cls._read(namespace))
        return known[1]

    @classmethod
    def _read(cls, namespace: dict[str, Any]) -> ModuleDefinitions | None:
        source = _module_source(namespace)
        if source is None:
            return None
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return None
        found: dict[str, list[ast.AST]] = {}
        for name, node in _bindings(tree):
            found.setdefault(name, []).append(node)
        for nodes in found.values():
            nodes.sort(key=lambda node: (getattr(node, "lineno", 0),
                                         getattr(node, "col_offset", 0)))
        rebound = frozenset(name for node in ast.walk(tree) if isinstance(node, ast.Global)
                            for name in node.names)
        return cls(found, rebound)


_SHARED: contextvars.ContextVar[
    dict[int, tuple[dict[str, Any], ModuleDefinitions | None]] | None] = \
    contextvars.ContextVar("pinrun_module_definitions", default=None)


@contextlib.contextmanager
def shared_definitions() -> Iterator[None]:
    """Within the block, :meth:`ModuleDefinitions.of` parses each module once, not once per
    fingerprint: pinning the steps of one flow reads a module they share once, so a flow
    of thousands of steps in one module is not quadratic."""
    token = _SHARED.set(_SHARED.get() if _SHARED.get() is not None else {})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _module_source(namespace: dict[str, Any]) -> str | None:
    """The module's text as the loaded code came from it (linecache first, like functions)."""
    name = namespace.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    if module is not None and vars(module) is namespace:
        try:
            return inspect.getsource(module)
        except (OSError, TypeError):
            pass
    get_source = getattr(namespace.get("__loader__"), "get_source", None)
    if callable(get_source) and isinstance(name, str):
        try:
            text = get_source(name)
        except Exception:  # a loader may raise anything (ImportError, OSError...)
            return None
        return text if isinstance(text, str) else None
    return None


_BLOCKS: Final = ("body", "orelse", "finalbody", "handlers")


def _bindings(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """(name, statement) for each module-level statement binding or filling a name.

    Blocks (if, try, with, for, while) are entered; def and class bodies are
    not, and a def or class statement itself is code, fingerprinted as such.
    A statement such as ``LIMITS["a"] = 1`` or ``HANDLERS.append(f)`` fills
    the name it starts from, so it is part of that name's definition.
    """
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(node, ast.Assign):
            for target in node.targets:
                yield from ((name, node) for name in _target_names(target))
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            yield from ((name, node) for name in _target_names(node.target))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    yield (alias.asname or alias.name.split(".")[0]), node
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            root = _root_name(node.value.func)
            if root is not None and isinstance(node.value.func, ast.Attribute):
                yield root, node  # CACHE.update(...), HANDLERS.append(...)
        elif isinstance(node, ast.For | ast.AsyncFor):
            header = ast.Assign(targets=[node.target], value=node.iter)
            yield from ((name, header) for name in _target_names(node.target))
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    yield from ((name, item) for name in _target_names(item.optional_vars))
        for field in _BLOCKS:
            stack.extend(getattr(node, field, None) or ())


def _target_names(target: ast.AST) -> Iterator[str]:
    """The names an assignment target binds or fills: ``a``, ``a, b``, ``a[k]``, ``a.x``."""
    if isinstance(target, ast.Tuple | ast.List):
        for item in target.elts:
            yield from _target_names(item)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)
    else:
        root = _root_name(target)
        if root is not None:
            yield root


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def state_snapshot(value: object) -> bytes | None:
    """Bytes that change when ``value``'s state changes, or None when pinrun cannot see it.

    Compared before and after a step in one process, never stored. A value the
    codec encodes is its encoding. Otherwise: a ``random.Random`` by its
    ``getstate()``, a numpy generator (``Generator``, ``RandomState``) by its
    state, a ``deque`` by its items, an object by its attributes (``__dict__``
    and ``__slots__``; one that cannot be encoded by its ``repr`` when its
    class is built in C, else by its type), and any other object built in C
    (``itertools.count()``) by its ``repr``. None only when nothing is left.
    A container of more than 10,000 items counts by its size: a worker filling a
    cache still shows, without encoding it all around every step.
    """
    found = snapshot_view(value)
    return found[1] if found is not None else None


def snapshot_view(value: object, view: int | None = None) -> tuple[int, bytes] | None:
    """:func:`state_snapshot` and which of its views gave it (an index), or None.

    ``view`` is the index an earlier call returned for the same object: that
    view is tried first, so a watcher that looks at an object again and again
    does not make the codec refuse its first views (and build an error message)
    every time. Another view is looked for only when that one fails now.
    """
    from pinrun.artifacts import codec  # late: the codec is heavier than these rules

    if never_state(value):
        return None  # a flow or a step, a __future__ feature, a typing form: no state
    if view == 0 and not _summary(value):  # the common case, a value the codec takes
        try:
            return 0, codec.encode(value)
        except Exception:  # UnsupportedValueError, or what a registered encoder raises
            pass
    try:
        big = _summary(value)
        if big is not None:
            return -1, codec.encode(big)
        if view is not None and view >= 0:
            for index, item in enumerate(_state_views(value)):
                if index == view:
                    try:
                        return index, codec.encode(item)
                    except Exception:  # its shape changed: look for another view below
                        break
        for index, item in enumerate(_state_views(value)):
            try:
                return index, codec.encode(item)
            except Exception:  # UnsupportedValueError, or what a registered encoder raises
                continue
    except Exception:  # a property, __getattr__ or __repr__ of the user's that raised
        return None
    return None


def _summary(value: object) -> object | None:
    """A large container (a worker's cache) by its size, which filling it changes: not
    encoded in full before and after every step."""
    if isinstance(value, _CONTAINERS) and len(value) > _MAX_ITEMS:
        return [f"{type(value).__qualname__} of", len(value)]
    return None


def _state_views(value: object) -> Iterator[object]:
    yield value
    cls = type(value)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(value, random.Random):
        yield [name, value.getstate()]
    if cls.__module__.startswith("numpy.random"):
        bit_generator = getattr(value, "bit_generator", None)  # a Generator
        state = getattr(bit_generator, "state", None) if bit_generator is not None else None
        get_state = getattr(value, "get_state", None)  # a legacy RandomState
        if state is None and callable(get_state):
            state = get_state(legacy=False)
        if state is not None:
            yield [name, state]
    if isinstance(value, collections.deque):
        yield [name, [_shallow(item) for item in value], value.maxlen]
    attributes = _attributes(value)
    if attributes is not None:
        # As they are (one encoding), else each made comparable on its own.
        yield [name, {key: _summary(item) or item for key, item in attributes.items()}]
        yield [name, {key: _shallow(item) for key, item in attributes.items()}]
    if _telling_repr(cls):
        shown = repr(value)
        # "<generator object f at 0x7f...>": an address says nothing of the state.
        if " at 0x" not in shown:
            yield [name, shown]


#: Where the types of objects that are never state a step carries come from.
_NEVER_STATE: Final = frozenset({"pinrun", "__future__", "typing", "typing_extensions"})
_CONTAINERS: Final = (list, dict, set, frozenset, tuple, bytearray, collections.deque)

#: Py_TPFLAGS_HEAPTYPE: set on every class a ``class`` statement makes, never on a C type.
#: ``type.__flags__`` bit of a class defined in Python (not in C).
HEAP_TYPE: Final = 1 << 9


def own_attribute(value: object, name: str) -> object | None:
    """The attribute ``name`` an object holds itself (None: it holds none), read without
    running any of its code (no property, no ``__getattr__``) and without asking for its
    ``__dict__``: CPython keeps a small object's attributes inline until ``__dict__`` is
    asked for, and every attribute read of it is slower after (a step, read by the engine
    at every replay). A descriptor of its class under that name (a property, a method)
    is not read; a plain class value is the object's own only when the object holds
    another (a dataclass field with a default)."""
    cls = type(value)
    defined = next((vars(klass)[name] for klass in cls.__mro__ if name in vars(klass)),
                   _NOT_DEFINED)
    if defined is not _NOT_DEFINED and hasattr(type(defined), "__get__") and \
            not isinstance(defined, types.FunctionType):
        return None  # a property, or another descriptor whose code would run
    try:  # an instance's own attribute comes before a function of its class
        found: object = object.__getattribute__(value, name)
    except Exception:  # none (AttributeError), or an odd object's own look-up failed
        return None
    if found is defined or (isinstance(found, types.MethodType) and found.__func__ is defined):
        return None  # the class's, not the object's own
    return found


_NOT_DEFINED: Final = object()


def _attributes(value: object) -> dict[str, object] | None:
    """An object's attributes (``__dict__`` and ``__slots__``).

    What a ``functools.cached_property`` stored is left out: computing it on
    first read changes nothing a step depends on.
    """
    if isinstance(value, type):
        return None
    cls = type(value)
    found: dict[str, object] = {}
    own = getattr(value, "__dict__", None)
    if isinstance(own, dict):
        found.update((key, item) for key, item in own.items()
                     if not isinstance(inspect.getattr_static(cls, key, None),
                                       functools.cached_property))
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if not isinstance(slot, str) or slot in ("__dict__", "__weakref__"):
                continue
            descriptor = vars(klass).get(slot)
            try:  # the slot's own descriptor: no property or __getattr__ runs
                found[slot] = descriptor.__get__(value, cls)  # type: ignore[union-attr]
            except Exception:  # unset (AttributeError), or not a slot descriptor
                continue
    return found or None


def _shallow(item: object) -> object:
    """``item`` if the codec takes it (a large container by its size), else its ``repr``
    (a class built in C: a lock says whether it is held) or its type's name (a project
    object's repr may be anything)."""
    from pinrun.artifacts import codec

    big = _summary(item)
    if big is not None:
        return big
    try:
        codec.encode(item)
    except Exception:  # UnsupportedValueError, or whatever a registered encoder raises
        cls = type(item)
        return repr(item) if _telling_repr(cls) else f"<{cls.__module__}.{cls.__qualname__}>"
    return item


def _telling_repr(cls: type) -> bool:
    """Whether ``repr`` shows an object's state: a class built in C with a repr of its
    own (``count(3)``, ``<unlocked _thread.lock ...>``); a project class's repr may be
    anything, and the default one says nothing."""
    return not cls.__flags__ & HEAP_TYPE and \
        any("__repr__" in vars(klass) for klass in cls.__mro__ if klass is not object)
