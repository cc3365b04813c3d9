"""The calls that reach the outside world, as audit events, and how they read.

Python raises an audit event (:func:`sys.addaudithook`) for every connection,
DNS look-up and datagram, and for every process started; :data:`EVENTS` maps
the ones a replay refuses to their kind and a reader that spells the call
(``socket.getaddrinfo('127.0.0.1', 8123)``) and says what it did ("looked up
127.0.0.1:8123 (DNS)"). Two more doors have no audit event of their own, and
pinrun raises one for them: ``_posixsubprocess.fork_exec`` (what
``multiprocessing``'s spawn start method calls directly) and a C function
looked up through ``ctypes`` by a name that reaches the world (``system``,
``connect``...).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any, Final

__all__ = ["EVENTS", "FORK_EXEC_EVENT"]

#: The event pinrun raises for ``_posixsubprocess.fork_exec`` (no audit event of its own).
FORK_EXEC_EVENT: Final = "pinrun.fork_exec"
#: C functions that reach the world: looked up through ctypes, they are refused too.
_WORLD_SYMBOLS: Final = frozenset((
    "system", "popen", "fork", "vfork", "forkpty", "execv", "execve", "execvp", "execvpe",
    "execl", "execle", "execlp", "fexecve", "posix_spawn", "posix_spawnp", "clone", "clone3",
    "connect", "sendto", "sendmsg", "sendmmsg", "getaddrinfo", "gethostbyname",
    "gethostbyname2", "gethostbyaddr", "getnameinfo", "res_query", "res_search",
    # The doors under those names: a raw system call, glibc's own entries.
    "syscall", "_Fork", "execveat", "pidfd_spawn", "pidfd_spawnp", "__libc_system",
    "__libc_fork", "__fork", "socketcall", "sendfile", "__connect", "__sendto",
))

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
    if event == FORK_EXEC_EVENT:
        command = _command(args[0]) if args else "..."
        return f"_posixsubprocess.fork_exec({command})", f"started the process {command}"
    return None


def _foreign(event: str, args: tuple[Any, ...]) -> tuple[str, str] | None:
    """A C function looked up through ctypes: the world only when its name says so."""
    name = args[1] if len(args) > 1 else None
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    if not isinstance(name, str) or name not in _WORLD_SYMBOLS:
        return None
    return f"ctypes: the C function {name}()", f"looked up the C function {name}() through ctypes"


_Describe = Callable[[str, tuple[Any, ...]], "tuple[str, str] | None"]
_NETWORK = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
            "socket.gethostbyaddr", "socket.getnameinfo", "socket.sendto", "socket.sendmsg")
_PROCESSES = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
              "os.fork", "os.forkpty", FORK_EXEC_EVENT)
#: Audit event -> (kind, how to describe its arguments).
EVENTS: dict[str, tuple[str, _Describe]] = {
    **dict.fromkeys(_NETWORK, ("network", _network)),
    **dict.fromkeys(_PROCESSES, ("subprocess", _process)),
    "ctypes.dlsym": ("foreign code", _foreign),
}
