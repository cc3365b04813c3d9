"""What installed distributions require, in turn: the closure of their requirements.

``importlib.metadata`` lists a distribution's requirements as text
(``numpy>=1.26; python_version >= "3.9"``). A requirement counts when it
applies here: never one only an extra asks for, and one with an environment
marker only when the marker holds on this interpreter. ``packaging`` is not a
dependency of pinrun, so the markers are evaluated here: their small grammar
is parsed with :mod:`ast` (never run), and a marker it does not know counts
as applying.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import operator
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from pinrun.flows.installed import head_metadata
from pinrun.flows.project import normalized

__all__ = ["requirement_closure"]


def requirement_closure(names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The installed distributions ``names`` and all they require in turn (not for
    extras; only what is installed and applies here), with their versions."""
    todo = list(names)
    found: dict[str, str] = {}
    seen: set[str] = set()
    while todo:
        wanted = normalized(todo.pop())
        if wanted in seen:
            continue
        seen.add(wanted)
        known = _installed(wanted)
        if known is not None:
            name, version, requires = known
            found[name] = version
            todo.extend(requires)
    return tuple(sorted(found.items()))


# Owner-free on purpose: installed distributions' metadata, fixed for the process.
@functools.cache
def _installed(name: str) -> tuple[str, str, tuple[str, ...]] | None:
    """Distribution ``name``'s own name, version and requirements (applying here); or None."""
    try:
        dist = importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    # The fields from one read of the metadata's header (dist.requires, .version and
    # .metadata would each parse the whole file again, long description included).
    meta = head_metadata(dist)
    listed = meta.get_all("Requires-Dist")
    if listed is None and dist.read_text("requires.txt") is not None:
        listed = dist.requires  # an egg-info's requires.txt: as the library reads it
    requires = tuple(required for text in listed or ()
                     if (required := _required(text)) is not None)
    return meta["Name"] or name, meta["Version"], requires


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def _required(requirement: str) -> str | None:
    """The distribution a requirement names, when it applies here (never for an extra)."""
    spec, _, marker = requirement.partition(";")
    match = _REQUIREMENT.match(spec)
    if match is None or (marker.strip() and not _marker_applies(marker.strip())):
        return None
    return match.group(1)


class _UnknownMarkerError(Exception):
    """Internal: a marker this small evaluator does not read (it then applies)."""


# Owner-free on purpose: facts about this interpreter and machine.
@functools.cache
def _marker_values() -> dict[str, str]:
    return {
        "os_name": os.name, "sys_platform": sys.platform, "platform_machine": platform.machine(),
        "platform_system": platform.system(), "platform_release": platform.release(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "python_full_version": platform.python_version(),
        "implementation_name": sys.implementation.name,
    }


def _marker_applies(marker: str) -> bool:
    """Whether an environment marker holds here; one naming ``extra`` never does.

    Markers are read as the Python expressions they look like (``and``, ``or``,
    one comparison each); what that cannot read counts as applying, since a
    distribution that is not installed is skipped anyway.
    """
    if re.search(r"\bextra\b", marker):
        return False
    try:
        return _evaluate(ast.parse(marker, mode="eval").body)
    except (SyntaxError, _UnknownMarkerError):
        return True


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge}


def _evaluate(node: ast.expr) -> bool:
    if isinstance(node, ast.BoolOp):
        results = [_evaluate(value) for value in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if not isinstance(node, ast.Compare) or len(node.ops) != 1:
        raise _UnknownMarkerError
    left, op, right = _operand(node.left), node.ops[0], _operand(node.comparators[0])
    if isinstance(op, ast.In | ast.NotIn):
        return (left in right) == isinstance(op, ast.In)
    compare = _COMPARE.get(type(op))
    if compare is None:
        raise _UnknownMarkerError
    versions = [tuple(int(part) for part in text.split("."))
                for text in (left, right) if re.fullmatch(r"[0-9]+(\.[0-9]+)*", text)]
    if len(versions) == 2:
        return compare(versions[0], versions[1])
    if compare in (operator.eq, operator.ne):
        return compare(left, right)
    raise _UnknownMarkerError


def _operand(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in _marker_values():
        return _marker_values()[node.id]
    raise _UnknownMarkerError
