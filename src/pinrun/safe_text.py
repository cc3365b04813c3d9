"""Showing stored text safely: one sanitiser for every string a store may hold.

Run ids, flow and step names, error messages, ref names and values come from
stores and bundles that someone else may have written. Printed as they are,
an escape sequence in them could rewrite the terminal (move the cursor, hide
lines, set the window title) and rich markup could restyle or hide what
pinrun says. Everything stored goes through :func:`printable` before it
reaches a terminal, and through :func:`for_rich` before it reaches a rich
renderable, which would otherwise interpret ``[red]...[/]`` as markup.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["for_rich", "json_unicode_escapes", "printable"]

# Characters shown as they are even though they are "format" or "control"
# characters: the zero-width joiner and non-joiner are parts of ordinary
# words in several scripts and of emoji.
_HARMLESS: Final = frozenset({"\u200c", "\u200d"})


def _shown(char: str) -> bool:
    """Whether ``char`` may reach a terminal as it is.

    Spaces other than " " (category Zs) are not "printable" but are harmless.
    """
    return char.isprintable() or char in _HARMLESS or unicodedata.category(char) == "Zs"


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object, *, newlines: bool = False, limit: int | None = None) -> str:
    """``text`` with every control, format and unpaired surrogate character escaped.

    Escapes are written as Python would (``\\x1b``, ``\\u202e``), so what was
    stored stays readable and unambiguous. ``newlines=True`` keeps line
    breaks (and tabs) for multi-line text such as a traceback; otherwise they
    are escaped too, so one stored string is always one printed line.
    ``limit`` cuts the result to that many characters, marking the cut.
    A backslash is left alone: it cannot move the cursor.
    """
    source = text if isinstance(text, str) else str(text)
    if source.isprintable() and (limit is None or len(source) <= limit):
        return source  # the common case, checked in C
    result = "".join(char if _shown(char) or (newlines and char in "\n\t") else _escape(char)
                     for char in source)
    if limit is not None and len(result) > limit:
        return result[: max(limit - 1, 0)] + "…"
    return result


def for_rich(text: object, *, newlines: bool = False, limit: int | None = None) -> str:
    """:func:`printable`, with rich markup escaped so that ``[red]`` prints as itself."""
    from rich.markup import escape

    return escape(printable(text, newlines=newlines, limit=limit))


def json_unicode_escapes(text: str) -> str:
    """JSON text with every non-printable character outside ASCII as a ``\\uXXXX`` escape.

    Such characters only occur inside JSON strings (the structure is ASCII),
    where an escape means the same character, so the value is unchanged.
    """
    out: list[str] = []
    for char in text:
        if char.isascii() or _shown(char):  # orjson escaped the ASCII controls already
            out.append(char)
            continue
        code = ord(char)
        if code > 0xFFFF:  # JSON spells these as a surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)
