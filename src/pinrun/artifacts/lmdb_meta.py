"""Reading an LMDB ``data.mdb``'s two meta pages with plain file reads, before LMDB maps it.

LMDB maps the whole file and trusts it: a page past the end of a truncated
file is a SIGBUS, not an error. So before a store is opened, its meta pages
are read here, the way ``mdb_env_read_header`` does (both must carry the
magic number; the one with the higher transaction id is the committed one),
and the file must reach the last page that meta says is in use.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any, Final

from pinrun.data_classes import data_class
from pinrun.errors import StoreDamagedError

__all__ = ["DataFileHead", "check_data_file", "read_head"]

_MAGIC: Final = 0xBEEFC0DE
_P_META: Final = 0x08
#: Page header size -> (data format version) for LMDB 0.9 and 1.0, 64-bit builds.
_ENGINES: Final = {16: 1, 24: 3}
_ORDER: Final = "<" if sys.byteorder == "little" else ">"
_U16: Final = struct.Struct(_ORDER + "H")
_U32: Final = struct.Struct(_ORDER + "I")
_U64: Final = struct.Struct(_ORDER + "Q")
_META_SIZE: Final = 136  # magic, version, address, mapsize, two MDB_db, last_pg, txnid


@data_class(frozen=True)
class DataFileHead:
    """What the meta pages of a ``data.mdb`` say."""

    file_size: int
    page_size: int
    #: The committed transaction id of each meta page (page 0, page 1).
    txnids: tuple[int, int]
    #: The last page number in use in the committed meta.
    last_page: int

    @property
    def txnid(self) -> int:
        """The transaction id of the committed (newest) meta."""
        return max(self.txnids)

    @property
    def used_bytes(self) -> int:
        """Bytes from the start of the file to the end of its last page in use."""
        return (self.last_page + 1) * self.page_size


def read_head(data_file: Path) -> DataFileHead:
    """Parse both meta pages of ``data_file``; :class:`StoreDamagedError` if they are unusable."""
    with data_file.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        first = f.read(64)
        hdrsz = next((off for off in _ENGINES if len(first) >= off + 4
                      and _U32.unpack_from(first, off)[0] == _MAGIC), None)
        if hdrsz is None:
            raise StoreDamagedError(data_file.parent, f"{data_file.name} does not start with "
                                    "an LMDB meta page (its first page is overwritten)")
        metas = []
        page_size = 0
        for index in range(2):
            f.seek(index * page_size)
            raw = f.read(hdrsz + _META_SIZE)
            if len(raw) < hdrsz + _META_SIZE:
                raise StoreDamagedError(data_file.parent, f"{data_file.name} is truncated "
                                        f"to {size} bytes, inside its meta pages")
            flags = _U16.unpack_from(raw, hdrsz - 6)[0]
            magic, version = _U32.unpack_from(raw, hdrsz)[0], _U32.unpack_from(raw, hdrsz + 4)[0]
            if not flags & _P_META or magic != _MAGIC or version != _ENGINES[hdrsz]:
                raise StoreDamagedError(data_file.parent, f"meta page {index} of "
                                        f"{data_file.name} is overwritten")
            if index == 0:
                page_size = _U32.unpack_from(raw, hdrsz + 24)[0]  # mm_dbs[FREE_DBI].md_pad
                if page_size < 256 or page_size > 65536 or page_size & (page_size - 1):
                    raise StoreDamagedError(data_file.parent, f"meta page 0 of "
                                            f"{data_file.name} has no valid page size")
            last_page = _U64.unpack_from(raw, hdrsz + 120)[0]
            txnid = _U64.unpack_from(raw, hdrsz + 128)[0]
            metas.append((txnid, last_page))
        committed = metas[1] if metas[0][0] < metas[1][0] else metas[0]
        # The size again, now the metas are read: another process committing meanwhile
        # wrote its pages before the meta naming them, so this size holds them (taken
        # before, it could be short of them: a store in use is not a truncated one).
        size = f.seek(0, 2)
    return DataFileHead(size, page_size, (metas[0][0], metas[1][0]), committed[1])


def check_data_file(data_file: Path) -> DataFileHead | None:
    """Refuse a ``data.mdb`` that LMDB could not map safely; ``None`` for an empty new file.

    The file must hold both meta pages and every page the committed meta
    counts as in use, except free ones: LMDB may count pages it allocated and
    freed again in the last transaction without ever writing them. A file
    missing any other page was truncated, and reading it through LMDB would
    kill the process with SIGBUS.
    """
    if data_file.stat().st_size == 0:
        return None  # LMDB writes the meta pages of a new store itself
    head = read_head(data_file)
    if head.file_size < head.used_bytes and _tail_is_free(data_file, head) is False:
        raise StoreDamagedError(data_file.parent, f"{data_file.name} is truncated: it has "
                                f"{head.file_size:,} bytes, but its pages in use reach byte "
                                f"{head.used_bytes:,}")
    return head


def _tail_is_free(data_file: Path, head: DataFileHead) -> bool | None:
    """Whether every page past the end of the file is on LMDB's free list.

    Reads the free-list tree with py-lmdb's offline verifier (plain file
    reads, so damage there is an answer, not a crash); ``None`` without it.
    """
    try:
        from lmdb import verify as lmdb_verify
    except ImportError:  # py-lmdb before 3.0: the file cannot be judged here
        return None
    # The verifier's free-list pass is not public API: any surprise from it
    # (a renamed method, a damaged tree it cannot parse) counts as "not free".
    try:
        with data_file.open("rb") as f:
            # Unannotated (py-lmdb ships no types for it).
            walker: Any = lmdb_verify._Verifier(f, head.file_size)  # type: ignore[no-untyped-call]
            walker.detect_engine()
            walker.load_metas()
            walker.live = bytearray(walker.next_pgno)
            walker.free = bytearray(walker.next_pgno)
            walker._verify_tree("freeDB", walker.meta.free, lmdb_verify._cmp_int, None,
                                is_free=True)
            for txnid, data in walker.free_records:
                walker._decode_idl(txnid, data)
            if walker.errors:
                return False
            first_missing = head.file_size // head.page_size
            return all(walker.free[page] for page in range(first_missing, walker.next_pgno))
    except Exception:
        return False
