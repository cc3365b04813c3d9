"""Files a step reads are inputs: the watch of files opened for reading and folders listed.

A step that reads ``config/settings.ini`` depends on it as much as on the
state keys it reads, but the record only knows the state. So while a step
runs, an audit hook (:func:`sys.addaudithook`) sees every ``open``
(``builtins.open``, ``io.open``, ``os.open``, ``pathlib``'s reads) and every
``os.listdir``/``os.scandir`` (which ``glob``, ``os.walk`` and ``pathlib``'s
``iterdir``/``glob`` go through) made by the step's code or by a library on
its behalf, and keeps, per path, where in the project the first one was made.
When the step is done, each file read is digested (BLAKE3, streamed) and
each folder listed is listed again (its sorted names and their digest):
:mod:`pinrun.world.file_inputs` keeps that as the step's file inputs, which a
replay compares with the disk as it is then.

What is not an input: a file opened for writing (and a file the step wrote
before it read it back: its output), what Python reads to import a module
(``importlib``) or to show a traceback (``linecache``), anything under the
Python installation (the standard library, site-packages), pinrun itself,
the store, ``/proc``, ``/sys`` and ``/dev``, reads made inside
``ctx.effect`` (recorded as the effect's), and the paths the project
excludes (``[tool.pinrun] ignore_files`` in ``pyproject.toml``,
``$PINRUN_IGNORE_FILES``).

Under ``--guards strict`` a replayed step that reads a file or lists a folder
is refused: a :class:`~pinrun.errors.NondeterminismError` naming the path and
the project's file and line, as Temporal's sandbox refuses file access.

The world's one audit hook (:func:`pinrun.world.refusal.watch_events`: every
hook is called for every audit event in the process, so there is one) hands
these events over; while no step is watched, one costs a context-variable read.
"""

from __future__ import annotations

import linecache
import os
import stat
import sys
import threading
import tokenize
import types
from collections.abc import Callable
from contextlib import AbstractContextManager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import blake3

from pinrun.artifacts.kept import Kept
from pinrun.data_classes import data_class
from pinrun.errors import InputError, NondeterminismError
from pinrun.flows.project import pyproject
from pinrun.flows.variables import environment_variable
from pinrun.world import refusal
from pinrun.world.attribution import INSTALLED, is_library_code
from pinrun.world.refusal import GuardedCall

__all__ = [
    "IGNORE_VARIABLE",
    "FileGuard",
    "FileSetup",
    "FileWatch",
    "files_read",
    "ignore_patterns",
    "stop_watching_files",
    "watch_files",
]

#: The environment variable naming paths that are never inputs (comma-separated globs).
IGNORE_VARIABLE = "PINRUN_IGNORE_FILES"

_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: Where a read is Python's own (an import, a traceback's source lines), not the step's.
_PYTHONS_OWN = ("<frozen importlib", "<frozen zipimport")


_SYSTEM = (f"{os.sep}proc{os.sep}", f"{os.sep}sys{os.sep}", f"{os.sep}dev{os.sep}")
#: Reading source lines for a traceback or a warning is not the step's read.
_LINECACHE = frozenset(os.path.normpath(m.__file__) for m in (linecache, tokenize) if m.__file__)


