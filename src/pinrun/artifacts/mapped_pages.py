"""Giving back the store's mapped pages after a long pass over many runs (Linux).

LMDB reads through a shared, read-only memory map of ``data.mdb``: every page a
read touches stays resident in the process (as file pages counted in its RSS)
for as long as the store is open, and the kernel maps the neighbours of a page
it faults in too (fault-around: up to 64 KiB per fault). A verification reads
every run, and run records, refs and outputs sit under random keys, spread over
nearly every page: the resident size of the parent (its pass over the records)
and of each worker (its replays) would grow with the store. Telling the kernel
the pages are not needed (``madvise(MADV_DONTNEED)``) drops them from this
process only: the file and the page cache keep them, and the next read faults
them back in unchanged, so LMDB sees the same bytes. Elsewhere, or when
anything fails, nothing is done.

Finding the map means reading ``/proc/self/maps`` (a fraction of a millisecond
in a process with many libraries), so the map's bounds are kept per store and
checked again before each use with one ``readlink`` of
``/proc/self/map_files/LOW-HIGH``: it names ``data.mdb`` only while that very
mapping is still there. :class:`PageBudget` gives the pages back only once this
process's file pages grew past a bound, so a long pass pays for it rarely and
the pages it keeps are bounded, however large the store.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["PageBudget", "release_store_pages"]

#: <sys/mman.h> on Linux.
_MADV_DONTNEED = 4

#: data.mdb path -> the "LOW-HIGH" names of its read-only shared mappings, as last found.
_FOUND: dict[str, tuple[str, ...]] = {}


@cache
def _madvise() -> Any | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


def _scan(data: str) -> tuple[str, ...]:
    """The ranges of this process's read-only shared mappings of ``data``, from its maps."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    found = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        # Only a shared mapping nobody writes through: LMDB's own (no writemap).
        if len(fields) == 6 and fields[5] == data and fields[1] == "r--s":
            found.append(fields[0])
    return tuple(found)


def _still_mapped(data: str, ranges: tuple[str, ...]) -> bool:
    """Whether each range is still a mapping of ``data`` (one readlink each)."""
    try:
        return bool(ranges) and all(os.readlink(f"/proc/self/map_files/{name}") == data
                                    for name in ranges)
    except OSError:  # gone, or map_files not readable here: scan the maps again
        return False


def release_store_pages(store_path: Path) -> int:
    """Drop the resident pages of the read-only map of ``store_path/data.mdb`` from this
    process; the bytes of the mappings given back (0 when none, or not on Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    madvise = _madvise()
    if madvise is None:
        return 0
    data = str(store_path / "data.mdb")
    ranges = _FOUND.get(data, ())
    if not _still_mapped(data, ranges):
        ranges = _FOUND[data] = _scan(data)
    released = 0
    for name in ranges:
        start, _, end = name.partition("-")
        try:
            low, high = int(start, 16), int(end, 16)
        except ValueError:
            continue
        if madvise(low, high - low, _MADV_DONTNEED) == 0:
            released += high - low
    return released


class PageBudget:
    """Gives a store's mapped pages back whenever this process's resident file pages
    grew by more than ``budget`` bytes since the last time (Linux; elsewhere, never).

    Call :meth:`spend` after each unit of work (a replay, a batch of records):
    the pages kept stay near ``budget`` plus one unit's, in a small store and a
    large one alike, and the map is given back only as often as it fills. The
    count is read from ``/proc/self/statm`` through a descriptor kept open (a
    read is ~2 us; opening it again would be ~15): :meth:`close` it, or use the
    budget as a context manager.
    """

    def __init__(self, store_path: Path, budget: int = 4 << 20) -> None:
        self.store_path = store_path
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._pages = max(budget // page, 1)
        self._statm: int | None = None
        self._pid = os.getpid()
        if sys.platform.startswith("linux"):
            with suppress(OSError):
                self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        self._floor = self._file_pages()

    def _file_pages(self) -> int | None:
        """This process's resident file-backed pages (``shared`` in /proc/self/statm)."""
        if self._statm is None or os.getpid() != self._pid:  # none, or another process's
            return None
        try:
            return int(os.pread(self._statm, 128, 0).split()[2])
        except (OSError, ValueError, IndexError):
            return None

    def spend(self) -> bool:
        """Give the pages back if the budget is spent; whether they were."""
        if self._floor is None:
            return False
        now = self._file_pages()
        if now is None or now - self._floor <= self._pages:
            return False
        self.release()
        return True

    def release(self) -> None:
        """Give the pages back now (and count the budget from here)."""
        release_store_pages(self.store_path)
        self._floor = self._file_pages()

    def close(self) -> None:
        """Close the descriptor the budget reads its count from (it then gives back nothing)."""
        statm, self._statm, self._floor = self._statm, None, None
        if statm is not None and os.getpid() == self._pid:
            os.close(statm)

    def __enter__(self) -> PageBudget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
