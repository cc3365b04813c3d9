"""The world guard: network connections and subprocesses a step makes around its context.

A replay must not reach the outside world: a step that calls an HTTP API
directly (not through ``ctx.effect``) would call it again on every replay,
and on a laptop replaying a production run, or in CI, a stray call to a
payment API is an incident. So while a step is watched, an audit hook
(:func:`sys.addaudithook`) sees every connection (``socket.connect``, a DNS
look-up, ``sendto``; the loopback address included: a database on localhost
is the world too) and every process started (``subprocess.Popen``,
``os.system``, ``os.exec*``, ``os.posix_spawn``, ``os.fork``...), wherever
the call comes from, and:

- during a replay, refuses it (:func:`refusal`: a
  :class:`~pinrun.errors.WorldRefusedError` raised inside the step,
  naming the call and the project's file and line), unless the replay
  allows the world (``allow_world=True``, ``--allow-world``), when
  it is only noted;
- while recording, notes it, so the step's record carries a hazard
  (:func:`world_hazards`) and ``pinrun show`` warns before anyone replays
  it. Calls made inside ``ctx.effect`` are what effects are for: the
  context marks them (:func:`inside_effect`) and they are not noted.

Only a step being watched is concerned (a context variable says which), so
what pinrun itself does around steps (its store, its worker processes) is
never refused. A thread a step starts has an empty context: while a replay
refuses the world, a call made in a thread with the project's code on its
stack is refused all the same (noting calls at record time does not reach
into threads). One hook is installed per process, on first use,
and stays idle (a set look-up per audit event) while no step is watched.
"""

from __future__ import annotations

import sys
import sysconfig
import threading
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinrun.errors import WorldRefusedError
from pinrun.world_calls import EVENTS, FORK_EXEC_EVENT

__all__ = ["GuardedCall", "ReplayWatch", "WorldWatch", "inside_effect", "recording_guard",
           "refusal", "refusing_world", "watching_world", "world_hazards"]


@dataclass(frozen=True)
class GuardedCall:
    """One call a step made around its context: what, of which kind, and where."""

    kind: str
    call: str
    file: str | None
    line: int | None
    #: The call in words, for a hazard ("connected to 127.0.0.1:8123"); empty if none.
    what: str = ""
    #: Whether the guard refused it (the step got a :func:`refusal`).
    refused: bool = False

    def __str__(self) -> str:
        where = f" at {self.file}:{self.line}" if self.file else ""
        return f"{self.call} ({self.kind}){where}"


def refusal(call: GuardedCall) -> WorldRefusedError:
    """The error a refused call raises in the step: a
    :class:`~pinrun.errors.WorldRefusedError` naming the call and where it was made,
    with the :class:`GuardedCall` as its ``call`` attribute."""
    where = f" at {call.file}:{call.line}" if call.file else ""
    return WorldRefusedError(
        f"replay refused {call.call}{where}: a replay does not reach the outside world "
        f"({call.kind}); make the call through ctx.effect(name, fn, ...) so the replay "
        "answers from the record, or replay with --allow-world (allow_world=True) to let "
        "it through", call)


@dataclass(eq=False)  # each watch is itself (kept in a list, removed by identity)
class WorldWatch:
    """What one watched step's world calls go to, and whether they are refused."""

    refuse: bool
    #: The project's source files: the innermost frame in one of them is the call site.
    files: frozenset[str] = frozenset()
    calls: list[GuardedCall] = field(default_factory=list)


_WATCH: ContextVar[WorldWatch | None] = ContextVar("pinrun_world_watch", default=None)
_IN_EFFECT: ContextVar[bool] = ContextVar("pinrun_in_effect", default=False)


