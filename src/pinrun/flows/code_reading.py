"""What a function's code reads, from its code objects and its syntax tree.

Small readers the fingerprint walk (:mod:`pinrun.flows.fingerprint`) is built
on: the global and attribute names code objects use, the names a tree reads,
what runs when a ``def`` or ``class`` statement runs, ``a.b.c`` chains,
closure cells, and the functions written in a class body.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import types
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, overload

__all__ = ["attribute_chains", "class_functions", "closure", "code_names",
           "definition_names", "name_ids", "source_text"]

_DEFINITIONS: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


class _LinesFrom(Sequence[str]):
    """A file's lines from ``start`` on, a view: :func:`inspect.getblock` iterates it,
    then cuts ``[:end]``, without the copy of the rest of the file ``getsource`` makes
    (per function, that copy made reading every function of a large module quadratic)."""

    __slots__ = ("lines", "start")

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines = lines
        self.start = start

    def __len__(self) -> int:
        return len(self.lines) - self.start

    def __iter__(self) -> Iterator[str]:
        return map(self.lines.__getitem__, range(self.start, len(self.lines)))

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, int):
            return self.lines[self.start + index] if index >= 0 else self.lines[index]
        return self.lines[self.start:][index] if index.start or index.step or \
            index.stop is None or index.stop < 0 else self.lines[self.start:self.start + index.stop]


def source_text(obj: Any) -> str:
    """``inspect.getsource(obj)``, in time linear in the function's own text for a
    function (a class or anything else: ``inspect.getsource`` itself).

    Raises what ``inspect.getsource`` raises (``OSError``, ``TypeError``).
    """
    target = inspect.unwrap(obj) if callable(obj) else obj
    if not isinstance(target, types.FunctionType):
        return inspect.getsource(obj)
    lines, start = inspect.findsource(target)
    key = (id(lines), start)
    known = _BLOCKS.get(key)
    if known is not None and known[0] is lines:
        return known[1]
    text = "".join(inspect.getblock(_LinesFrom(lines, start)))
    if len(_BLOCKS) >= 512:
        _BLOCKS.clear()
    _BLOCKS[key] = (lines, text)
    return text


#: Per file's lines (linecache's list: kept, so that its id names no other list while
#: the entry lives) and a function's first line: the function's text. A step's source is
#: read when the step is defined (the keys it returns) and again when it is pinned (its
#: fingerprint); finding where the function ends tokenizes it, most of either read. A
#: file read again (changed on disk, or pinned code loaded afresh) is a new list.
_BLOCKS: dict[tuple[int, int], tuple[list[str], str]] = {}


def code_names(codes: Iterable[types.CodeType]) -> set[str]:
    """``co_names`` of the code objects and all code nested in them (globals and attributes)."""
    names: set[str] = set()
    stack = list(codes)
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


def name_ids(node: ast.AST) -> set[str]:
    """Every name the tree reads: a name in ``co_names`` but not here is an attribute."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and
            isinstance(n.ctx, ast.Load)}


def definition_names(nodes: Iterable[ast.AST]) -> set[str]:
    """Names read when a def or class statement runs: decorators, defaults, class bodies."""
    found: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, _DEFINITIONS):
            args = node.args
            stack += [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
            if not isinstance(node, ast.Lambda):
                stack += node.decorator_list
            continue  # the body runs later, in its own scope: its code names cover it
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            found.add(node.id)  # a name stored in a class body is a class attribute
        stack.extend(ast.iter_child_nodes(node))
    return found


def attribute_chains(node: ast.AST) -> set[tuple[str, ...]]:
    """``a.b.c`` as ``("a", "b", "c")`` for every attribute chain rooted at a plain name."""
    chains: set[tuple[str, ...]] = set()
    for top in ast.walk(node):
        parts: list[str] = []
        current = top
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if parts and isinstance(current, ast.Name):
            chains.add((current.id, *reversed(parts)))
    return chains


def closure(func: types.FunctionType) -> dict[str, object]:
    cells: dict[str, object] = {}
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=True):
        with contextlib.suppress(ValueError):  # an empty cell: not bound yet, nothing read
            cells[name] = cell.cell_contents
    return cells


def class_functions(cls: type, module_file: str | None) -> Iterator[types.FunctionType]:
    """Functions written in the class body: methods, static and class methods, properties."""
    for attribute in vars(cls).values():
        value = getattr(attribute, "__func__", attribute)  # staticmethod, classmethod
        inner = [value.fget, value.fset, value.fdel] if isinstance(value, property) else \
            [getattr(value, "func", value)]  # functools.cached_property keeps .func
        for item in inner:
            if isinstance(item, type) and item.__qualname__.startswith(cls.__qualname__ + "."):
                yield from class_functions(item, module_file)
            elif isinstance(item, types.FunctionType) and \
                    item.__code__.co_filename == module_file:  # not generated (dataclass __init__)
                yield item
