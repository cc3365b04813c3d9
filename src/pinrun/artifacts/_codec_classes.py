"""User classes in stored values: found among what is loaded, never imported.

A dataclass, pydantic model, Enum, Flag or NamedTuple is stored with a
``module:QualName`` reference to its class. Stored data may have been written
by someone else, so decoding treats that reference as a name to look up, not
an instruction: the class is rebuilt only when the module is already in
``sys.modules`` (the user's code, pinned code loaded by an explicit replay)
and the name leads, through plain ``__dict__`` lookups (no module
``__getattr__``, no descriptors), to a class of the declared kind. Only then
is anything called, and only what that kind needs: ``Enum.__getitem__``, a
Flag's value lookup, ``model_construct``, ``tuple.__new__``, and attribute
stores that bypass ``__init__``.

Anything else decodes to an :class:`UnloadedValue`: data that shows, diffs
and re-encodes to the very same bytes (so to the same digest), and runs
nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
from collections.abc import Callable
from typing import Any, Final

import orjson

__all__ = [
    "Dec",
    "Enc",
    "NoCodecError",
    "UnloadedValue",
    "class_ref",
    "decode_dataclass",
    "decode_enum",
    "decode_flag",
    "decode_namedtuple",
    "decode_pydantic",
    "encode_dataclass",
    "encode_enum",
    "encode_namedtuple",
    "encode_pydantic",
    "find_class",
]

Enc = Callable[[Any], Any]
Dec = Callable[[Any], Any]

class NoCodecError(Exception):
    """Raised by an encoder when no handler knows the value's type."""


def class_ref(cls: type) -> str:
    """``module:QualName`` for a class, refusing ones that cannot be found back."""
    qualname = cls.__qualname__
    if "<locals>" in qualname:
        raise NoCodecError(f"{cls.__module__}.{qualname} is defined inside a function")
    return f"{cls.__module__}:{qualname}"


def find_class(ref: object) -> type | None:
    """The loaded class a ``module:QualName`` reference names, or ``None``.

    Never imports: a module that is not in ``sys.modules`` means ``None``.
    Walks ``__dict__`` entries only, so no module ``__getattr__``, property or
    metaclass hook runs. Nothing is cached: a pinned replay may load other
    classes under the same names, and a cache would hand out stale ones.
    """
    if type(ref) is not str:
        return None
    module_name, sep, qualname = ref.partition(":")
    if not sep or not module_name or not qualname:
        return None
    obj: object = sys.modules.get(module_name)
    for part in qualname.split("."):
        namespace = _namespace(obj)
        if namespace is None:
            return None
        obj = namespace.get(part)
    return obj if isinstance(obj, type) else None


_MODULE_DICT: Final[Any] = vars(types.ModuleType)["__dict__"]
_TYPE_DICT: Final[Any] = vars(type)["__dict__"]


def _namespace(obj: object) -> Any:
    """A module's or class's own namespace, read through the base descriptors.

    ``obj.__dict__`` could be answered by an override on a module or class
    subclass; the descriptors of ``ModuleType`` and ``type`` themselves cannot.
    """
    if isinstance(obj, types.ModuleType):
        return _MODULE_DICT.__get__(obj)
    if isinstance(obj, type):
        return _TYPE_DICT.__get__(obj)
    return None


class UnloadedValue:
    """A stored value whose class is not loaded in this process, kept as data.

    ``tag`` is the stored kind (``$dataclass``, ``$enum``...), ``type_name``
    the class reference or registered codec name it names, and ``payload`` the
    stored structure exactly as read (tags included). It compares equal to
    another with the same stored form, hashes, prints, and encodes back to
    the same canonical bytes, but calls nothing: load the class (import your
    project's module, or replay with its pinned code) to get the real value.
    """

    __slots__ = ("_key", "payload", "tag", "type_name")

    def __init__(self, tag: str, payload: Any) -> None:
        self.tag = tag
        self.payload = payload
        head = payload[0] if type(payload) is list and payload else None
        self.type_name = head if type(head) is str else "?"
        self._key = orjson.dumps({tag: payload}, option=orjson.OPT_SORT_KEYS)

    @property
    def fields(self) -> Any:
        """The stored content after the class name (field map, items or member), as stored."""
        if type(self.payload) is list and len(self.payload) == 2:
            return self.payload[1]
        return self.payload

    def encoded(self) -> dict[str, Any]:
        """The tagged form it was stored as (what the encoder writes back)."""
        return {self.tag: self.payload}

    def __eq__(self, other: object) -> bool:
        return type(other) is UnloadedValue and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        content = orjson.dumps(self.fields, option=orjson.OPT_SORT_KEYS).decode()
        if len(content) > 120:
            content = content[:119] + "…"
        return f"<unloaded {self.tag[1:]} {self.type_name} {content}>"


