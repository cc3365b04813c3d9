"""pinrun's data classes: ``dataclasses.dataclass``, with comparison, hash and repr shared.

``dataclasses.dataclass`` writes each method it adds as source text and compiles
it (on Python 3.11, one ``exec`` per method): a frozen class costs about 4 M
instructions to create, and a verify worker's import creates some thirty of
them, paid again by every worker before its first replay. :func:`data_class`
lets ``dataclasses`` write what depends on the fields' defaults and on
freezing (``__init__``, a frozen class's ``__setattr__`` and ``__delattr__``),
and gives ``__eq__``, ``__hash__`` and ``__repr__`` as functions of the field
names, built without compiling anything. They answer as the generated ones do:

* ``__eq__``: ``NotImplemented`` unless ``other`` is of the very same class,
  else the tuples of the compared fields (``compare=True``), compared;
* ``__hash__``: of that tuple (the fields with ``hash=True``, or compared when
  ``hash`` is None), for a frozen class with ``eq``; ``None`` (unhashable) for
  one that is not frozen; the class's own when it defines one;
* ``__repr__``: ``Name(field=value, ...)`` of the ``repr=True`` fields, ``...``
  for an object met again while its repr is being made.

A method the class body defines is kept, as ``dataclasses`` keeps it. The
class's ``__dataclass_params__`` says ``eq`` and ``repr`` are False (they were
not generated); ``frozen`` is as given.
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["data_class"]

_T = TypeVar("_T")


@overload
def data_class(cls: type[_T], /) -> type[_T]: ...


@overload
def data_class(*, frozen: bool = False, eq: bool = True, repr: bool = True,
               slots: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def data_class(cls: type[_T] | None = None, /, *, frozen: bool = False, eq: bool = True,
               repr: bool = True, slots: bool = False
               ) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """``dataclasses.dataclass(cls, frozen=..., eq=..., repr=..., slots=...)``, with
    ``__eq__``, ``__hash__`` and ``__repr__`` shared (see the module)."""

    def wrap(cls: type[_T]) -> type[_T]:
        return _process(cls, frozen=frozen, eq=eq, repr=repr, slots=slots)

    return wrap if cls is None else wrap(cls)


def _process(cls: type[_T], *, frozen: bool, eq: bool, repr: bool, slots: bool
             ) -> type[_T]:
    own = cls.__dict__
    # As dataclasses decides: a __hash__ the body sets is the class's own, unless it is
    # the None Python sets for a body that defines __eq__ alone.
    class_hash = own.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (class_hash is dataclasses.MISSING or
                         (class_hash is None and "__eq__" in own))
    wants_repr, wants_eq = repr and "__repr__" not in own, eq and "__eq__" not in own
    made = dataclasses.dataclass(cls, frozen=frozen, eq=False, repr=False, slots=slots)
    fields = dataclasses.fields(made)  # type: ignore[arg-type]  # made one just now
    if wants_repr:
        _add(made, "__repr__", _repr([field.name for field in fields if field.repr]))
    if wants_eq:
        _add(made, "__eq__", _eq([field.name for field in fields if field.compare]))
    if eq and not explicit_hash:
        hashed = [field.name for field in fields
                  if (field.compare if field.hash is None else field.hash)]
        if frozen:
            _add(made, "__hash__", _hash(hashed))
        else:
            made.__hash__ = None  # type: ignore[assignment]  # mutable and compared
    return made


def _add(cls: type, name: str, function: Callable[..., Any]) -> None:
    function.__name__, function.__qualname__ = name, f"{cls.__qualname__}.{name}"
    setattr(cls, name, function)


def _values(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of an object's attributes ``names`` (a tuple even of one, or none: the
    generated methods compare and hash tuples, which compare items that are the same
    object as equal)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        one = operator.attrgetter(names[0])
        return lambda value: (one(value),)
    return lambda value: ()


def _eq(names: Sequence[str]) -> Callable[[Any, Any], Any]:
    values = _values(names)

    def equal(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return equal


def _hash(names: Sequence[str]) -> Callable[[Any], int]:
    values = _values(names)

    def hashed(self: Any) -> int:
        return hash(values(self))

    return hashed


def _repr(names: Sequence[str]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def shown(self: Any) -> str:
        values = ", ".join([f"{name}={getattr(self, name)!r}" for name in names])
        return f"{self.__class__.__qualname__}({values})"

    return shown