class inside_effect:  # noqa: N801 - used as a function: with inside_effect()
    """Mark the block as an effect function running (``ctx.effect``): its world calls are
    the effect's, recorded as such, and not noted as the step's.

    A class rather than a generator: it is entered around every recorded effect.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _IN_EFFECT.set(True)

    def __exit__(self, *exc_info: object) -> None:
        _IN_EFFECT.reset(self._token)


#: Code that is not the project's: pinrun, the standard library, installed distributions.
_LIBRARIES = tuple(dict.fromkeys(str(Path(p).resolve()) for key, p in sysconfig.get_paths().items()
                                 if key in ("stdlib", "platstdlib", "purelib", "platlib")))
_PINRUN = str(Path(__file__).resolve().parent)


def _call_site(watch: WorldWatch) -> types.FrameType | None:
    """The frame in the project's code that made the call: the innermost in one of its
    files, else the innermost outside pinrun and the libraries."""
    frame: types.FrameType | None = sys._getframe(2)  # _audit's caller: the calling code
    first = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name in watch.files:
            return frame
        if first is None and not name.startswith("<frozen"):
            resolved = str(Path(name).resolve())
            if not resolved.startswith((_PINRUN, *_LIBRARIES)):
                first = frame
        frame = frame.f_back
    return first


@dataclass(eq=False)  # each replay is itself (kept in a list, removed by identity)
class ReplayWatch:
    """A replay that refuses the world from its start to its end.

    The step being replayed has a watch of its own; this one covers what no
    step watch sees: the project's modules imported for the replay, the
    threads a step starts (they begin with an empty context), a thread that
    outlives its step, and steps run with ``guards="off"``. A call is the
    replay's when it is made in the thread replaying, or in a thread that
    was not running when the replay began, or that began during an earlier
    replay (a module-level pool a step filled); the process's own threads,
    started outside any replay, are not the replay's.
    """

    owner: int
    others: frozenset[int]
    #: Calls refused outside a step's watch, until the replay takes them (:meth:`drain`).
    calls: list[GuardedCall] = field(default_factory=list)

    def drain(self) -> list[GuardedCall]:
        """The calls refused since the last drain (the replay gives them to its step)."""
        taken, self.calls[:] = list(self.calls), []
        return taken


_REPLAYS: list[ReplayWatch] = []
#: Threads started while a replay refused the world, and still alive: the replay's.
_BORN_IN_REPLAY: set[int] = set()
_REAL_FORK_EXEC: list[Callable[..., Any]] = []


def _replay_watch() -> WorldWatch | None:
    """The refusing watch for a call no step watch covers, when a replay owns it."""
    ident = threading.get_ident()
    for replay in list(_REPLAYS):
        if ident == replay.owner or ident not in replay.others:
            return WorldWatch(refuse=True, calls=replay.calls)
    return None


def _guarded_fork_exec(*args: Any, **kwargs: Any) -> Any:
    """``_posixsubprocess.fork_exec`` has no audit event (multiprocessing's spawn calls it
    directly): while a replay refuses the world, it is judged as one."""
    _audit(FORK_EXEC_EVENT, args[:1])
    return _REAL_FORK_EXEC[0](*args, **kwargs)


@contextmanager
def refusing_world() -> Iterator[ReplayWatch]:
    """Refuse the world for a whole replay (see :class:`ReplayWatch`)."""
    if not _HOOK:
        _install_hook()
    owner = threading.get_ident()
    alive = {thread.ident for thread in threading.enumerate() if thread.ident is not None}
    replay = ReplayWatch(owner, frozenset(alive - _BORN_IN_REPLAY - {owner}))
    with _LOCK:
        if not _REPLAYS:
            import _posixsubprocess  # the door multiprocessing's spawn goes through

            _REAL_FORK_EXEC[:] = [_posixsubprocess.fork_exec]
            _posixsubprocess.fork_exec = _guarded_fork_exec
        _REPLAYS.append(replay)
    try:
        yield replay
    finally:
        alive = {thread.ident for thread in threading.enumerate() if thread.ident is not None}
        with _LOCK:
            _REPLAYS.remove(replay)
            _BORN_IN_REPLAY.intersection_update(alive)  # an ident may be reused once dead
            _BORN_IN_REPLAY.update(alive - replay.others - {owner})
            if not _REPLAYS:
                import _posixsubprocess

                _posixsubprocess.fork_exec = _REAL_FORK_EXEC.pop()


_LOCK = threading.Lock()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    found = EVENTS.get(event)  # first, and cheap: the hook sees every audit event
    if found is None or _IN_EFFECT.get():
        return
    watch = _WATCH.get()
    if watch is None:
        watch = _replay_watch() if _REPLAYS else \
            _step_thread_watch() if _RECORDING[0] else None
        if watch is None:
            return
    kind, describe = found
    try:
        described = describe(event, args)
    except Exception:  # arguments of an unexpected shape: name the event at least
        described = (f"{event}(...)", event)
    if described is None:
        return
    try:
        frame = _call_site(watch)
    except (ValueError, OSError):  # no frame that deep, a path that cannot be resolved
        frame = None
    call = GuardedCall(kind, described[0], frame.f_code.co_filename if frame else None,
                       frame.f_lineno if frame else None, described[1], watch.refuse)
    watch.calls.append(call)
    if watch.refuse:
        raise refusal(call)


_HOOK: list[bool] = []


def _install_hook() -> None:
    """Install the audit hook, once per process (a hook cannot be removed)."""
    if not _HOOK:
        _HOOK.append(True)
        sys.addaudithook(_audit)


class watching_world:  # noqa: N801 - used as a function: with watching_world(watch)
    """Watch the world calls made in this context while the block runs (one step).

    A class rather than a generator: it is entered around every recorded step,
    so it costs two context-variable operations and nothing more.
    """

    __slots__ = ("_token", "_watch")

    def __init__(self, watch: WorldWatch) -> None:
        self._watch = watch
        self._token: Token[WorldWatch | None] | None = None

    def __enter__(self) -> list[GuardedCall]:
        if not _HOOK:
            _install_hook()
        self._token = _WATCH.set(self._watch)
        return self._watch.calls

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _WATCH.reset(self._token)
            self._token = None


_REAL_START: list[Callable[[threading.Thread], None]] = []
_RECORDING = [0]  # how many steps are being recorded now (Thread.start is wrapped meanwhile)


def _start_watched(thread: threading.Thread) -> None:
    """``Thread.start`` while steps are recorded: a thread started inside a step (by the
    step, or by the pool it submits to) takes the step's watch with it."""
    watch = _WATCH.get()
    if watch is not None:
        thread._pinrun_watch = watch  # type: ignore[attr-defined]  # read by _audit
    _REAL_START[0](thread)


