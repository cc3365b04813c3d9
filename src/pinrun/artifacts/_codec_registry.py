"""Codecs users register for their own types, owned by the module that defined the type.

A project registers a codec when its module is imported
(``pinrun.register_type(Money, "money", ...)``). A pinned replay imports that
module again from the pinned source: a new ``Money`` class registers the same
name. Both registrations are right, each for its own loaded code, so neither
may replace the other for good: while the pinned module is loaded, values
stored under ``"money"`` decode to the pinned ``Money``; once the replay is
over and the module on disk is back in ``sys.modules``, to that one.

So a registration belongs to the module object its class comes from (held
weakly: when the pinned module and its classes are gone, so is their
registration, and a worker replaying thousands of runs keeps none of them).
An instance always encodes with its own class's codec (looked up by the class
object, never by its name); a name decodes with the registration whose class
is the one loaded under its ``module:QualName`` now, else the latest one
still alive.
"""

from __future__ import annotations

import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from pinrun.artifacts._codec_classes import find_class

__all__ = ["TypeCodec", "codec_for_name", "codec_for_type", "register"]


class TypeCodec(NamedTuple):
    """How a user-registered type is stored: see :func:`pinrun.register_type`."""

    cls: type
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class _Entry:
    """One registration; weakly referenced from the lookups, strongly only by its owner."""

    __slots__ = ("__weakref__", "codec")
    codec: TypeCodec

    def __init__(self, codec: TypeCodec) -> None:
        self.codec = codec


def _ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


#: Owner module -> its registrations. Weak keys: a pinned module that left takes its
#: registrations with it (their codecs refer to the module's globals, not to it).
_BY_MODULE: weakref.WeakKeyDictionary[types.ModuleType, list[_Entry]] = \
    weakref.WeakKeyDictionary()
#: Registrations for classes of no loaded module (built in a function and renamed, or
#: registered by a module that is gone): kept for the process, as before owners.
_UNOWNED: list[_Entry] = []
#: Class -> its registration (weak both ways: the class and the entry may go).
_BY_TYPE: weakref.WeakKeyDictionary[type, weakref.ref[_Entry]] = weakref.WeakKeyDictionary()
#: Name -> its registrations, oldest first (dead ones are dropped when met).
_BY_NAME: dict[str, list[weakref.ref[_Entry]]] = {}
_LOCK = threading.Lock()


def _live(name: str) -> list[TypeCodec]:
    refs = _BY_NAME.get(name, [])
    entries = [entry for ref in refs if (entry := ref()) is not None]
    if len(entries) != len(refs):
        _BY_NAME[name] = [weakref.ref(entry) for entry in entries]
    return [entry.codec for entry in entries]


def register(codec: TypeCodec) -> None:
    """Register ``codec``; ``ValueError`` when its name belongs to another class.

    Another class means another ``module:QualName``: the same class loaded
    again (a pinned replay, ``importlib.reload``) takes the name for its own
    loaded code, beside the earlier one.
    """
    entry = _Entry(codec)
    owner = sys.modules.get(codec.cls.__module__)
    with _LOCK:
        for existing in _live(codec.name):
            if existing.cls is not codec.cls and _ref(existing.cls) != _ref(codec.cls):
                raise ValueError(f"a codec named {codec.name!r} is already registered for "
                                 f"{existing.cls.__qualname__}")
        held = _BY_MODULE.setdefault(owner, []) if isinstance(owner, types.ModuleType) \
            else _UNOWNED
        # Registered again as it was (a module run twice): the new entry stands for it.
        held[:] = [old for old in held if old.codec[:2] != codec[:2]]
        held.append(entry)
        _BY_TYPE[codec.cls] = weakref.ref(entry)
        _BY_NAME.setdefault(codec.name, []).append(weakref.ref(entry))


def codec_for_type(cls: type) -> TypeCodec | None:
    """The codec registered for ``cls`` or its nearest registered base, if any."""
    if not _BY_TYPE:
        return None
    for klass in cls.__mro__:
        ref = _BY_TYPE.get(klass)
        entry = ref() if ref is not None else None
        if entry is not None:
            return entry.codec
    return None


def codec_for_name(name: str) -> TypeCodec | None:
    """The codec to decode ``name`` with: the one whose class is loaded now, else the
    latest registered (a class registered without a findable name)."""
    with _LOCK:
        codecs = _live(name)
    if len(codecs) <= 1:  # nothing to choose between: no class to look up
        return codecs[0] if codecs else None
    loaded = [codec for codec in codecs if find_class(_ref(codec.cls)) is codec.cls]
    found = loaded or codecs
    return found[-1] if found else None
