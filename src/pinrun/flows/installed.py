"""Which installed distributions provide a top-level module, found cheaply.

``importlib.metadata.packages_distributions()`` answers that, but a fresh
process pays for it in full: it parses every distribution's whole
``METADATA`` (long descriptions included) with :mod:`email` for its name, and
makes a ``PackagePath`` of every line of every ``RECORD`` that has no
``top_level.txt``. A verify worker or a replay child does that before its
first replay, and it was half of that replay's one-off cost.

:func:`top_level_owners` gives the same answer for one top-level name:

* the index (top-level name -> distributions, in the order
  ``distributions()`` lists them) is made once per process from the same
  ``top_level.txt`` files; a ``RECORD`` is read as text and its paths are
  handed to the standard library's own inference as short stand-ins, each
  once: a path of several parts as its first part and its suffix, which is
  all the inference reads of it (``a/b/c.py`` is ``a/x.py``);
* a distribution's name is read only when an answer includes it, from the
  header of its metadata (:func:`head_metadata`), which is all the name is
  taken from.

The first few names a process asks about are answered without the index, by a
scan: a distribution that declares its top levels is asked its list, and one
that does not is skipped when the name does not begin a line of its ``RECORD``
(every name the inference gives does); only the others' names are inferred.
A verify worker asks about its flow's few modules, and reads no ``RECORD``
line by line.

When this Python's ``importlib.metadata`` lacks what that relies on, the
index is ``packages_distributions()`` itself.
"""

from __future__ import annotations

import csv
import email
import functools
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["file_names", "head_metadata", "name_of", "owner_index", "top_level_owners"]

#: The standard library's own inference of a distribution's top-level names from its
#: files (private, so looked up: without it the index is packages_distributions()).
_INFERRED: Callable[[Any], Iterable[str]] | None = getattr(
    importlib.metadata, "_top_level_inferred", None)
#: Python 3.12 on drops the files a RECORD lists but that are not there.
_SKIPS_MISSING = sys.version_info >= (3, 12)


# Owner-free on purpose (like flows.project's caches): installed metadata, fixed for a
# process, keyed by top-level names.
@functools.lru_cache(maxsize=4096)
def top_level_owners(top_level: str) -> tuple[str, ...]:
    """The names of the installed distributions providing ``top_level``, in the order
    and with the names ``packages_distributions()`` gives them, without repeats."""
    if _INFERRED is None:
        return _all_owners().get(top_level, ())
    return tuple(dict.fromkeys(name_of(dist) for dist in _providers(top_level)))


#: Names answered by a scan of the distributions before the whole index is made: a verify
#: worker asks about a few (its flow's modules), a process that asks about many (every
#: loaded module's owner) pays for a few scans more than the index alone.
_SCANS_BEFORE_INDEX = 8
_scans: list[str] = []


def _providers(top_level: str) -> list[importlib.metadata.Distribution]:
    """The distributions providing ``top_level``, in their order."""
    if len(_scans) >= _SCANS_BEFORE_INDEX:
        return _index().get(top_level, [])
    _scans.append(top_level)
    return [dist for dist, declared, record in _catalogue()
            if (top_level in declared if declared else
                _may_infer(record, top_level) and top_level in _inferred_set(dist, record))]


#: A ``RECORD``'s text, and what it says of the names inferred from it.
_Record = tuple[str, int]


@functools.cache
def _catalogue() -> list[tuple[importlib.metadata.Distribution, list[str], _Record | None]]:
    """Each distribution, in order, with its declared top-level names (``top_level.txt``,
    none when absent or empty) and, for those with none, its ``RECORD`` when a name's
    absence from it can rule the distribution out (:func:`_may_infer`)."""
    found = []
    for dist in importlib.metadata.distributions():
        declared = (dist.read_text("top_level.txt") or "").split()
        record = None
        if not declared and type(dist) is importlib.metadata.PathDistribution:
            text = dist.read_text("RECORD")
            record = (text, _kind(text)) if text else None
        found.append((dist, declared, record))
    return found


def _kind(text: str) -> int:
    """What a ``RECORD``'s text says of the names inferred from it."""
    if '"' in text or "\0" in text:
        return _QUOTED
    if text.startswith(("./", "/")) or any(odd in text for odd in _ODD_STARTS):
        return _ODD
    return _PLAIN


#: What a RECORD's text says of the names inferred from it: nothing (quotes or NULs: csv
#: reads it, and rewrites a quoted path), that each is part of it, or that each begins
#: one of its lines.
_QUOTED, _ODD, _PLAIN = range(3)


#: What splits a text into lines besides "\n" (str.splitlines), and path beginnings that
#: PurePosixPath drops ("./", "/"): with none of them, the first part of every path in a
#: RECORD begins a line.
_ODD_STARTS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
               "\n./", "\n/")


def _may_infer(record: _Record | None, top_level: str) -> bool:
    """False only when the inference from a distribution's files cannot give ``top_level``.

    Every name the inference gives is the first part of a path its ``RECORD`` lists
    (or a one-part path, or its stem), so it is part of the text and, when the text is
    plain, begins one of its lines: a name that does not is not among its names. Without
    a text to go by (no ``RECORD``, quotes, another finder's distribution), nothing is
    ruled out.
    """
    if record is None or record[1] == _QUOTED:
        return True
    text, kind = record
    if kind == _ODD:
        return top_level in text
    return text.startswith(top_level) or f"\n{top_level}" in text


@functools.lru_cache(maxsize=1024)
def _inferred_set(dist: importlib.metadata.Distribution, record: _Record | None,
                  ) -> frozenset[str]:
    """The names inferred from ``dist``'s files (its ``RECORD``'s text, when read)."""
    return frozenset(_inferred(dist, record[0] if record is not None else None))


