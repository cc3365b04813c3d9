"""Worker processes for replays: fresh interpreters, under a chosen hash seed.

Python fixes a process's ``str`` hashing (and so the iteration order of sets
of strings) when it starts, from ``PYTHONHASHSEED``. A replay must run under
the seed its run recorded, so workers are fresh interpreters (``spawn``, never
a fork, which would also copy LMDB handles and threads) started with that
seed in their environment.

Two ways in, both calling library functions and handing back typed values:

* :func:`worker_pool`: a pool of spawned interpreters (``pinrun verify``).
* :func:`call_in_child`: one function called once in a fresh interpreter started
  with ``python -c`` (``pinrun.replay`` under the recorded seed, perturbations,
  ``pytest --pinrun``).

Neither runs the caller's ``__main__`` again in the child, as
:mod:`multiprocessing` would: a user script that verifies at top level needs
no ``if __name__ == "__main__"``, and its top-level code (which may record
runs) runs once. The children run pinrun's functions only, and load the code
they replay themselves.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import enum
import importlib
import io
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pinrun.data_classes import data_class

__all__ = ["ChildResult", "call_in_child", "start_pool_support", "worker_pool"]


@contextmanager
def worker_pool(processes: int, hash_seed: str | None, initializer: Callable[..., None],
                initargs: tuple[Any, ...]) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A pool of ``processes`` fresh interpreters running under ``hash_seed``.

    The seed stays in this process's environment while the pool lives, since
    a pool may start (or restart) its processes at any time. A process that
    dies breaks the pool: its futures raise ``BrokenProcessPool``. Each process
    runs ``initializer(*initargs)`` first, and ends without tearing its
    interpreter down (:func:`_start_worker`).
    """
    saved = os.environ.get("PYTHONHASHSEED")
    if hash_seed is not None:
        os.environ["PYTHONHASHSEED"] = hash_seed
    try:
        with concurrent.futures.ProcessPoolExecutor(
                processes, mp_context=_SpawnWithoutMain(),
                initializer=_start_worker, initargs=(initializer, initargs)) as pool:
            yield pool
    finally:
        if saved is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved


def start_pool_support() -> None:
    """Start now what every :func:`worker_pool` of this process needs once: the resource
    tracker that :mod:`multiprocessing` starts for spawned processes (a fresh interpreter
    of its own, ~120 M instructions).

    The first pool would start it beside its own workers' starts, where it takes a share
    of the cores they need. A caller with serial work to do before its first pool
    (``pinrun verify``: its imports, the selection, the seeds) calls this first, so the
    tracker starts on a core that work leaves idle. It ends with this process, as it
    would anyway; a tracker that cannot start now is left to the pool, which says why.
    """
    if os.name != "posix":  # the tracker is POSIX's (Windows spawns without one)
        return
    from multiprocessing import resource_tracker

    with suppress(OSError):
        resource_tracker.ensure_running()


#: What a pool's process is told the main module is: one with no file and no name,
#: so that it imports nothing for it.
_BARE_MAIN = types.ModuleType("__main__")


class _ProcessWithoutMain(multiprocessing.context.SpawnProcess):
    """A spawned process that does not run the parent's ``__main__`` again.

    :mod:`multiprocessing` tells a spawned child to import the parent's main
    script (or module) before anything else, so that functions defined there
    can be unpickled: a script without an ``if __name__ == "__main__"`` guard
    runs again in every worker (recording its runs again), then fails there.
    A pool's processes run pinrun's functions only, so the main module they
    are told of, when their process is made, is a bare one: it stands in
    ``sys.modules`` for that instant only (another thread looking it up then
    would see the bare one).
    """

    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802 - multiprocessing's name
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = _BARE_MAIN
        try:
            return multiprocessing.context.SpawnProcess._Popen(process_obj)
        finally:
            if main is not None:
                sys.modules["__main__"] = main
            else:
                del sys.modules["__main__"]


class _SpawnWithoutMain(multiprocessing.context.SpawnContext):
    """The ``spawn`` start method, its processes told of no main module."""

    Process = _ProcessWithoutMain


