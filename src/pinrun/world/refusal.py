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
The hook is a C gate where the C module was built (:mod:`pinrun.world._speedups`):
Python raises an audit event for every ``id()`` and every read of a function's
``__code__``, and a hook written in Python made each one a Python call (about
35 times the event's own cost: ``copy.deepcopy`` ran 2.4 times slower in a
process pinrun had watched). The gate calls the Python handler only for the
events it watches.
"""

from __future__ import annotations

import sys
import threading
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from pathlib import Path
from typing import Any

from pinrun.data_classes import data_class
from pinrun.errors import NondeterminismError, WorldRefusedError
from pinrun.world.attribution import is_library_code
from pinrun.world.calls import EVENTS, FORK_EXEC_EVENT

__all__ = [
    "GuardedCall",
    "ReplayWatch",
    "WorldWatch",
    "current_watch",
    "in_effect",
    "inside_effect",
    "owning_replay",
    "recording_guard",
    "refusal",
    "refuse_at_exit",
    "refuse_from_now_on",
    "refusing_world",
    "watching_world",
    "world_hazards",
]


@data_class(frozen=True)
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


class WorldWatch:
    """What one watched step's calls go to: its world calls (refused or noted) and, in
    a guarded replay, its guards' notes (:mod:`pinrun.world.stand_ins`) and the files
    it reads (:mod:`pinrun.world.files`). One object in one context variable per
    step, as it is made around every step. Each watch is itself (no equality)."""

    __slots__ = ("calls", "file_watch", "files", "guarded", "refuse", "strict")

    def __init__(self, refuse: bool, files: frozenset[str] = frozenset(),
                 calls: list[GuardedCall] | None = None, *, guarded: bool = False,
                 strict: bool = False) -> None:
        #: Whether a world call is refused (a replay) or only noted (a recording).
        self.refuse = refuse
        #: The project's source files: the innermost frame in one of them is the call site.
        self.files = files
        self.calls: list[GuardedCall] = [] if calls is None else calls
        #: Whether the guards' stand-ins note the step's calls (a replayed step, guarded).
        self.guarded = guarded
        #: Whether they refuse them instead (``--guards strict``).
        self.strict = strict
        #: The step's file watch (:mod:`pinrun.world.files`) while it runs, for its reads
        #: and those of the threads it starts (marked with this watch).
        self.file_watch: Any = None


def current_watch() -> WorldWatch | None:
    """The world watch of the step running in this context, if any."""
    return _WATCH.get()


def enter_watch(watch: WorldWatch) -> Token[WorldWatch | None]:
    """Make ``watch`` the one of this context, until :func:`leave_watch` (the hook
    installed if need be)."""
    if not _HOOK:
        _install_hook()
    return _WATCH.set(watch)


def leave_watch(token: Token[WorldWatch | None]) -> None:
    """Put back the watch :func:`enter_watch` replaced."""
    _WATCH.reset(token)


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


def in_effect() -> bool:
    """Whether an effect function is running in this context (``ctx.effect``): what it
    does in the world is the effect's, not the step's."""
    return _IN_EFFECT.get()


def _call_site(watch: WorldWatch) -> types.FrameType | None:
    """The frame in the project's code that made the call: the innermost in one of its
    files, else the innermost outside pinrun and the libraries."""
    frame: types.FrameType | None = sys._getframe(2)  # _audit's caller: the calling code
    first = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name in watch.files:
            return frame
        if first is None and not name.startswith("<frozen") and not is_library_code(name):
            first = frame
        frame = frame.f_back
    return first


class ReplayWatch(WorldWatch):
    """A replay that refuses the world from its start to its end, and its threads after.

    The step being replayed has a watch of its own; this one covers what no
    step watch sees: the project's modules imported for the replay, steps run
    with ``guards="off"``, and the replay's threads. A thread is the replay's
    when the replaying thread, or another of the replay's threads, started
    it (a step's pool, a timer): ``Thread.start`` marks it, and it stays
    refused after the replay ends. A thread the process had before (a pool
    warmed earlier) is refused while the project's code is on its stack; the
    process's other threads are not the replay's.

    Its ``files`` (the project's source files) are set once they are known
    (empty: not checked); its ``calls`` are those refused outside a step's
    watch, until the replay takes them (:meth:`drain`), and the guards' notes
    from the replay's threads; ``strict`` says whether the guards refuse what
    they note there; its ``file_watch`` is that of the step running now, for
    the reads of the replay's threads (None between steps).
    """

    __slots__ = ("owner",)

    def __init__(self, owner: int) -> None:
        super().__init__(refuse=True, guarded=True)
        #: The thread that runs the replay.
        self.owner = owner

    def drain(self) -> list[GuardedCall]:
        """The calls refused since the last drain (the replay gives them to its step)."""
        taken, self.calls[:] = list(self.calls), []
        return taken


_REPLAYS: list[ReplayWatch] = []
#: Whether a thread was ever marked as a replay's: until then, a call outside a step's
#: watch needs no look at its thread (the guards' stand-ins ask on every call).
MARKED = [False]
#: Set once a replay command is done with the world for good (see :func:`refuse_from_now_on`).
_FOREVER: list[ReplayWatch] = []
_REAL_FORK_EXEC: list[Callable[..., Any]] = []
_REAL_START: list[Callable[[threading.Thread], None]] = []
_LOCK = threading.Lock()


def _replay_watch() -> WorldWatch | None:
    """The refusing watch for a call no step watch covers, when a replay owns it (or the
    process refuses for good: a verify worker, once a command is done)."""
    mine: ReplayWatch | None = getattr(threading.current_thread(), "_pinrun_replay", None)
    if mine is not None:  # started by a replay: refused, even after it ended
        return mine
    ident = threading.get_ident()
    for replay in list(_REPLAYS):
        if ident == replay.owner or (replay.files and _runs_project_code(replay.files)):
            return replay
    # Last: a replay's own list is where its report finds the calls it refused.
    return _FOREVER[0] if _FOREVER else None


def owning_replay() -> ReplayWatch | None:
    """The replay this thread runs (as its owner, or as a thread it started), if any."""
    mine: ReplayWatch | None = getattr(threading.current_thread(), "_pinrun_replay", None)
    if mine is not None:
        return mine
    ident = threading.get_ident()
    return next((found for found in list(_REPLAYS) if found.owner == ident), None)


def _runs_project_code(files: frozenset[str]) -> bool:
    frame: types.FrameType | None = sys._getframe(3)
    while frame is not None:
        if frame.f_code.co_filename in files:
            return True
        frame = frame.f_back
    return False


def _start_marked(thread: threading.Thread) -> None:
    """``Thread.start``, marking whose the new thread is: a replay's (started by its
    thread, or by one of its threads), or a recorded step's (started inside the step,
    by the step or by the pool it submits to). Its calls are then theirs."""
    replay = owning_replay()
    if replay is not None:
        thread._pinrun_replay = replay  # type: ignore[attr-defined]  # read by _audit
        MARKED[0] = True
    else:
        watch = _WATCH.get()
        if watch is not None and not watch.refuse:
            thread._pinrun_watch = watch  # type: ignore[attr-defined]
    _REAL_START[0](thread)


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
    replay = ReplayWatch(threading.get_ident())
    with _LOCK:
        _REPLAYS.append(replay)
    try:
        yield replay
    finally:
        with _LOCK:
            _REPLAYS.remove(replay)


def refuse_at_exit() -> None:
    """Refuse the world from the moment this interpreter starts to exit: a replay command
    calls it when done, so an ``atexit`` hook or a finalizer the replayed code left (a
    metrics client flushing) cannot reach the world as the process ends. Hooks run last
    registered first, so this one runs before any the replayed code registered."""
    import atexit

    with _LOCK:
        if _AT_EXIT:
            return
        _AT_EXIT.append(True)
    atexit.register(refuse_from_now_on)


_AT_EXIT: list[bool] = []


def refuse_from_now_on() -> None:
    """Refuse the world in this process from now on, in every thread: a replay command
    that is done calls it, so nothing the replayed code left behind (a thread, an
    ``atexit`` hook, a finalizer) reaches the world as the process ends."""
    if not _HOOK:
        _install_hook()
    with _LOCK:
        if not _FOREVER:
            _FOREVER.append(ReplayWatch(-1))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    found = EVENTS.get(event)  # first, and cheap: the hook sees every audit event
    if found is None:
        other = _OTHER_EVENTS.get(event)
        if other is not None:
            other(event, args)
        return
    if _IN_EFFECT.get():
        return
    watch = _WATCH.get()
    if watch is None:
        watch = _replay_watch() or _step_thread_watch()
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


#: The audit hook, once installed (one per process: a hook cannot be removed).
_HOOK: list[Callable[[str, tuple[Any, ...]], None]] = []
#: The other audit events the world watches, and who handles them (the files a step
#: reads): one hook for all, as every hook is called for every event in the process.
_OTHER_EVENTS: dict[str, Callable[[str, tuple[Any, ...]], None]] = {}


def watch_events(events: frozenset[str],
                 handler: Callable[[str, tuple[Any, ...]], None]) -> None:
    """Have the world's audit hook hand ``events`` to ``handler`` (installed if need be)."""
    with _LOCK:
        for event in events:
            _OTHER_EVENTS.setdefault(event, handler)
    _install_hook()


