"""A step's file inputs as recorded, and what changed on disk since.

When a recorded step is done, :func:`recorded_value` turns its
:class:`~pinrun.world.files.FileWatch` into a stored value: per file read,
its path (relative to the project root, absolute outside it), the BLAKE3
digest of its content (None: absent) and where the project first read it;
per folder listed, its path, the digest of its sorted names, the names
themselves (the first :data:`MOST_NAMES`) and their count. At most
:data:`MOST_FILES` paths are kept; the rest are counted.

On replay, :func:`changes` compares that value with the disk as it is when
the replayed step is done, and names each file that changed, vanished or
appeared, and each listing that gained or lost names. A record is stored
data, maybe crafted: :func:`parse_inputs` checks every field and bounds every
size before anything is read from disk or shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import blake3

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError, PinrunError
from pinrun.world.files import FileSetup, FileWatch, file_digest

__all__ = ["MOST_FILES", "MOST_NAMES", "FileChange", "FileInput", "FileInputs", "changes",
           "load_inputs", "parse_inputs", "recorded_value"]

FORMAT = 1
#: At most this many files and folders are recorded per step.
MOST_FILES = 1000
#: At most this many names of one listed folder are kept (their digest covers them all).
MOST_NAMES = 200
#: The largest stored file-inputs value read (checked before it is decoded).
LARGEST_VALUE = 4 << 20
#: The longest path a record may hold.
LONGEST_PATH = 4096
#: How many names of a changed listing a cause shows, each way.
_SHOWN_NAMES = 5


@dataclass(frozen=True)
class FileInput:
    """One file read (``names`` None) or folder listed, as recorded."""

    path: str
    #: Hex BLAKE3 of the content (or of the sorted names); None: it was absent.
    digest: str | None
    file: str | None
    line: int | None
    names: tuple[str, ...] | None = None
    count: int = 0

    @property
    def is_listing(self) -> bool:
        """Whether this is a folder listed (not a file read)."""
        return self.names is not None

    def as_value(self) -> dict[str, Any]:
        """The entry as JSON-ready data (``pinrun show --json``)."""
        value: dict[str, Any] = {"path": self.path, "digest": self.digest, "file": self.file,
                                 "line": self.line}
        if self.names is not None:
            value.update(names=list(self.names), count=self.count)
        return value


@dataclass(frozen=True)
class FileInputs:
    """A step's recorded file inputs, and how many more it read than were kept."""

    files: tuple[FileInput, ...]
    listings: tuple[FileInput, ...]
    more: int = 0


@dataclass(frozen=True)
class FileChange:
    """One input that differs from its recording: in words, and where it was read."""

    message: str
    file: str | None
    line: int | None