def _class_or_none(ref: object, accepts: Callable[[type], bool]) -> type | None:
    cls = find_class(ref)
    if cls is None:
        return None
    try:
        return cls if accepts(cls) else None
    except TypeError:
        return None


# ------------------------------------------------------------------- enums


def encode_enum(value: enum.Enum, enc: Enc) -> Any:
    """An Enum member by name; a Flag by value (a combination has no single name)."""
    if isinstance(value, enum.Flag):
        return {"$flag": [class_ref(type(value)), enc(value.value)]}
    return {"$enum": [class_ref(type(value)), value.name]}


def decode_enum(payload: list[Any], dec: Dec) -> Any:
    """The member, if its Enum class is loaded and has a member of that name."""
    ref, name = payload
    cls = _class_or_none(ref, lambda c: issubclass(c, enum.Enum))
    if cls is None or type(name) is not str:
        return UnloadedValue("$enum", payload)
    member = cls.__members__.get(name)  # type: ignore[attr-defined]  # a mapping read: no _missing_ hook runs
    return member if member is not None else UnloadedValue("$enum", payload)


def decode_flag(payload: list[Any], dec: Dec) -> Any:
    """The flag value, if its Flag class is loaded and accepts that value."""
    ref, raw = payload
    cls = _class_or_none(ref, lambda c: issubclass(c, enum.Flag))
    value = dec(raw)
    if cls is None or type(value) is not int:
        return UnloadedValue("$flag", payload)
    try:
        return cls(value)
    except ValueError:
        return UnloadedValue("$flag", payload)


# ------------------------------------------------------------ dataclasses


def encode_dataclass(value: Any, enc: Enc) -> Any:
    """Every field by name, with the class reference."""
    fields = {f.name: enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return {"$dataclass": [class_ref(type(value)), fields]}


def decode_dataclass(payload: list[Any], dec: Dec) -> Any:
    """The instance, if its dataclass is loaded and the stored fields are its fields."""
    ref, stored = payload
    cls = _class_or_none(ref, dataclasses.is_dataclass)
    if cls is None or type(stored) is not dict:
        return UnloadedValue("$dataclass", payload)
    names = {f.name for f in dataclasses.fields(cls)}
    if not set(stored) <= names:
        return UnloadedValue("$dataclass", payload)
    # Bypass __init__ and __post_init__: restore the exact stored state, frozen or not.
    obj: Any = object.__new__(cls)
    for name, encoded in stored.items():
        object.__setattr__(obj, name, dec(encoded))
    return obj


# -------------------------------------------------------------- namedtuple


def encode_namedtuple(value: tuple[Any, ...], enc: Enc) -> Any:
    """The items in order, with the class reference."""
    return {"$namedtuple": [class_ref(type(value)), [enc(x) for x in value]]}


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and type(cls.__dict__.get("_fields")) is tuple


def decode_namedtuple(payload: list[Any], dec: Dec) -> Any:
    """The tuple, if its NamedTuple class is loaded and the item count fits."""
    ref, items = payload
    cls = _class_or_none(ref, _is_namedtuple)
    if cls is None or type(items) is not list or len(items) != len(cls.__dict__["_fields"]):
        return UnloadedValue("$namedtuple", payload)
    return tuple.__new__(cls, [dec(x) for x in items])


# ---------------------------------------------------------------- pydantic


def encode_pydantic(value: Any, enc: Enc) -> Any:
    """Declared fields and extras by name, with the class reference."""
    cls = type(value)
    fields = {name: enc(getattr(value, name)) for name in cls.model_fields}
    extra = value.__pydantic_extra__
    if extra:
        fields.update({name: enc(item) for name, item in extra.items()})
    return {"$pydantic": [class_ref(cls), fields]}


def _is_pydantic_model(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def decode_pydantic(payload: list[Any], dec: Dec) -> Any:
    """The model, if its class is loaded: ``model_construct`` (the values were valid)."""
    ref, stored = payload
    cls = _class_or_none(ref, _is_pydantic_model)
    if cls is None or type(stored) is not dict or not all(type(k) is str for k in stored):
        return UnloadedValue("$pydantic", payload)
    values = {name: dec(encoded) for name, encoded in stored.items()}
    return cls.model_construct(**values)  # type: ignore[attr-defined]