def ignore_patterns(root: Path) -> tuple[str, ...]:
    """The paths the project says are never inputs: ``[tool.pinrun] ignore_files`` in its
    ``pyproject.toml``, then ``$PINRUN_IGNORE_FILES`` (comma-separated), as globs."""
    variable = environment_variable(IGNORE_VARIABLE) or ""
    # Asked at every run: the file's size and times say whether to read it again (one
    # stat, no path objects), as pyproject() would say.
    folder = os.fspath(root)
    if not os.path.isabs(folder):  # another folder after a chdir
        folder = os.path.abspath(folder)
    try:
        info = os.stat(os.path.join(folder, "pyproject.toml"))
        seen: tuple[int, ...] = (info.st_mtime_ns, info.st_ctime_ns, info.st_size,
                                  info.st_ino)
    except OSError:
        seen = ()  # none there (or unreadable): no patterns from it
    known = _PATTERNS.get((folder, variable))
    if known is not None and known[0] == seen:
        return known[1]
    patterns: list[str] = []
    data = pyproject(root)
    tool = data.get("tool", {})
    pinrun = tool.get("pinrun", {}) if isinstance(tool, dict) else {}
    listed = pinrun.get("ignore_files", []) if isinstance(pinrun, dict) else []
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise InputError(f"{root / 'pyproject.toml'}: [tool.pinrun] ignore_files should be "
                         'a list of globs, such as ignore_files = ["logs/**", "*.tmp"]')
    patterns += [item for item in listed if item]
    patterns += [part.strip() for part in variable.split(",") if part.strip()]
    return _PATTERNS.put((folder, variable), (seen, tuple(patterns)))[1]


#: Per project folder and $PINRUN_IGNORE_FILES: the pyproject.toml's size and times when
#: read, and the patterns then (owner-free: data about a file, checked at every ask).
_PATTERNS: Kept[tuple[str, str], tuple[tuple[int, ...], tuple[str, ...]]] = Kept(64)


@data_class(frozen=True)
class FileSetup:
    """What a watch needs to know of the project: its root, its store, what it excludes."""

    root: Path
    #: Paths under these are never inputs (the store).
    excluded: tuple[str, ...] = ()
    #: Globs (``logs/**``, ``*.tmp``) matched against the path shown (relative to the root).
    ignored: tuple[str, ...] = ()
    #: Refuse reads (``--guards strict``) instead of noting them.
    strict: bool = False
    #: The project's source files: the innermost frame in one is the call site.
    files: frozenset[str] = frozenset()

    @classmethod
    def for_store(cls, store_path: Path, root: Path, *, strict: bool = False,
                  files: frozenset[str] = frozenset()) -> FileSetup:
        """The setup for steps run against the store at ``store_path`` in project ``root``.

        The ignore patterns are read each time (an edited ``pyproject.toml`` applies
        to the next run); the setup they give is made once per process and kept, as
        a recorder or a worker asks for the same one at every run. Paths are made
        absolute first: a relative root means another folder after a ``chdir``.
        """
        ignored = ignore_patterns(root)
        store_folder, project = os.fspath(store_path), os.fspath(root)
        # Absolute paths name the same folders whatever the working one: kept as given
        # (normalized once, when made); a relative one is made absolute first.
        if not (os.path.isabs(store_folder) and os.path.isabs(project)):
            store_folder, project = os.path.abspath(store_folder), os.path.abspath(project)
        key = (store_folder, project, strict, files, ignored)
        found = _SETUPS.get(key)
        if found is None:
            found = _SETUPS.put(key, cls(Path(os.path.normpath(project)),
                                         (os.path.normpath(store_folder) + os.sep,), ignored,
                                         strict, files))
        return found

    def shown(self, path: str) -> str:
        """``path`` (absolute, normalized) as a record names it: relative to the root when
        under it (POSIX form), else absolute."""
        root = str(self.root)
        if path == root:
            return "."
        if path.startswith(root + os.sep):
            return Path(path[len(root) + 1:]).as_posix()
        return path

    def is_ignored(self, shown: str) -> bool:
        """Whether the project excludes the path (a glob matches it, or its folder)."""
        base = shown.rsplit("/", 1)[-1]
        return any(fnmatchcase(shown, pattern) or fnmatchcase(shown + "/", pattern)
                   or ("/" not in pattern and fnmatchcase(base, pattern))
                   for pattern in self.ignored)

    def is_excluded(self, path: str) -> bool:
        """Whether an absolute path is never an input (Python's, pinrun's, the store's...)."""
        return path.startswith((*INSTALLED, *_SYSTEM, *self.excluded)) or \
            f"{os.sep}__pycache__{os.sep}" in path or path in self.files


#: Where a read was made in the project: its file and line (None when unknown).
Site = tuple[str | None, int | None]


