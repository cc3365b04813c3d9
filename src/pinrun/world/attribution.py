"""Whose call is it: the project frame a guarded call is attributed to.

A stand-in (:mod:`pinrun.world.stand_ins`) sees a call to the clock, to
chance or to the outside world; this module says which line of the
project's own code it is made for. From the call outward:

1. frames of the stand-ins' machinery in :mod:`pinrun.world` are skipped
   (not the caller); pinrun's other modules are pinrun's own business (3.);
2. the first frame in one of the project's files is the call site: the
   call is the step's, made there directly or by a library on its behalf
   (a helper in site-packages calling ``time.time()`` for the step);
3. but a frame of a *harmless* caller found before it means the call is
   that caller's own business and not noted at all (:data:`HARMLESS`):
   logging's timestamps, a thread's or a queue's timeout, asyncio's loop
   clock, a module being imported, pinrun itself (``ctx.now()`` reads the
   clock through the world, which is what the context is for);
4. any other frame (the standard library, an installed distribution, code
   outside the project) is walked past.

No project frame at all: not the step's call (pinrun's own work between
steps, a thread the process had).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import types
from pathlib import Path
from typing import Final

__all__ = ["HARMLESS", "INSTALLED", "is_harmless_module", "is_library_code", "project_frame"]

#: Modules (and packages, with everything under them) whose own use of the clock, chance,
#: identity or environment cannot change a step's result: they log, time out, draw
#: progress bars or render errors. A guarded call made from one of them, before any
#: project frame, is not noted. Extend it (before a replay) for your own such libraries.
HARMLESS: set[str] = {
    # pinrun itself: its world, context and codec are the documented doors
    "pinrun",
    # log records' timestamps, process id and thread name; logging's handlers
    "logging",
    # timeouts and scheduling: the result does not depend on how long a wait took
    "threading", "queue", "concurrent.futures", "asyncio", "selectors", "sched",
    "multiprocessing", "subprocess",
    # a module being imported does its own setup (a start time, a cache directory)
    "importlib", "_frozen_importlib", "_frozen_importlib_external",
    # network clients (proxies and certificates from the environment, timeouts): the
    # connection itself is the world guard's, refused or noted (pinrun.world.refusal)
    "urllib.request", "http.client", "ssl", "requests", "urllib3", "httpx", "httpcore",
    "aiohttp",
    # rendering errors and warnings: source lines, not results
    "linecache", "traceback", "warnings",
    # test runners, terminals, progress bars and structured loggers
    "_pytest", "pluggy", "rich", "tqdm", "structlog", "loguru", "coverage",
}

#: The stand-ins' machinery: its frames are skipped. pinrun.world's other modules (the
#: file watch, hidden state, the world guard) read the world for pinrun's own sake.
_MACHINERY_MODULES = frozenset({"pinrun.world.stand_ins", "pinrun.world.guards",
                                "pinrun.world.generators", "pinrun.world.datetime_watch",
                                "pinrun.world.attribution"})
_MACHINERY = frozenset(str(Path(__file__).resolve().parent / f"{name.rpartition('.')[2]}.py")
                       for name in _MACHINERY_MODULES)
_PINRUN = str(Path(__file__).resolve().parents[1])
_SKIP, _STOP, _PAST = 0, 1, 2
#: Per code file (per file and module for "<string>" codes), what a frame in it means:
#: files do not change meaning in a process.
_SEEN: dict[str, int] = {}


def is_harmless_module(name: str) -> bool:
    """Whether module ``name`` is in :data:`HARMLESS` or inside a package that is."""
    while True:
        if name in HARMLESS:
            return True
        if "." not in name:
            return False
        name = name.rpartition(".")[0]


def _meaning(frame: types.FrameType) -> int:
    filename = frame.f_code.co_filename
    name = frame.f_globals.get("__name__")
    # "<string>" names many codes, of many modules: judged per module there.
    key = filename if not filename.startswith("<") else f"{filename}\0{name}"
    found = _SEEN.get(key)
    if found is None:
        if filename in _MACHINERY or name in _MACHINERY_MODULES:
            found = _SKIP
        elif (isinstance(name, str) and is_harmless_module(name)) or \
                filename.startswith((_PINRUN, "<frozen importlib")):
            found = _STOP
        else:
            found = _PAST
        _SEEN[key] = found
    return found


def project_frame(files: frozenset[str], start: types.FrameType | None = None) \
        -> types.FrameType | None:
    """The nearest frame of the project's code (one in ``files``) that a guarded call is
    made for, or None when the call is not the step's (see the module's docstring).

    ``start``: the innermost frame to look from (default: the caller's).
    """
    frame: types.FrameType | None = start if start is not None else sys._getframe(1)
    seen = _SEEN
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename in files:
            return frame
        # Every guarded call walks here: the cached meaning first, without a call.
        meaning = seen.get(filename)
        if meaning is None:
            meaning = _meaning(frame)
        if meaning == _STOP:
            return None
        frame = frame.f_back
    return None


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths]
    found.append(_PINRUN)  # pinrun itself
    both = {os.path.normpath(p) for p in found} | {str(Path(p).resolve()) for p in found}
    return tuple(sorted(p + os.sep for p in both))


#: Where code that is not the project's lives: the standard library, the installed
#: distributions and pinrun itself (each folder as given and as resolved).
INSTALLED: Final = _installed_roots()
#: Per code file, whether it is library code: files do not change meaning in a process.
_LIBRARY_FILES: dict[str, bool] = {}


def is_library_code(filename: str) -> bool:
    """Whether code from ``filename`` (a code object's) is not the project's: pinrun, the
    standard library, or a distribution installed with this Python."""
    found = _LIBRARY_FILES.get(filename)
    if found is None:
        found = os.path.normpath(filename).startswith(INSTALLED)
        if len(_LIBRARY_FILES) < 65536:  # code files: a process has a bounded number
            _LIBRARY_FILES[filename] = found
    return found
