"""The canonical structure of Python source: what a code fingerprint hashes.

Neither ``ast.dump`` text nor bytecode is stable between Python versions, so
the structure is built from the syntax tree by hand:

* a node is a dict ``{"_type": class name, field: value, ...}`` with its fields
  in sorted order; a node with no fields left is just its name (``"Load"``);
* source positions and ``type_comment`` are dropped, and so are fields that
  are ``None`` or an empty list, so a field a later Python adds with an empty
  default (3.12's ``type_params``) changes nothing;
* docstrings (the first statement of a module, class or function body when it
  is a string) are dropped; a constant is ``(type name, value)``, so ``1``,
  ``1.0`` and ``True`` differ while quote style and ``u""`` prefixes do not;
* f-string literal parts are merged, and empty ones dropped (3.12 adds some).
"""

from __future__ import annotations

import ast
from typing import Any, Final

__all__ = ["normalize", "normalized_source_tree", "parse_source", "tokens"]

_POSITIONS: Final = frozenset({"lineno", "col_offset", "end_lineno", "end_col_offset"})
_HAS_DOCSTRING: Final = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def normalized_source_tree(source: str) -> Any:
    """The canonical structure of module (or function) source text.

    Equal for two texts that differ only in comments, formatting, docstrings
    or quote style; a ``status`` command uses it to tell such edits apart.
    """
    return normalize(parse_source(source))


def parse_source(source: str) -> ast.Module:
    """Parse source that may be indented (a method) without touching its string literals.

    ``textwrap.dedent`` would also strip indentation inside multi-line strings
    (and gives up when one has a line at column 0); an ``if`` block takes any indent.
    """
    if source[:1] not in (" ", "\t"):
        return ast.parse(source)
    block = ast.parse("if 1:\n" + source).body[0]
    assert isinstance(block, ast.If)
    return ast.Module(body=block.body, type_ignores=[])


def normalize(root: ast.AST) -> Any:
    """The canonical structure of a tree, built children first without recursion.

    Python compiles an ``elif`` chain hundreds of levels deep; the fingerprint
    must not hit the recursion limit on it.
    """
    order: list[ast.AST] = []  # pre-order: reversed, every node comes after its children
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(ast.iter_child_nodes(node))
    done: dict[int, Any] = {}
    for node in reversed(order):
        done[id(node)] = _node(node, done)
    return done[id(root)]


def _node(node: ast.AST, done: dict[int, Any]) -> Any:
    """One node; sorted field names, so nothing relies on ``_fields`` order."""

    def field(value: Any) -> Any:
        if isinstance(value, ast.AST):  # a merged f-string part is new: normalize it here
            return done[id(value)] if id(value) in done else _node(value, done)
        if isinstance(value, list):  # None items (Dict.keys, kw_defaults) mean something
            return [None if item is None else field(item) for item in value]
        return value  # identifiers and small ints such as ImportFrom.level

    out: dict[str, Any] = {"_type": type(node).__name__}
    for name in sorted(node._fields):
        if name in _POSITIONS or name == "type_comment":
            continue
        if isinstance(node, ast.Constant):
            if name == "value":  # Constant.kind only records a u"" prefix: skipped
                out[name] = (type(node.value).__name__,
                             None if node.value is Ellipsis else node.value)
            continue
        value: Any = getattr(node, name, None)
        if name == "body" and isinstance(node, _HAS_DOCSTRING):
            value = _without_docstring(value)
        elif name == "values" and isinstance(node, ast.JoinedStr):
            value = _merged_fstring_parts(value)
        if value is not None and value != []:
            out[name] = field(value)
    return out if len(out) > 1 else out["_type"]


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
        isinstance(first.value.value, str)
    return body[1:] if docstring else body


def _merged_fstring_parts(values: list[ast.expr]) -> list[ast.expr]:
    merged: list[ast.expr] = []
    for part in values:
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            last = merged[-1] if merged else None
            if isinstance(last, ast.Constant) and isinstance(last.value, str):
                merged[-1] = ast.Constant(value=last.value + part.value)
                continue
            if not part.value:
                continue
        merged.append(part)
    return merged


def tokens(structure: Any) -> list[Any]:
    """The structure as the flat list that is hashed: orjson refuses nesting past 255.

    A dict or list becomes a ``["dict", n]`` or ``["list", n]`` marker and then
    its items (keys sorted); leaves are never lists, so it spells one structure.
    """
    out: list[Any] = []
    stack = [structure]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            out.append(["dict", len(item)])
            stack += reversed([part for key in sorted(item) for part in (key, item[key])])
        elif isinstance(item, list):
            out.append(["list", len(item)])
            stack += reversed(item)
        else:
            out.append(item)
    return out
