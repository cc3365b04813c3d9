"""pinrun's data classes: ``dataclasses.dataclass``, with comparison, hash and repr shared.

``dataclasses.dataclass`` writes each method it adds as source text and compiles
it (on Python 3.11, one ``exec`` per method): a frozen class costs about 4 M
instructions to create, and a verify worker's import creates some thirty of
them, paid again by every worker before its first replay. :func:`data_class`
lets ``dataclasses`` write what depends on the fields' defaults (``__init__``),
and gives ``__eq__``, ``__hash__`` and ``__repr__`` as functions of the field
names, built without compiling anything. They answer as the generated ones do:

* ``__eq__``: ``NotImplemented`` unless ``other`` is of the very same class,
  else the tuples of the compared fields (``compare=True``), compared;
* ``__hash__``: of that tuple (the fields with ``hash=True``, or compared when
  ``hash`` is None), for a frozen class with ``eq``; ``None`` (unhashable) for
  one that is not frozen; the class's own when it defines one;
* ``__repr__``: ``Name(field=value, ...)`` of the ``repr=True`` fields, ``...``
  for an object met again while its repr is being made.

A frozen class's ``__setattr__`` and ``__delattr__`` are closures over the class
and its field names too (another ~1 M instructions a class, compiled twice):
``dataclasses`` is handed them for the call that makes the class, through its
private maker of those two methods, where that maker is the one these are
written to (Python 3.11 and 3.12: ``(cls, fields, globals)``, returning both);
anywhere else it compiles its own. They answer as the generated ones do: a
field, or any name on an object of the very class, raises
``FrozenInstanceError`` (``cannot assign to field 'x'``, ``cannot delete field
'x'``); any other name goes on to the parent class's method.

A method the class body defines is kept, as ``dataclasses`` keeps it. The
class's ``__dataclass_params__`` says ``eq`` and ``repr`` are False (they were
not generated); ``frozen`` is as given.

``__init__`` is what ``dataclasses`` writes (it depends on the fields' defaults,
factories and ``__post_init__``), but its text need not be compiled at each
import: :mod:`pinrun._data_class_code` holds the text of every pinrun data
class's ``__init__``, verbatim, compiled with pinrun (written by ``python -m
tests.data_class_code``; a test says when one is missing). dataclasses' own
maker of a method from its text is swapped for the call (3.11's signature only,
as above): a text found there is run from that compiled code as ``dataclasses``
runs what it compiles (the class's module's globals, the same arguments), and
any other is compiled as always.
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, dataclass_transform, overload

from pinrun import _data_class_code

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
    with _methods_shared(frozen):
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


# ------------------------------------------------- a frozen class's __setattr__, __delattr__

#: The name of dataclasses' private maker of a frozen class's two methods.
_FROZEN_MAKER = "_frozen_get_del_attr"


def _replaceable_maker() -> bool:
    """Whether dataclasses' maker is the one :func:`_frozen_methods` stands in for: a
    function of ``(cls, fields, globals)`` returning both methods (3.11, 3.12; 3.13 on
    takes a builder instead, and keeps its own)."""
    maker = getattr(dataclasses, _FROZEN_MAKER, None)
    if not isinstance(maker, types.FunctionType):
        return False
    code = maker.__code__
    return code.co_varnames[:code.co_argcount] == ("cls", "fields", "globals")


_SHARED_FROZEN = _replaceable_maker()
#: Held while dataclasses is handed the shared makers (a class made by another thread
#: meanwhile gets the same answers, made by the same makers).
_MAKER_LOCK = threading.RLock()


@contextmanager
def _methods_shared(frozen: bool) -> Iterator[None]:
    """Inside the block, dataclasses makes a frozen class's ``__setattr__`` and
    ``__delattr__`` with :func:`_frozen_methods`, and takes an ``__init__`` whose text
    pinrun's build compiled already from :func:`_made_function`, where it can (else as
    it always does)."""
    swaps = ([(_FROZEN_MAKER, _frozen_methods)] if frozen and _SHARED_FROZEN else []) + \
        ([(_FUNCTION_MAKER, _made_function)] if _SHARED_CODE else [])
    if not swaps:
        yield
        return
    with _MAKER_LOCK:
        own = [(name, getattr(dataclasses, name)) for name, _ in swaps]
        for name, maker in swaps:
            setattr(dataclasses, name, maker)
        try:
            yield
        finally:
            for name, maker in own:
                setattr(dataclasses, name, maker)


def _frozen_methods(cls: type[Any], fields: Sequence[dataclasses.Field[Any]],
                    globals: dict[str, Any]) -> tuple[Callable[..., None], Callable[..., None]]:
    """A frozen class's ``__setattr__`` and ``__delattr__``, as dataclasses' maker writes
    them (its arguments; ``globals`` is the class's module's, unused)."""
    names = tuple(field.name for field in fields)
    frozen_error = dataclasses.FrozenInstanceError

    def set_attribute(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise frozen_error(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def delete_attribute(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise frozen_error(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    for function, name in ((set_attribute, "__setattr__"), (delete_attribute, "__delattr__")):
        # dataclasses sets the qualified name; the module is the class's, as a generated
        # method's (made in the class's module's globals) is.
        function.__name__, function.__module__ = name, cls.__module__
    return set_attribute, delete_attribute


# ------------------------------------------------------------ __init__, compiled ahead

#: The name of dataclasses' private maker of a method from its text.
_FUNCTION_MAKER = "_create_fn"


def _replaceable_function_maker() -> Callable[..., Any] | None:
    """dataclasses' maker of a method from its text, when it is the one
    :func:`_made_function` mirrors (3.11: ``(name, args, body, *, globals, locals,
    return_type)``); None on versions that make methods otherwise."""
    maker = getattr(dataclasses, _FUNCTION_MAKER, None)
    if not isinstance(maker, types.FunctionType):
        return None
    code = maker.__code__
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    if names != ("name", "args", "body", "globals", "locals", "return_type"):
        return None
    return maker


_OWN_FUNCTION_MAKER = _replaceable_function_maker()
_SHARED_CODE = _OWN_FUNCTION_MAKER is not None
#: When a list: the text of every ``__init__`` :func:`_made_function` was asked for (what
#: ``tests/data_class_code.py`` writes ``pinrun._data_class_code`` from).
_SEEN: list[str] | None = None


def _made_function(name: str, args: list[str], body: list[str], *,
                   globals: dict[str, Any] | None = None,
                   locals: dict[str, Any] | None = None,
                   return_type: Any = dataclasses.MISSING) -> Any:
    """dataclasses' ``_create_fn``: the method whose text it would write and compile.

    An ``__init__`` whose text (the whole ``def __create_fn__(...)`` that returns it)
    is in :data:`pinrun._data_class_code.MADE` is not compiled: that module holds the
    very same text, compiled with the rest of pinrun, and its code is run here as
    dataclasses runs what it compiles (in the class's module's globals, with the same
    arguments), so the method is the same but for the file its code names. Any other
    text goes to dataclasses' own maker.
    """
    if name != "__init__":
        return _own_function(name, args, body, globals=globals, locals=locals,
                             return_type=return_type)
    given = {} if locals is None else locals
    returns = return_type is not dataclasses.MISSING  # as dataclasses writes it
    parameters = [*given, "_return_type"] if returns and "_return_type" not in given else \
        list(given)
    inner = "\n".join(f"  {line}" for line in body)
    text = (f"def __create_fn__({', '.join(parameters)}):\n"
            f" def {name}({','.join(args)}){'->_return_type' if returns else ''}:\n{inner}"
            f"\n return {name}")
    if _SEEN is not None:
        _SEEN.append(text)
    compiled = _data_class_code.MADE.get(text)
    if compiled is None:
        return _own_function(name, args, body, globals=globals, locals=locals,
                             return_type=return_type)
    if returns:
        given["_return_type"] = return_type  # as dataclasses' maker does
    # exec(text, globals) then the function it defines, called: that function's code, run
    # in the class's module's globals (which name the method's module), with no defaults.
    factory = types.FunctionType(compiled.__code__,
                                 globals if globals is not None else vars(dataclasses))
    return factory(**given)


def _own_function(name: str, args: list[str], body: list[str], *,
                  globals: dict[str, Any] | None, locals: dict[str, Any] | None,
                  return_type: Any) -> Any:
    assert _OWN_FUNCTION_MAKER is not None  # only replaced where there is one
    return _OWN_FUNCTION_MAKER(name, args, body, globals=globals, locals=locals,
                               return_type=return_type)
