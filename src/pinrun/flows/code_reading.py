"""What a function's code reads, from its code objects and its syntax tree.

Small readers the fingerprint walk (:mod:`pinrun.flows.fingerprint`) is built
on: the global and attribute names code objects use, the names a tree reads,
what runs when a ``def`` or ``class`` statement runs, ``a.b.c`` chains,
closure cells, and the functions written in a class body.
"""

from __future__ import annotations

import ast
import contextlib
import types
from collections.abc import Iterable, Iterator
from typing import Final

__all__ = ["attribute_chains", "class_functions", "closure", "code_names",
           "definition_names", "name_ids"]

_DEFINITIONS: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


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
