"""Variations a perturbed replay installs in its own process, before the replay starts.

``pinrun replay RUN --perturb KIND`` replays the run in a fresh interpreter
with one condition changed (:mod:`pinrun.verifier.perturb`). The hash seed,
the time zone, the locale and the home folder are set through the child's
environment variables; the conditions below cannot be, so the child calls
:func:`apply` first, as reprotest varies a build:

* ``umask``: the process's umask (``0077`` against a recorded ``0022``);
* ``cwd``: the working folder (the child moves to another one; its import
  path, made absolute first, still finds the project and pinrun);
* ``fileorder``: directory listings come in reverse order: ``os.listdir``
  and ``os.scandir``, and through them ``os.walk``, ``glob.glob``/``iglob``
  and ``pathlib.Path.iterdir``/``glob``/``rglob`` (which call those two at
  each use on the Pythons pinrun supports);
* ``hostname``: ``socket.gethostname``, ``platform.node`` (and
  ``platform.uname().node``) and ``os.uname().nodename`` answer another name.

The changes last for the process: it exists to replay one run under them.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Final

__all__ = ["CHILD_VARIATIONS", "apply"]

#: The variations :func:`apply` installs (the others are environment variables).
CHILD_VARIATIONS: Final = ("umask", "cwd", "fileorder", "hostname")


def apply(kind: str, value: str) -> None:
    """Install variation ``kind`` in this process: ``value`` is the umask in octal
    (``umask``), the folder to work from (``cwd``), the host name to answer
    (``hostname``), and unused for ``fileorder``."""
    if kind == "umask":
        os.umask(int(value, 8))
    elif kind == "cwd":
        # An empty entry on the import path means the working folder: pin it first,
        # so that moving does not lose the modules imported from there.
        here = os.getcwd()
        sys.path[:] = [entry or here for entry in sys.path]
        os.chdir(value)
    elif kind == "fileorder":
        _reverse_listings()
    elif kind == "hostname":
        _rename_host(value)
    else:
        raise ValueError(f"no variation {kind!r} is installed in a process "
                         f"(these are: {', '.join(CHILD_VARIATIONS)})")


# ----------------------------------------------------------------- file order

class _ReversedScandir:
    """What ``os.scandir`` gives (an iterator and a context manager), in reverse order.

    The real iterator is read to its end and closed at once: its entries keep
    the ``DirEntry`` methods, whose cached answers need no open directory.
    """

    def __init__(self, entries: list[os.DirEntry[Any]]) -> None:
        self._entries = iter(entries[::-1])

    def __iter__(self) -> Iterator[os.DirEntry[Any]]:
        return self

    def __next__(self) -> os.DirEntry[Any]:
        return next(self._entries)

    def __enter__(self) -> _ReversedScandir:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held open; as ``ScandirIterator.close``, callable again."""
        self._entries = iter(())


def _reverse_listings() -> None:
    real_listdir: Callable[..., list[Any]] = os.listdir
    real_scandir: Callable[..., Any] = os.scandir

    # None is the working folder, for both, as os's own defaults say.
    def listdir(path: Any = None) -> list[Any]:
        return real_listdir(path)[::-1]

    def scandir(path: Any = None) -> _ReversedScandir:
        with real_scandir(path) as found:
            return _ReversedScandir(list(found))

    listdir.__doc__ = f"{real_listdir.__doc__}\n\n(pinrun --perturb fileorder: reversed.)"
    scandir.__doc__ = f"{real_scandir.__doc__}\n\n(pinrun --perturb fileorder: reversed.)"
    os.listdir = listdir
    os.scandir = scandir  # type: ignore[assignment]  # same calls, a look-alike iterator


# ------------------------------------------------------------------ host name

def _rename_host(name: str) -> None:
    real_uname = getattr(os, "uname", None)
    real_platform_uname = platform.uname

    def gethostname() -> str:
        return name

    def node() -> str:
        return name

    def platform_uname() -> platform.uname_result:
        # Field by field: _replace would read the processor, which runs `uname -p`.
        found = real_platform_uname()
        return platform.uname_result(found.system, name, found.release, found.version,
                                     found.machine)

    socket.gethostname = gethostname
    platform.node = node
    platform.uname = platform_uname
    if real_uname is not None:
        def uname() -> os.uname_result:
            found = real_uname()
            return os.uname_result((found.sysname, name, found.release, found.version,
                                    found.machine))

        os.uname = uname
