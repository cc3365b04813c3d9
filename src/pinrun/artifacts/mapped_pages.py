"""Giving back the store's mapped pages after a long pass over many runs (Linux).

LMDB reads through a shared, read-only memory map of ``data.mdb``: every page a
read touches stays resident in the process (as file pages counted in its RSS)
for as long as the store is open. A verification reads every run, and run
records and outputs sit under random keys, spread over nearly every page: the
resident size of the parent (its pass over the records) and of each worker
(its replays) would grow with the store. Telling the kernel the pages are not
needed (``madvise(MADV_DONTNEED)``) drops them from this process only: the file
and the page cache keep them, and the next read faults them back in unchanged,
so LMDB sees the same bytes. Elsewhere, or when anything fails, nothing is done.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["release_store_pages"]

#: <sys/mman.h> on Linux.
_MADV_DONTNEED = 4


@cache
def _madvise() -> Any | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


def release_store_pages(store_path: Path) -> int:
    """Drop the resident pages of the read-only map of ``store_path/data.mdb`` from this
    process; the bytes of the mappings given back (0 when none, or not on Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    madvise = _madvise()
    if madvise is None:
        return 0
    data = str(store_path / "data.mdb")
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    released = 0
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        # Only a shared mapping nobody writes through: LMDB's own (no writemap).
        if len(fields) != 6 or fields[5] != data or fields[1] != "r--s":
            continue
        start, _, end = fields[0].partition("-")
        try:
            low, high = int(start, 16), int(end, 16)
        except ValueError:
            continue
        if madvise(low, high - low, _MADV_DONTNEED) == 0:
            released += high - low
    return released
