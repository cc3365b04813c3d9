"""Structured diffs of states: which key paths were added, removed or changed.

Two values are equal exactly when their canonical encodings are, so the diff
compares encodings first and only descends into a dict or list whose
encodings differ: a large state with one changed leaf costs one walk down
one path. Each change carries short renderings of both sides as a Python
user reads them (``Decimal('1.10')``, not tagged JSON) and, for arrays,
frames, bytes and long text, lines saying what differs inside them
(:mod:`pinrun.verifier.value_diff`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pinrun.artifacts import codec
from pinrun.data_classes import data_class
from pinrun.errors import PinrunError
from pinrun.safe_text import printable
from pinrun.verifier.value_diff import difference, short

__all__ = ["Change", "diff_states", "render"]

ChangeKind = Literal["added", "removed", "changed"]
#: Renderings are cut to this many characters.
SHORT = 80
#: At most this many changes are listed for one diff (the rest are counted).
MAX_CHANGES = 50


@data_class(frozen=True)
class Change:
    """One difference: a key path, what happened, and both sides in short."""

    path: str
    kind: ChangeKind
    recorded: str | None
    replayed: str | None
    #: For a changed array, frame, bytes or long text: what differs inside it.
    detail: tuple[str, ...] = ()

    def as_value(self) -> dict[str, Any]:
        """The change as JSON-ready data."""
        return {"path": self.path, "kind": self.kind, "recorded": self.recorded,
                "replayed": self.replayed, "detail": list(self.detail)}

    def lines(self, indent: str = "") -> list[str]:
        """The change, then its detail indented under it: each line escaped for a terminal."""
        return [f"{indent}{self}", *(f"{indent}    {printable(line)}" for line in self.detail)]

    def __str__(self) -> str:
        # Keys come from stored states: shown escaped, one change per line.
        path = printable(self.path)
        if self.kind == "added":
            return f"+ {path} = {printable(self.replayed)}"
        if self.kind == "removed":
            return f"- {path} (was {printable(self.recorded)})"
        return f"~ {path}: {printable(self.recorded)} -> {printable(self.replayed)}"


def render(value: Any) -> str:
    """A short, one-line rendering of a value, as ``repr`` shows it (cut)."""
    return short(value, SHORT)


def _encoded(value: Any) -> bytes | None:
    try:
        return codec.encode(value)
    except PinrunError:
        return None


def diff_states(recorded: Mapping[str, Any], replayed: Mapping[str, Any],
                *, limit: int = MAX_CHANGES) -> tuple[list[Change], int]:
    """The changes from ``recorded`` to ``replayed``, and how many were left out."""
    changes: list[Change] = []
    left_out = 0

    def add(change: Change) -> None:
        nonlocal left_out
        if len(changes) < limit:
            changes.append(change)
        else:
            left_out += 1

    stack: list[tuple[str, Any, Any]] = [("", dict(recorded), dict(replayed))]
    while stack:
        path, before, after = stack.pop()
        if _encoded(before) == _encoded(after) and _encoded(before) is not None:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after), key=repr, reverse=True):
                child = f"{path}.{key}" if path and isinstance(key, str) else (
                    key if isinstance(key, str) and not path else f"{path}[{key!r}]")
                if key not in after:
                    add(Change(child, "removed", render(before[key]), None))
                elif key not in before:
                    add(Change(child, "added", None, render(after[key])))
                else:
                    stack.append((child, before[key], after[key]))
        elif isinstance(before, list) and isinstance(after, list) and before and after:
            for index in range(max(len(before), len(after)) - 1, -1, -1):
                child = f"{path}[{index}]"
                if index >= len(after):
                    add(Change(child, "removed", render(before[index]), None))
                elif index >= len(before):
                    add(Change(child, "added", None, render(after[index])))
                else:
                    stack.append((child, before[index], after[index]))
        else:
            add(Change(path or "(state)", "changed", render(before), render(after),
                       tuple(difference(before, after))))
    changes.sort(key=lambda change: change.path)
    return changes, left_out