def _start_worker(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    """In a pool's process: make its end quick, then run the pool's initializer.

    The pool's shutdown waits for its processes to end, so a worker's end is
    part of every verification's time: tearing the interpreter down (freeing
    every module and object) cost ~20 ms of CPU, about a tenth of a verify
    worker's start. The process has handed back all its results by then (the
    pool asks it to stop only when no task is left) and holds nothing to
    save, so it ends as :func:`call_in_child`'s child does, with ``os._exit``.
    Exit hooks run last registered first: those registered after this one (by
    the code the worker ran) still run before it; those registered before it
    (the standard library's own, such as :mod:`logging`'s, whose handlers flush
    each record anyway) do not. Its exit status is 0, which the pool never reads.
    """
    atexit.register(_end_now)
    initializer(*initargs)


def _end_now() -> None:
    """Flush what the process wrote and end it at once (no teardown, no more hooks)."""
    for stream in (sys.stdout, sys.stderr):
        # A replayed step may have closed or replaced them: the worker ends all the same.
        with suppress(Exception):
            stream.flush()
    os._exit(0)


@data_class(frozen=True)
class ChildResult:
    """What :func:`call_in_child` got back: the function's value, or why there is none."""

    value: Any = None
    #: Why the child gave no value (it died, timed out, or raised), else None.
    failure: str | None = None


#: What a child's answer may name: pinrun's own (typed results) and plain builtins. The
#: child ran project code, so its answer is read as data: it may not make this process
#: import or call anything else.
_ANSWER_MODULES = ("pinrun.",)
_ANSWER_BUILTINS = frozenset({"list", "dict", "tuple", "set", "frozenset", "str", "int",
                              "float", "bool", "bytes"})


#: Paths, which errors carry (a damaged store's folder).
_ANSWER_PATHS = frozenset({"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
                           "PureWindowsPath"})


#: pinrun's value classes an answer may hold (an error names the object it is about).
_ANSWER_VALUES = frozenset({("pinrun.artifacts.digest", "Digest")})


class _AnswerUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module == "builtins" and name in _ANSWER_BUILTINS) or \
                (module == "pathlib" and name in _ANSWER_PATHS) or \
                (module, name) == ("pinrun.errors", "_rebuild"):  # how errors pickle
            return super().find_class(module, name)
        # A result class pinrun defines (a dataclass, an enum, an error), in a module
        # already loaded: never a function or another class (RunLease would take a lock),
        # never a dotted name reaching through a module (pinrun.world.processes:os.system),
        # and never an import (importing pinrun.__main__ would run the command line).
        loaded = sys.modules.get(module)
        if module.startswith(_ANSWER_MODULES) and loaded is not None and "." not in name:
            found = vars(loaded).get(name)
            if isinstance(found, type) and found.__module__ == module and (
                    dataclasses.is_dataclass(found) or issubclass(found, enum.Enum | Exception)
                    or (module, name) in _ANSWER_VALUES):
                return found
        raise pickle.UnpicklingError(f"a child's answer may not name {module}.{name}")


def load_answer(data: bytes) -> Any:
    """Unpickle what a child or a pool worker sent back, as data: only builtins, paths and
    classes pinrun defines (the sender ran project code)."""
    return _AnswerUnpickler(io.BytesIO(data)).load()


_CHILD = ("import sys; from pinrun.world.processes import _child_main; "
          "_child_main(sys.argv[1], sys.argv[2])")


def call_in_child(target: str, argument: Any, *, environment: Mapping[str, str] | None = None,
                  timeout: float | None = None) -> ChildResult:
    """Call ``target`` (``module:function``, a library function) with ``argument`` in a
    fresh interpreter, whose environment adds ``environment`` (``PYTHONHASHSEED``...).

    The child sees this process's ``sys.path`` and working folder. Its return value
    (pickled, of pinrun's types and builtins only) comes back as ``value``; a child
    that raised, died or ran out of ``timeout`` seconds gives a ``failure`` instead.
    """
    env = {**os.environ, **(environment or {})}
    paths = [entry if entry else os.getcwd() for entry in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    with tempfile.TemporaryDirectory(prefix="pinrun-child-") as folder:
        request, answer = Path(folder) / "request", Path(folder) / "answer"
        request.write_bytes(pickle.dumps((target, argument, paths)))
        # Output to a file, not a pipe: a process the replayed code left running keeps a
        # pipe open, and reading it to its end would wait for that process too.
        with open(Path(folder) / "output", "w+b") as output:
            try:
                done = subprocess.run([sys.executable, "-c", _CHILD, str(request),
                                       str(answer)], env=env, stdout=output, stderr=output,
                                      stdin=subprocess.DEVNULL, timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                return ChildResult(failure=f"the child process took more than "
                                           f"{timeout:.0f} s")
            output.seek(max(output.seek(0, io.SEEK_END) - 4096, 0))
            tail = output.read().decode(errors="replace")
        if not answer.exists():
            last = tail.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            return ChildResult(failure=f"the child process ended without an answer "
                                       f"({last[0][:300]})")
        try:
            kind, value = load_answer(answer.read_bytes())
        except Exception as exc:  # whatever a crafted answer makes unpickling raise
            return ChildResult(failure=f"the child process's answer could not be read ({exc})")
    if kind == "raised":
        return ChildResult(failure=str(value))
    return ChildResult(value=value)


def _child_main(request: str, answer: str) -> None:
    """In the child: run the request and write the answer (then nothing else runs)."""
    target, argument, paths = pickle.loads(Path(request).read_bytes())
    sys.path[:] = paths
    module, _, name = target.partition(":")
    try:
        value = getattr(importlib.import_module(module), name)(argument)
        payload = pickle.dumps(("value", value))
    except BaseException as exc:  # every failure (SystemExit too) is the answer, as text
        payload = pickle.dumps(("raised", f"{type(exc).__name__}: {exc}"))
    Path(answer).write_bytes(payload)
    # Threads or atexit hooks of project code must not decide this process's end.
    _end_now()
