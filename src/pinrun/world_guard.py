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

import reprlib
import sys
import sysconfig
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinrun.errors import WorldRefusedError

__all__ = ["GuardedCall", "WorldWatch", "inside_effect", "recording_guard", "refusal",
           "watching_world", "world_hazards"]


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


@contextmanager
def inside_effect() -> Iterator[None]:
    """Mark the block as an effect function running (``ctx.effect``): its world calls are
    the effect's, recorded as such, and not noted as the step's."""
    token = _IN_EFFECT.set(True)
    try:
        yield
    finally:
        _IN_EFFECT.reset(token)


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxtuple = 80, 80, 6, 6


def _address(address: Any) -> str:
    """``host:port`` for an internet address, the path for a Unix socket."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0].decode(errors="replace") if isinstance(address[0], bytes) \
            else str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    if isinstance(address, bytes):
        return address.decode(errors="replace")
    return _SHORT.repr(address) if not isinstance(address, str) else address[:200]


def _command(args: Any) -> str:
    """A command line, short: its first words."""
    if isinstance(args, str | bytes):
        return _SHORT.repr(args)
    try:
        return _SHORT.repr(list(args))
    except TypeError:
        return _SHORT.repr(args)


def _network(event: str, args: tuple[Any, ...]) -> tuple[str, str] | None:
    if event == "socket.connect":
        return f"socket.connect({_SHORT.repr(args[1])})", f"connected to {_address(args[1])}"
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
        shown = _address((host, port)) if port is not None else _address(host)
        return f"socket.getaddrinfo({_SHORT.repr(host)}, {_SHORT.repr(port)})", \
            f"looked up {shown} (DNS)"
    if event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        return f"{event}({_SHORT.repr(args[0])})", f"looked up {_address(args[0])} (DNS)"
    if event == "socket.getnameinfo":
        return f"socket.getnameinfo({_SHORT.repr(args[0])})", \
            f"looked up {_address(args[0])} (DNS)"
    if event in ("socket.sendto", "socket.sendmsg"):
        return f"{event}(..., {_SHORT.repr(args[1])})", f"sent to {_address(args[1])}"
    return None


def _process(event: str, args: tuple[Any, ...]) -> tuple[str, str] | None:
    if event == "subprocess.Popen":
        command = _command(args[1])
        return f"subprocess.Popen({command})", f"started the process {command}"
    if event == "os.system":
        command = _command(args[0])
        return f"os.system({command})", f"ran the shell command {command}"
    if event in ("os.exec", "os.posix_spawn", "os.spawn"):
        path, argv = (args[1], args[2]) if event == "os.spawn" else (args[0], args[1])
        name = {"os.exec": "os.exec*", "os.posix_spawn": "os.posix_spawn",
                "os.spawn": "os.spawn*"}[event]
        return f"{name}({_command(path)}, {_command(argv)})", \
            f"started the process {_command(argv)}"
    if event in ("os.fork", "os.forkpty"):
        return f"{event}()", "forked the process"
    return None


#: Audit event -> (kind, how to describe its arguments).
_Describe = Callable[[str, tuple[Any, ...]], "tuple[str, str] | None"]
_NETWORK = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
            "socket.gethostbyaddr", "socket.getnameinfo", "socket.sendto", "socket.sendmsg")
_PROCESSES = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
              "os.fork", "os.forkpty")
#: Audit event -> (kind, how to describe its arguments).
_EVENTS: dict[str, tuple[str, _Describe]] = {
    **dict.fromkeys(_NETWORK, ("network", _network)),
    **dict.fromkeys(_PROCESSES, ("subprocess", _process)),
}


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


#: The refusing watches of the steps replaying now, for the threads those steps start.
_REFUSING: list[WorldWatch] = []


def _thread_watch() -> WorldWatch | None:
    """The refusing watch for a call made in a thread with no watch of its own.

    A thread starts with an empty context, so a call a step makes from a
    thread pool carries no watch. While a replay refuses the world, such a
    call is the replayed step's when the project's code is on the thread's
    stack (what pinrun itself or a library does in its own threads is not).
    """
    for watch in list(_REFUSING):
        frame: types.FrameType | None = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename in watch.files:
                return watch
            frame = frame.f_back
    return None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    found = _EVENTS.get(event)  # first, and cheap: the hook sees every audit event
    if found is None or _IN_EFFECT.get():
        return
    watch = _WATCH.get()
    if watch is None:
        watch = _thread_watch() if _REFUSING else None
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
        if self._watch.refuse and self._watch.files:
            _REFUSING.append(self._watch)
        return self._watch.calls

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _WATCH.reset(self._token)
            self._token = None
            if self._watch in _REFUSING:
                _REFUSING.remove(self._watch)


def recording_guard() -> AbstractContextManager[list[GuardedCall]]:
    """A fresh watch for one step being recorded: world calls are noted, never refused.

    This is the engine's ``StepGuard`` (``run_level(..., guard=recording_guard)``);
    the list it yields holds the step's :class:`GuardedCall` s for
    :func:`world_hazards`.
    """
    return watching_world(WorldWatch(refuse=False))


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
