"""An effect call's arguments as a record keeps them, and as a person reads them.

An effect is matched on replay by its name and the digest of its canonically
encoded arguments; the digest alone cannot tell anyone, after an incident,
what was sent. So the arguments are kept too, as values, up to
:data:`ARGUMENT_LIMIT` encoded bytes; beyond that only a short preview and
the size are kept (the digest still identifies the call).

:func:`preview` renders a value for a message or a terminal without calling
anything the value's classes define (a decoded value may come from a store
someone else wrote): the types the codec knows are spelled out, a dataclass
by its fields, anything else by its type's name.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Final

from pinrun.artifacts import codec
from pinrun.safe_text import printable

__all__ = ["ARGUMENT_LIMIT", "SCALARS", "call_difference", "call_problem", "call_value",
           "describe_call", "preview"]

#: Arguments encoded larger than this are kept as a preview and a size only.
ARGUMENT_LIMIT: Final = 64 * 1024
_PREVIEW_CHARACTERS: Final = 200
_ITEMS_SHOWN: Final = 8
#: Values nothing can change in place: kept, and handed over, as they are (no copy).
SCALARS: Final = frozenset((str, int, float, bool, bytes, type(None)))
#: Standard library types whose repr is Python to read (by name: nothing imported for it).
_REPR_IS_PYTHON: Final = frozenset((
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"), ("decimal", "Decimal"),
    ("uuid", "UUID"), ("fractions", "Fraction"), ("pathlib", "PurePosixPath"),
    ("pathlib", "PosixPath"), ("pathlib", "PureWindowsPath"), ("zoneinfo", "ZoneInfo"),
))


def call_value(args: tuple[Any, ...], kwargs: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """What a record keeps of an effect's arguments, ``payload`` being their encoding.

    A copy decoded from the encoding, so an effect function that changes its
    arguments cannot change what was recorded.
    """
    if len(payload) > ARGUMENT_LIMIT:
        return {"preview": preview([list(args), kwargs], _PREVIEW_CHARACTERS),
                "size": len(payload)}
    if all(type(value) in SCALARS for value in args) and \
            all(type(value) in SCALARS for value in kwargs.values()):
        return {"args": list(args), "kwargs": dict(kwargs)}  # nothing to change: no copy
    copied_args, copied_kwargs = codec.decode(payload)
    return {"args": copied_args, "kwargs": copied_kwargs}


def call_problem(call: Any) -> str | None:
    """Why ``call`` (read from a record) is not a kept call, or None when it is one."""
    if call is None:
        return None
    if type(call) is not dict:
        return "keeps its arguments as something other than an object"
    if set(call) == {"args", "kwargs"} and type(call["args"]) is list and \
            type(call["kwargs"]) is dict and all(type(k) is str for k in call["kwargs"]):
        return None
    if set(call) == {"preview", "size"} and type(call["preview"]) is str and \
            type(call["size"]) is int and 0 <= call["size"] < 2**63:
        return None
    return "keeps its arguments in an unknown form"


def describe_call(name: str, call: dict[str, Any] | None, arguments: str | None = None,
                  limit: int = _PREVIEW_CHARACTERS) -> str:
    """``fetch('EUR', day=3)``: an effect call as its code wrote it (bounded).

    ``call`` is what :func:`call_value` kept: the arguments, or a preview and
    the size of arguments too large to keep; None for records older than
    that (only their digest, ``arguments``, is known).
    """
    shown = printable(name, limit=80)
    if call is None:
        kept = f"digest {arguments[:12]}" if arguments else "no digest"
        return f"{shown}(<arguments not recorded; {kept}>)"
    if "preview" in call:
        return (f"{shown}(<arguments of {call['size']:,} bytes, kept as a preview: "
                f"{printable(call['preview'], limit=limit)}>)")
    parts = [preview(value, limit) for value in call["args"]]
    parts += [f"{printable(key, limit=40)}={preview(value, limit)}"
              for key, value in call["kwargs"].items()]
    return f"{shown}({_bounded(', '.join(parts), limit)})"


def call_difference(asked: dict[str, Any] | None,
                    recorded: dict[str, Any] | None) -> list[str] | None:
    """Which arguments of an effect call differ from a recorded call of the same effect:
    ``["argument 1: 'EUR' -> 'USD'", "day: 3 -> 4"]`` (empty: the same arguments).

    None when either side did not keep its arguments as values (a preview, an
    older record). Values are compared by their encoding, never by a method
    their class defines.
    """
    if asked is None or recorded is None or "args" not in asked or "args" not in recorded:
        return None
    lines: list[str] = []
    old_args, new_args = recorded["args"], asked["args"]
    for position in range(max(len(old_args), len(new_args))):
        old = old_args[position] if position < len(old_args) else _ABSENT
        new = new_args[position] if position < len(new_args) else _ABSENT
        if not _same(old, new):
            lines.append(f"argument {position + 1}: {_shown(old)} -> {_shown(new)}")
    old_kwargs, new_kwargs = recorded["kwargs"], asked["kwargs"]
    for key in [*old_kwargs, *(k for k in new_kwargs if k not in old_kwargs)]:
        old, new = old_kwargs.get(key, _ABSENT), new_kwargs.get(key, _ABSENT)
        if not _same(old, new):
            lines.append(f"{printable(key, limit=40)}: {_shown(old)} -> {_shown(new)}")
    return lines


_ABSENT: Final = object()


def _same(old: Any, new: Any) -> bool:
    if old is _ABSENT or new is _ABSENT:
        return old is new
    try:
        return codec.encode(old) == codec.encode(new)
    except Exception:  # a value that no longer encodes (or fails to) is not the same
        return False


def _shown(value: Any) -> str:
    return "(absent)" if value is _ABSENT else preview(value, 80)


def preview(value: Any, limit: int = _PREVIEW_CHARACTERS) -> str:
    """A one-line rendering of ``value``, at most ``limit`` characters, calling none of
    its own methods."""
    return _bounded(_render(value, limit, depth=0), limit)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:max(limit - 3, 0)] + "..."


def _render(value: Any, limit: int, depth: int) -> str:
    kind = type(value)
    if value is None or kind in (bool, int, float, complex):
        return repr(value) if kind is not int or value.bit_length() < 256 else \
            f"<int of {value.bit_length()} bits>"
    if kind is str:
        return printable(repr(value[:limit + 2]))
    if kind in (bytes, bytearray):
        return repr(bytes(value[:limit])) + (f" ({len(value)} bytes)" if len(value) > limit
                                             else "")
    if (kind.__module__, kind.__qualname__) in _REPR_IS_PYTHON:
        return printable(repr(value))
    if depth > 4:
        return "..."
    if kind in (list, tuple, set, frozenset):
        items = [_render(item, limit, depth + 1) for item in list(value)[:_ITEMS_SHOWN]]
        if len(value) > _ITEMS_SHOWN:
            items.append(f"... {len(value) - _ITEMS_SHOWN} more")
        inner = ", ".join(items)
        if kind is list:
            return f"[{inner}]"
        if kind is tuple:
            return f"({inner}{',' if len(value) == 1 else ''})"
        return f"{kind.__name__}({{{inner}}})"
    if kind is dict:
        pairs = [f"{_render(key, limit, depth + 1)}: {_render(item, limit, depth + 1)}"
                 for key, item in list(value.items())[:_ITEMS_SHOWN]]
        if len(value) > _ITEMS_SHOWN:
            pairs.append(f"... {len(value) - _ITEMS_SHOWN} more")
        return "{" + ", ".join(pairs) + "}"
    name = printable(kind.__qualname__, limit=60)
    if isinstance(value, enum.Enum):
        return f"{name}.{printable(value.name, limit=60)}"
    if dataclasses.is_dataclass(value):
        own = vars(value) if hasattr(value, "__dict__") else {}
        fields = [f"{f.name}={_render(own.get(f.name), limit, depth + 1)}"
                  for f in dataclasses.fields(value)[:_ITEMS_SHOWN] if f.repr]
        return f"{name}({', '.join(fields)})"
    if kind.__module__.partition(".")[0] in ("numpy", "pandas"):
        shape = getattr(value, "shape", None)  # their own attribute: never a value's repr
        if type(shape) is tuple:
            return f"<{name} of shape {shape}>"
    return f"<{name}>"