def listing(path: str) -> tuple[str | None, list[str]]:
    """The digest of a folder's sorted names and the names (None, []: not a folder)."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return None, []
    return blake3.blake3("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest(), names


def recorded_value(watch: FileWatch) -> tuple[dict[str, Any] | None, list[str]]:
    """The value to store for a recorded step's file inputs (None: it read none), and the
    hazards to note (more inputs than are kept)."""
    setup = watch.setup
    entries = [*((path, site, False) for path, site in watch.reads.items()),
               *((path, site, True) for path, site in watch.listings.items())]
    kept, more = entries[:MOST_FILES], max(0, len(entries) - MOST_FILES)
    files: list[dict[str, Any]] = []
    listings: list[dict[str, Any]] = []
    for path, (file, line), is_listing in kept:
        where = {"file": setup.shown(file) if file else None, "line": line}
        if is_listing:
            digest, names = listing(path)
            listings.append({"path": setup.shown(path), "digest": digest,
                             "names": names[:MOST_NAMES], "count": len(names), **where})
            continue
        digest = watch.before_writing[path] if path in watch.before_writing \
            else file_digest(path)
        if digest != "-":
            files.append({"path": setup.shown(path), "digest": digest, **where})
    hazards = [f"read {more} more files and folders than the {MOST_FILES} recorded as its "
               "inputs (a replay does not check them)"] if more else []
    if not files and not listings and not more:
        return None, hazards
    return {"format": FORMAT, "files": sorted(files, key=lambda f: f["path"]),
            "listings": sorted(listings, key=lambda f: f["path"]), "more": more}, hazards


class _BadError(Exception):
    """What is wrong with a stored file-inputs value (made a CorruptObjectError)."""


def _text(value: Any, what: str, limit: int = LONGEST_PATH) -> str:
    if type(value) is not str or not value or len(value) > limit or "\0" in value:
        raise _BadError(f"{what} should be a text of 1 to {limit} characters")
    return value


def _path(value: Any, what: str) -> str:
    text = _text(value, what)
    if not text.startswith("/") and (".." in PurePosixPath(text).parts or "\\" in text):
        raise _BadError(f"{what} should be a path inside the project, or an absolute one")
    return text


def _hex(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if type(value) is not str or len(value) != 64 or value.strip("0123456789abcdef"):
        raise _BadError(f"{what} should be 64 lowercase hex characters or null")
    return value


def _entry(value: Any, what: str, is_listing: bool) -> FileInput:
    if type(value) is not dict:
        raise _BadError(f"{what} should be an object")
    file = None if value.get("file") is None else _text(value["file"], f"{what}.file")
    line = value.get("line")
    if line is not None and (type(line) is not int or not 0 <= line < 1 << 31):
        raise _BadError(f"{what}.line should be a line number or null")
    names = None
    count: Any = 0
    if is_listing:
        raw = value.get("names")
        if type(raw) is not list or len(raw) > MOST_NAMES:
            raise _BadError(f"{what}.names should be a list of at most {MOST_NAMES} names")
        names = tuple(_text(name, f"{what}.names[]", 255) for name in raw)
        count = value.get("count")
        if type(count) is not int or not len(names) <= count < 1 << 40:
            raise _BadError(f"{what}.count should count at least its names")
    return FileInput(_path(value.get("path"), f"{what}.path"),
                     _hex(value.get("digest"), f"{what}.digest"), file, line, names, count)


def parse_inputs(value: Any, digest: Digest) -> FileInputs:
    """Check a stored file-inputs value field by field, every size bounded; a bad one
    raises :class:`~pinrun.errors.CorruptObjectError` naming ``digest``."""
    try:
        if type(value) is not dict or value.get("format") != FORMAT:
            raise _BadError(f"it should be an object of format {FORMAT}")
        found = []
        for key in ("files", "listings"):
            items = value.get(key)
            if type(items) is not list or len(items) > MOST_FILES:
                raise _BadError(f"{key} should be a list of at most {MOST_FILES} entries")
            found.append(tuple(_entry(item, f"{key}[{index}]", key == "listings")
                               for index, item in enumerate(items)))
        more = value.get("more")
        if type(more) is not int or not 0 <= more < 1 << 40:
            raise _BadError("more should be a count")
    except _BadError as exc:
        raise CorruptObjectError(digest, None, f"it is not a step's file inputs: {exc}") \
            from None
    return FileInputs(found[0], found[1], more)


def load_inputs(store: Store, digest: Digest) -> FileInputs:
    """A step's recorded file inputs, read from the store and checked."""
    kind, payload = store.load(digest)
    if kind is not Kind.VALUE:
        raise CorruptObjectError(digest, None, f"a step's file inputs were expected, it is "
                                 f"a {kind.value} object")
    if len(payload) > LARGEST_VALUE:
        raise CorruptObjectError(digest, None, f"a step's file inputs take {len(payload):,} "
                                 f"bytes, more than the {LARGEST_VALUE:,} a recording writes")
    try:
        value = codec.decode(payload)
    except PinrunError as exc:
        raise CorruptObjectError(digest, None, f"its value does not decode ({exc})") from None
    return parse_inputs(value, digest)


def _short(digest: str | None) -> str:
    return digest[:8] if digest else "absent"