@functools.cache
def _all_owners() -> dict[str, tuple[str, ...]]:
    """The whole answer from the standard library (the fallback)."""
    return {top: tuple(dict.fromkeys(dists))
            for top, dists in importlib.metadata.packages_distributions().items()}


@functools.cache
def _index() -> dict[str, list[importlib.metadata.Distribution]]:
    """:func:`owner_index` of every distribution, from :func:`_catalogue`."""
    index: dict[str, list[importlib.metadata.Distribution]] = {}
    for dist, declared, record in _catalogue():
        for top in declared or _inferred_set(dist, record):
            index.setdefault(top, []).append(dist)
    return index


def owner_index(dists: Iterable[importlib.metadata.Distribution],
                ) -> dict[str, list[importlib.metadata.Distribution]]:
    """Top-level name -> the distributions of ``dists`` providing it, in their order
    (repeats kept, as ``packages_distributions()`` appends them); names not read."""
    index: dict[str, list[importlib.metadata.Distribution]] = {}
    for dist in dists:
        for top in (dist.read_text("top_level.txt") or "").split() or _inferred(dist):
            index.setdefault(top, []).append(dist)
    return index


class _Files:
    """What the standard library's inference reads of a distribution: its files."""

    __slots__ = ("files",)

    def __init__(self, files: list[importlib.metadata.PackagePath]) -> None:
        self.files = files


def _inferred(dist: importlib.metadata.Distribution, record: str | None = None,
              ) -> Iterable[str]:
    """The top-level names the standard library infers from ``dist``'s files (``record``:
    its ``RECORD``'s text, when already read)."""
    assert _INFERRED is not None
    paths = _record_paths(dist, record)
    if paths is None:
        return _INFERRED(dist)  # no RECORD (egg-info) or another finder's: as it is
    stand_ins = {_stand_in(path) for path in paths}
    return _INFERRED(_Files([importlib.metadata.PackagePath(path) for path in stand_ins]))


def file_names(dist: importlib.metadata.Distribution) -> list[str] | None:
    """``[str(file) for file in dist.files]`` (None when that is None), without a
    ``PackagePath`` made for each of a ``RECORD``'s lines."""
    paths = _record_paths(dist)
    if paths is None:
        files = dist.files
        return None if files is None else [str(file) for file in files]
    # A clean relative path is its own PurePosixPath text; others are cleaned as it does.
    return [path if _clean(path) else str(importlib.metadata.PackagePath(path))
            for path in paths]


def _record_paths(dist: importlib.metadata.Distribution, record: str | None = None,
                  ) -> list[str] | None:
    """The paths ``dist.files`` would be made of (the files that are there, on Python
    3.12 on), read from the ``RECORD`` (``record``, when already read); None when the
    library must read the files itself (no ``RECORD``, a line it could not take, another
    finder's distribution)."""
    if type(dist) is not importlib.metadata.PathDistribution:
        return None
    text = record if record is not None else dist.read_text("RECORD")
    if not text:
        return None
    lines = text.splitlines()
    if '"' not in text and "\0" not in text and "" not in lines:
        # Without quotes, csv splits a line at its commas: the path is the first field
        # (csv would also read every hash and size, char by char, to be dropped here).
        if any(line.count(",") > 2 for line in lines):
            return None  # a fourth field: the library fails on it, let it
        paths = [line.partition(",")[0] for line in lines]
    else:
        paths = []
        for row in csv.reader(lines):
            if not 1 <= len(row) <= 3:
                return None  # the library fails on it: let it
            paths.append(row[0])
    if _SKIPS_MISSING:
        base = str(dist.locate_file(""))
        paths = [path for path in paths if os.path.exists(os.path.join(base, path))]
    return paths


def _clean(path: str) -> bool:
    """Whether ``PurePosixPath(path)`` keeps ``path`` as it is (relative, no empty or
    ``.`` parts)."""
    return bool(path) and not path.startswith("/") and not path.endswith("/") and \
        "//" not in path and "." not in path.split("/")


def _stand_in(path: str) -> str:
    """A short path the inference reads as it reads ``path``: the same first part, the
    same number of parts (one, or more), and a last part with the same suffix (for a
    path of more than one part, the inference looks at nothing else). A path a
    ``PurePosixPath`` would clean (empty or ``.`` parts, a leading ``/``) is kept whole."""
    slash = path.find("/")
    last = path[path.rfind("/") + 1:]
    if slash <= 0 or last in ("", ".") or path.startswith("./") or "//" in path or \
            "/./" in path:
        return path
    dot = last.rfind(".")  # the suffix as pathlib takes it
    return f"{path[:slash]}/x{last[dot:] if 0 < dot < len(last) - 1 else ''}"


@functools.lru_cache(maxsize=1024)
def name_of(dist: importlib.metadata.Distribution) -> Any:
    """``dist.metadata["Name"]``, from the metadata's header only."""
    return head_metadata(dist)["Name"]


def head_metadata(dist: importlib.metadata.Distribution) -> Any:
    """``dist.metadata`` parsed only as far as its header (the fields: name, version,
    requirements), which is where :mod:`email` stops reading fields anyway; the long
    description after it is left unread. Another finder's distribution: as it is."""
    if type(dist) is not importlib.metadata.PathDistribution:
        return dist.metadata
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.read_text("")
    if text is None:
        return dist.metadata  # what the library does with no text, it does itself
    # The header ends at the first empty line at the latest: the parser reads the same
    # header lines from the text cut just after the line before it.
    end = text.find("\n\n")
    head = text if end < 0 else text[:end + 1]
    return _message_class()(email.message_from_string(head))


@functools.cache
def _message_class() -> Any:
    # The library's own wrapper (it re-indents folded fields): the same values.
    return importlib.import_module("importlib.metadata._adapters").Message