def _step_thread_watch() -> WorldWatch | None:
    """The noting watch of the recorded step that started this thread, if one did."""
    found: WorldWatch | None = getattr(threading.current_thread(), "_pinrun_watch", None)
    return found


class recording_guard:  # noqa: N801 - the engine's StepGuard: recording_guard()
    """A fresh watch for one step being recorded: world calls are noted, never refused.

    This is the engine's ``StepGuard`` (``run_level(..., guard=recording_guard)``);
    the list it yields holds the step's :class:`GuardedCall` s for
    :func:`world_hazards`. A thread the step starts (directly or through a
    pool it submits to) begins with an empty context, so while steps are
    recorded ``Thread.start`` hands the starting step's watch to the thread:
    its calls are the step's too. Threads the process started otherwise (a
    server's) are not watched.
    """

    __slots__ = ("_watching",)

    def __enter__(self) -> list[GuardedCall]:
        self._watching = watching_world(WorldWatch(refuse=False))
        with _LOCK:
            if _RECORDING[0] == 0:
                _REAL_START[:] = [threading.Thread.start]
                setattr(threading.Thread, "start", _start_watched)  # noqa: B010 - a method
            _RECORDING[0] += 1
        return self._watching.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._watching.__exit__(*exc_info)
        with _LOCK:
            _RECORDING[0] -= 1
            if _RECORDING[0] == 0:
                setattr(threading.Thread, "start", _REAL_START.pop())  # noqa: B010


#: At most this many call sites are named on one step (a loop must not flood the record).
_MOST_SITES = 10


def world_hazards(calls: list[Any], root: Path | None = None) -> list[str]:
    """The hazards of a recorded step's world calls: one per call site, with a count.

    ``root`` is the project folder: a file under it is named relative to it.
    """
    sites: Counter[tuple[str, str | None, int | None]] = Counter(
        (call.what or call.call, call.file, call.line) for call in calls
        if isinstance(call, GuardedCall))
    # A connection looks its address up first: the connection alone says it.
    for what, file, line in list(sites):
        if what.startswith("looked up ") and \
                (f"connected to {what[len('looked up '):-len(' (DNS)')]}", file, line) in sites:
            del sites[what, file, line]
    hazards = []
    for (what, file, line), count in list(sites.items())[:_MOST_SITES]:
        where = f" at {_relative(file, root)}:{line}" if file else ""
        times = f" ({count} times)" if count > 1 else ""
        hazards.append(f"{what}{times} outside ctx.effect{where} (a replay will refuse it)")
    if len(sites) > _MOST_SITES:
        hazards.append(f"... and {len(sites) - _MOST_SITES} more calls to the outside world "
                       "outside ctx.effect")
    return hazards


def _relative(file: str, root: Path | None) -> str:
    if root is None:
        return file
    try:
        return Path(file).resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return file