def _names(prefix: str, names: list[str]) -> list[str]:
    shown = [f"{prefix}{name}" for name in names[:_SHOWN_NAMES]]
    if len(names) > _SHOWN_NAMES:
        shown.append(f"{prefix}{len(names) - _SHOWN_NAMES} more")
    return shown


def _where(root: Path, path: str) -> str:
    return path if path.startswith("/") else os.path.join(root, *path.split("/"))


#: Never read again on replay, whatever a record names: the kernel's and devices' files.
_NEVER = ("/proc", "/sys", "/dev")


def _may_read(path: str, root: Path, touched: set[str] | None) -> bool:
    """Whether a recorded path (as shown: relative to the project, or absolute) may be
    read again: one the replayed step read too (``touched``; None: the step was not
    watched, and then only a file inside the project), never under /proc, /sys or /dev."""
    where = os.path.realpath(_where(root, path))
    if any(where == top or where.startswith(f"{top}/") for top in _NEVER):
        return False
    if touched is not None:
        return path in touched
    inside = os.path.realpath(root)
    return where == inside or where.startswith(inside + os.sep)


def changes(recorded: FileInputs, setup: FileSetup,
            replayed: FileWatch | None = None) -> list[FileChange]:
    """What differs now from a step's recorded file inputs: each file changed, vanished
    or appeared, each listing changed; and the files the replayed step read (when
    watched) that the recorded one did not."""
    found: list[FileChange] = []
    # A record may be someone else's: a replay reads again only what the replayed step
    # read too (or, unwatched, a file inside the project), never the kernel's files.
    read_now = {setup.shown(path) for path in replayed.reads} if replayed else None
    listed_now = {setup.shown(path) for path in replayed.listings} if replayed else None
    as_read = {setup.shown(path): digest
               for path, digest in replayed.before_writing.items()} if replayed else {}
    for item in dict.fromkeys(recorded.files):  # each path once, however often recorded
        if setup.is_ignored(item.path) or \
                not _may_read(item.path, setup.root, read_now):
            continue
        now = as_read[item.path] if item.path in as_read else \
            file_digest(_where(setup.root, item.path))
        if now == item.digest:
            continue
        if now is None:
            message = f"input file vanished: {item.path} (recorded {_short(item.digest)})"
        elif item.digest is None:
            message = f"input file appeared: {item.path} (absent when recorded)"
        elif now == "-":
            message = f"input file changed: {item.path} (it is no longer a regular file)"
        else:
            message = f"input file changed: {item.path} ({_short(item.digest)} -> {now[:8]})"
        found.append(FileChange(message, item.file, item.line))
    for item in dict.fromkeys(recorded.listings):
        if setup.is_ignored(item.path) or not _may_read(item.path, setup.root, listed_now):
            continue
        digest, names = listing(_where(setup.root, item.path))
        if digest == item.digest:
            continue
        folder = item.path if item.path.endswith("/") else f"{item.path}/"
        if digest is None:
            message = f"listing changed: {folder} (the folder vanished)"
        elif item.digest is None:
            message = f"listing changed: {folder} (the folder appeared)"
        elif item.names is not None and len(item.names) == item.count:
            before = set(item.names)
            added = [name for name in names if name not in before]
            removed = sorted(before - set(names))
            shown = [*_names("+", added), *_names("-", removed)]
            message = f"listing changed: {folder} ({', '.join(shown) or 'other names'})"
        else:
            message = f"listing changed: {folder} ({item.count} names -> {len(names)})"
        found.append(FileChange(message, item.file, item.line))
    if replayed is not None and not recorded.more:
        known = {item.path for item in recorded.files}
        new = [(setup.shown(path), file, line) for path, (file, line) in replayed.reads.items()
               if setup.shown(path) not in known]
        found += [FileChange(f"input file not in the recording: {shown} (the replayed step "
                             "read it, the recorded one did not)",
                             setup.shown(file) if file else None, line)
                  for shown, file, line in new[:_SHOWN_NAMES]]
    return found