class FileWatch:
    """The files one step read and the folders it listed, with where each first was.
    Each watch is itself (no equality); made for every guarded step, so a plain class."""

    __slots__ = ("before_writing", "calls", "listings", "reads", "setup", "written")

    def __init__(self, setup: FileSetup, calls: list[Any] | None = None) -> None:
        self.setup = setup
        #: Where a strict refusal is noted (the step's guarded calls; None once the
        #: step is done, when those calls hold this watch).
        self.calls: list[Any] | None = [] if calls is None else calls
        #: Absolute path -> where it was first read / listed, in the order first seen.
        self.reads: dict[str, Site] = {}
        self.listings: dict[str, Site] = {}
        #: Files the step opened for writing (read back afterwards: its own output).
        self.written: set[str] = set()
        #: Files the step read, then opened for writing: their digest as the step read
        #: them (taken as the write begins; when the step is done they hold what it wrote).
        self.before_writing: dict[str, str | None] = {}

    def saw(self, event: str, args: tuple[Any, ...]) -> GuardedCall | None:
        """Note one audit event; returns the call to refuse (strict) or None."""
        raw = args[0] if args else None
        if event == "open":
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = bool(flags & _WRITING) or (isinstance(args[1], str) and
                                                 any(c in args[1] for c in "wax+"))
        else:
            writing = False
            raw = "." if raw is None else raw
        if isinstance(raw, int) or raw is None:
            return None  # a file descriptor: opened already, or a folder's descriptor
        path = os.path.normpath(os.path.join(os.getcwd(), os.fsdecode(raw)))
        if writing:
            if path in self.reads and path not in self.before_writing:
                # The audit event comes before the open: the content is still what was read.
                self.before_writing[path] = file_digest(path)
            self.written.add(path)
            return None
        if self.setup.is_excluded(path) or (event == "open" and path in self.written):
            return None
        known = self.reads if event == "open" else self.listings
        if path in known and not self.setup.strict:
            return None
        site = self._site()
        if site is None:
            return None  # Python's own read: an import, a traceback's source lines
        shown = self.setup.shown(path)
        if self.setup.is_ignored(shown):
            return None
        known.setdefault(path, site)
        if not self.setup.strict:
            return None
        call = f"open({shown!r}) for reading" if event == "open" else f"{event}({shown!r})"
        noted = GuardedCall("file system", call, *site, refused=True)
        if self.calls is not None:  # None once the step is done
            self.calls.append(noted)
        return noted

    def _site(self) -> Site | None:
        """The project's frame that made the read (see :data:`Site`); None when the read
        is Python's own (an import or ``linecache``) or no code outside the libraries made
        it."""
        frame: types.FrameType | None = sys._getframe(1)
        first: Site | None = None
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith(_PYTHONS_OWN) or name in _LINECACHE:
                return None
            if name in self.setup.files:
                return name, frame.f_lineno
            if first is None and not name.startswith("<frozen") and name != __file__ and \
                    not is_library_code(name):
                first = name, frame.f_lineno
            frame = frame.f_back
        return first


_CHUNK = 1 << 20


def file_digest(path: str) -> str | None:
    """Hex BLAKE3 of a regular file's content, streamed; None when absent or unreadable,
    ``"-"`` when it is not a regular file (a pipe, a device: never read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "-"
        hasher = blake3.blake3()
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                hasher.update(chunk)
    except OSError:
        return None
    return hasher.hexdigest()


_HOOK: list[bool] = []
_LOCK = threading.Lock()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook's handler of ``_EVENTS`` (see :func:`refusal.watch_events`)."""
    step = refusal.current_watch()
    watch: FileWatch | None = step.file_watch if step is not None else None
    if watch is None:
        thread = threading.current_thread()
        # A recorded step's thread carries the step's world watch, a replay's thread the
        # replay's: each knows the file watch of the step running now.
        world = getattr(thread, "_pinrun_watch", None) or \
            getattr(thread, "_pinrun_replay", None)
        watch = getattr(world, "file_watch", None)
        if watch is None:
            return
    if refusal.in_effect():
        return
    try:
        refused = watch.saw(event, args)
    except Exception:  # an argument of an unexpected shape: never break the step's open
        return
    if refused is not None:
        raise NondeterminismError(
            f"the step called {refused} outside its context; pass the content in as an "
            "input, read it through ctx.effect(), or exclude the path "
            f"([tool.pinrun] ignore_files, ${IGNORE_VARIABLE})")


