"""Environment variables read without the exceptions ``os.environ.get`` raises for an
unset one (every recorded run and every pinned replay asks for a few)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["environment_variable"]


def environment_variable(name: str) -> str | None:
    """``os.environ.get(name)``, without its two exceptions when ``name`` is unset.

    A recorded run asks for a few variables that are mostly unset (``$TZ``,
    ``$PINRUN_IGNORE_FILES``), and ``os.environ.get`` of a missing one raises and
    catches two ``KeyError`` (~8k instructions). On POSIX, CPython's ``os.environ``
    keeps the encoded variables in a plain dict (``_data``, updated with the
    process's environment by every change made through it): read there while
    ``os.environ`` is that mapping, asked as usual otherwise.
    """
    environ = os.environ
    if type(environ) is not _ENVIRON:
        # Guards up (pinrun.world.stand_ins.GuardedEnviron): pinrun's own read is no
        # step's, so it goes to the real mapping, unnoted.
        environ = getattr(environ, "unguarded", environ)
    data = getattr(environ, "_data", None) if type(environ) is _ENVIRON else None
    if type(data) is not dict:
        return environ.get(name)
    key = _ENCODED_NAMES.get(name)
    if key is None:
        key = _ENCODED_NAMES[name] = os.fsencode(name)
    raw = data.get(key)
    return os.fsdecode(raw) if raw is not None else None


#: ``os.environ``'s own class when it keeps its variables as bytes (POSIX), else None.
_ENVIRON: Any = type(os.environ) if os.name == "posix" else None
#: Variable names as ``os.environ`` keys them on POSIX (a handful of constants).
_ENCODED_NAMES: dict[str, bytes] = {}
