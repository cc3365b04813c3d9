"""What the hidden-state watch does not look at in project code: closures and function
attributes.

:mod:`pinrun.world.hidden_state` watches module globals, class attributes,
mutable defaults and caches. A function can also keep state in the cells of
its closure (``nonlocal count``, a list a decorator closes over) and in its
own attributes (``handle.calls += 1``). A replay that keeps the project's
modules loaded for the next replay (pinned replay in a worker, see
:mod:`pinrun.verifier.kept_code`) must know that none of that changed either.

:class:`CodeCells` finds, once per set of modules, every such cell and
attribute of the functions the modules own (module-level functions, pinrun
steps, cached functions, the methods of their classes, and the functions
found in those closures, a few levels deep). A look is the objects they hold,
compared by identity; a cell holding a value that can change in place (a
list, a dict, an object) is *blind*: a step could change it unseen.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Iterator, Sequence
from typing import Final

from pinrun.world.hidden_state import is_quiet

__all__ = ["CodeCells"]

#: How many closures deep functions found in cells are followed (decorators nest).
_DEPTH: Final = 4
_EMPTY: Final = object()  # a cell not filled yet (a name assigned later)
#: Who holds a value, and how to reach it: (owner, a cell or a ``__dict__``, None or a name).
_Found = tuple[str, object, object]


class CodeCells:
    """The closure cells and function attributes of the functions ``modules`` own."""

    __slots__ = ("owners", "reach")

    def __init__(self, modules: Sequence[types.ModuleType]) -> None:
        found: dict[tuple[int, object], _Found] = {}
        seen: set[int] = set()
        for module in modules:
            for owner, func in _owned_functions(module):
                _collect(owner, func, found, seen, _DEPTH)
        #: What holds each value: a cell (key None) or a function's ``__dict__`` and a name.
        self.reach = [(holder, key) for _, holder, key in found.values()]
        #: Who each is, to name it: ``orders.pricing.count (closure: total)``.
        self.owners = [owner for owner, _, _ in found.values()]

    def look(self) -> tuple[object, ...]:
        """The objects every cell and attribute holds now."""
        return tuple(_held(holder, key) for holder, key in self.reach)

    def same(self, before: tuple[object, ...], after: tuple[object, ...]) -> bool:
        """Whether two looks hold the very same objects."""
        return len(before) == len(after) and all(map(operator.is_, before, after))

    def blind_to(self, look: tuple[object, ...]) -> str | None:
        """The owner of a cell or attribute holding, in ``look``, a value that can change
        in place (unseen by anyone), or None."""
        for owner, value in zip(self.owners, look, strict=True):
            if value is not _EMPTY and not is_quiet(value):
                return owner
        return None


def _held(holder: object, key: object) -> object:
    if key is None:
        try:
            return holder.cell_contents  # type: ignore[attr-defined]
        except ValueError:  # an empty cell
            return _EMPTY
    assert isinstance(holder, dict)
    return holder.get(key, _EMPTY)


def _owned_functions(module: types.ModuleType) -> Iterator[tuple[str, types.FunctionType]]:
    """``(owner, function)`` for each function ``module``'s globals and classes define."""
    name_of = module.__name__
    for name, value in list(vars(module).items()):
        if isinstance(value, type):
            if value.__module__ != name_of:
                continue
            for attribute, member in list(vars(value).items()):
                inner = member.__func__ if isinstance(member, staticmethod | classmethod) \
                    else member
                func = _function_of(inner)
                if func is not None:
                    yield f"{name_of}.{value.__qualname__}.{attribute}", func
            continue
        func = _function_of(value)
        if func is not None and func.__module__ == name_of:
            yield f"{name_of}.{name}", func


def _function_of(value: object) -> types.FunctionType | None:
    """The Python function behind ``value``: itself, the function a wrapper wraps
    (``functools.wraps``, caches) or a pinrun step's."""
    if isinstance(value, types.FunctionType):
        return value
    for name in ("func", "__wrapped__"):
        inner = getattr_quiet(value, name)
        if isinstance(inner, types.FunctionType):
            return inner
    return None


def _collect(owner: str, func: types.FunctionType, found: dict[tuple[int, object], _Found],
             seen: set[int], depth: int) -> None:
    """Add ``func``'s closure cells and attributes (and those of the functions they hold)."""
    if id(func) in seen or depth == 0:
        return
    seen.add(id(func))
    code = func.__code__
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        found.setdefault((id(cell), None), (f"{owner} (closure: {name})", cell, None))
        inner = _held(cell, None)
        if isinstance(inner, types.FunctionType):
            _collect(owner, inner, found, seen, depth - 1)
    own = func.__dict__
    for name in list(own):
        if name == "__wrapped__":  # functools.wraps: the wrapped function, followed below
            continue
        found.setdefault((id(own), name), (f"{owner}.{name}", own, name))
    wrapped = own.get("__wrapped__")
    if isinstance(wrapped, types.FunctionType):
        _collect(owner, wrapped, found, seen, depth - 1)


def getattr_quiet(value: object, name: str) -> object:
    """``getattr(value, name, None)``, also when the object's ``__getattr__`` raises."""
    try:
        return getattr(value, name, None)
    except Exception:  # a __getattr__ or property of the user's that raised
        return None