def _install_hook() -> None:
    """Install the audit hook, once per process (a hook cannot be removed), with the two
    doors it needs: ``Thread.start`` (whose a thread is) and ``fork_exec`` (no audit
    event). Both only look while nothing is watched: a dictionary look-up or two."""
    with _LOCK:
        if _HOOK:
            return
        import _posixsubprocess  # the door multiprocessing's spawn goes through

        _REAL_FORK_EXEC[:] = [_posixsubprocess.fork_exec]
        _posixsubprocess.fork_exec = _guarded_fork_exec
        _REAL_START[:] = [threading.Thread.start]
        setattr(threading.Thread, "start", _start_marked)  # noqa: B010 - a method
        _REAL_EXCEPTHOOK[:] = [threading.excepthook]
        threading.excepthook = _quiet_refusals
        hook = _gate()
        sys.addaudithook(hook)
        _HOOK.append(hook)


def _gate() -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook: :func:`_audit` behind the C gate that calls it only for the events
    of :data:`EVENTS` and :data:`_OTHER_EVENTS` (the dicts it reads as they grow), or
    :func:`_audit` itself where the C module was not built."""
    try:
        from pinrun.world._speedups import Gate
    except ImportError:  # built without a C compiler: the same answers, slower
        return _audit
    return Gate(EVENTS, _OTHER_EVENTS, _audit)


_REAL_EXCEPTHOOK: list[Callable[[Any], object]] = []


def _quiet_refusals(args: Any) -> None:
    """``threading.excepthook``, but silent for a refusal that ended one of a replay's
    threads: the replay noted it and reports it with the step, so its traceback on
    stderr would only be noise (and the command line shows none without --debug)."""
    if isinstance(args.exc_value, WorldRefusedError | NondeterminismError) and \
            getattr(args.thread, "_pinrun_replay", None) is not None:
        return
    _REAL_EXCEPTHOOK[0](args)


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
        self._token = enter_watch(self._watch)
        return self._watch.calls

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _WATCH.reset(self._token)
            self._token = None


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
    recorded ``Thread.start`` hands the starting step's watch to the thread
    (see :func:`_start_marked`): its calls are the step's too. Threads the
    process started otherwise (a server's) are not watched.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> list[GuardedCall]:
        # (One object per recorded step: the watch entered here, no nested block.)
        watch = WorldWatch(refuse=False)
        self._token = enter_watch(watch)
        return watch.calls

    def __exit__(self, *exc_info: object) -> None:
        _WATCH.reset(self._token)


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