def _install_hook() -> None:
    with _LOCK:
        if not _HOOK:
            refusal.watch_events(_EVENTS, _audit)
            _HOOK.append(True)


#: A step guard (the engine's ``StepGuard``).
Guard = Callable[[], AbstractContextManager[list[Any]]]


class FileGuard:
    """A step guard that watches the files a step reads, around another guard.

    ``FileGuard(recording_guard, setup)`` is itself a guard: the list it yields
    is the inner guard's, and when the step is done its :class:`FileWatch` is
    appended there, so it travels with the step's outcome (:func:`files_read`).
    While the step runs, the file watch rides on the step's world watch
    (:class:`~pinrun.world.refusal.WorldWatch`, which the inner guard enters):
    an inner guard that enters none watches no reads.
    """

    __slots__ = ("inner", "replay", "setup")

    def __init__(self, inner: Guard, setup: FileSetup,
                 replay: refusal.ReplayWatch | None = None) -> None:
        self.inner = inner
        self.setup = setup
        #: The replay whose steps these are, if one refuses the world: its threads read
        #: for the step running now.
        self.replay = replay

    def __call__(self) -> _Watching:
        return _Watching(self)


class _Watching:
    __slots__ = ("_guard", "_inner", "_world")

    def __init__(self, guard: FileGuard) -> None:
        self._guard = guard
        self._world: refusal.WorldWatch | None = None

    def __enter__(self) -> list[Any]:
        guard = self._guard
        self._inner = guard.inner()
        noticed: list[Any] = self._inner.__enter__()
        self._world = refusal.current_watch()
        if self._world is not None:
            watch_files(self._world, guard.setup, guard.replay)
        return noticed

    def __exit__(self, *exc_info: Any) -> bool | None:
        if self._world is not None:
            stop_watching_files(self._world, self._guard.replay)
        return self._inner.__exit__(*exc_info)


def watch_files(world: refusal.WorldWatch, setup: FileSetup,
                replay: refusal.ReplayWatch | None) -> None:
    """Watch the files read by the step whose world watch is ``world`` (entered), until
    :func:`stop_watching_files`. The file watch rides on the world watch: the step's
    reads and those of the threads it starts (which carry that watch) go to it; and
    the replay's threads read for the step running now (steps of one level running
    concurrently share them: the last to start gets their reads)."""
    if not _HOOK:
        _install_hook()
    watch = world.file_watch = FileWatch(setup, world.calls)
    if replay is not None:
        replay.file_watch = watch


def stop_watching_files(world: refusal.WorldWatch, replay: refusal.ReplayWatch | None) -> None:
    """Stop watching the step's reads: its :class:`FileWatch` joins its guarded calls,
    so it goes with its outcome (:func:`files_read`)."""
    watch, world.file_watch = world.file_watch, None
    if replay is not None and replay.file_watch is watch:
        replay.file_watch = None
    # The calls hold the watch from now on, not the other way round as well: no cycle,
    # so a step's watch goes as soon as its outcome does, never by the collector
    # (which a cycle per step would run every few dozen replays).
    watch.calls = None
    world.calls.append(watch)


def files_read(guarded: list[Any]) -> FileWatch | None:
    """The file watch among a step's guarded calls (None: no file was watched)."""
    for item in guarded:  # (a loop, not a generator: asked for every step)
        if isinstance(item, FileWatch):
            return item
    return None


#: File setups made (owner-free: keyed by folders, flags, file names and patterns, all
#: data; a setup is frozen, so one is shared by every run that asks for it).
_SETUPS: Kept[tuple[str, str, bool, frozenset[str], tuple[str, ...]], FileSetup] = Kept(64)
