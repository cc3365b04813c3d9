"""The run context: everything nondeterministic a step does goes through it.

``ctx.now()``, ``ctx.random()``, ``ctx.uuid4()`` and ``ctx.effect(name, fn,
*args, **kwargs)`` are answered by a log (:mod:`pinrun.engine.logs`). While
recording, the log asks the :class:`~pinrun.world.World` (or calls ``fn``)
and keeps each answer; while replaying, it hands back the recorded answers
and never calls ``fn``: the clock, seeds and uuids in recorded order, effects
by name and arguments (so calls from threads or ``asyncio.gather`` may come
in any order). A call of another kind, an effect the recording has no answer
for, or one call too many, is a :class:`ContextDivergenceError`: the
replayed code no longer does what the recorded code did. An ``async def``
effect function is awaited: ``await ctx.effect(...)``.

The active context is also kept in a ``contextvars.ContextVar``, so code deep
inside a step can reach it with :func:`current_context`, and runs in
concurrent threads or asyncio tasks never see each other's.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import inspect
import threading
from collections.abc import Callable
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pinrun.engine.events import Event, EventKind, effect_call, recorded_events
from pinrun.engine.logs import RecordingLog, ReplayLog, ReuseLog
from pinrun.engine.loops import in_event_loop
from pinrun.errors import ContextDivergenceError
from pinrun.world import make_random, make_uuid4

if TYPE_CHECKING:  # for annotations only: the engine never draws randomness itself
    import random
    import uuid

__all__ = [
    "Context",
    "ContextDivergenceError",
    "Event",
    "EventKind",
    "RecordingLog",
    "ReplayLog",
    "ReuseLog",
    "current_context",
    "recorded_events",
]

T = TypeVar("T")


def _is_async(fn: Any) -> bool:
    """Whether calling ``fn`` makes a coroutine (decided without calling it: on replay it
    is never called)."""
    if type(fn) in (FunctionType, MethodType):  # the common case: its code's flags say
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    # A partial, or an object whose class's __call__ is an async def (looked up without
    # running anything).
    called = inspect.getattr_static(type(fn), "__call__", None)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(called)


class Context:
    """What a step receives as ``ctx``: the only door to time, chance and the outside world."""

    def __init__(self, run_id: str, step: str, log: RecordingLog | ReplayLog) -> None:
        self.run_id = run_id
        self.step = step
        self._log = log

    def now(self) -> dt.datetime:
        """The current time (recorded; on replay, the recorded time)."""
        return self._log.now(self.step)

    def random(self) -> random.Random:
        """A random generator seeded from a recorded seed (the same sequence on replay)."""
        return make_random(self._log.seed(self.step))

    def uuid4(self) -> uuid.UUID:
        """A random UUID (recorded; on replay, the recorded one)."""
        return make_uuid4(self._log.uuid_bytes(self.step))

    def effect(self, name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` (an API, a model, a database) and record the result.

        On replay the recorded result is returned and ``fn`` is not called.
        When ``fn`` is an ``async def`` function, this returns an awaitable:
        ``await ctx.effect("fetch", fetch, url)`` in an async step (concurrent
        effects under ``asyncio.gather`` stay concurrent). The arguments must
        be canonical values: with the name they identify the call (calls from
        threads or tasks may come in any order), and a call with arguments
        the recording has no answer for is a divergence. They are recorded
        as values (large ones as a preview), so ``pinrun show`` can show them.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("ctx.effect needs a non-empty name for the call, e.g. 'fx_rate'")
        effect = effect_call(name, args, kwargs)
        log = self._log
        if not _is_async(fn):
            return log.effect(self.step, effect, lambda: fn(*args, **kwargs))
        if not in_event_loop():
            raise TypeError(f"effect {name!r}: its function is an `async def`, which only an "
                            "async step can await (`await ctx.effect(...)`); give a sync step "
                            "a plain function")
        if isinstance(log, ReplayLog) and log.peeking():
            # At the debugger's prompt, which cannot await: the recorded answer itself.
            answer: T = log._answer(self.step, effect)
            return answer
        # T is the coroutine fn returns; the awaitable given back resolves as it would.
        started: Callable[[], Any] = lambda: fn(*args, **kwargs)  # noqa: E731
        return cast("T", log.effect_async(self.step, effect, started))

    def __repr__(self) -> str:
        return f"<pinrun.Context run={self.run_id} step={self.step!r}>"


_CURRENT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "pinrun_context", default=None)


def current_context() -> Context:
    """The context of the step running in this thread or task."""
    found = _CURRENT.get()
    if found is None:
        raise RuntimeError("no pinrun step is running here: current_context() works only "
                           "inside a step run by pinrun (take a `ctx` parameter instead)")
    return found


class activate:  # noqa: N801 - used as a function: with activate(context)
    """Make ``context`` the current one for the duration of a step.

    A class rather than a generator: it is entered around every step, so it
    costs a context-variable set and reset and nothing more.
    """

    __slots__ = ("_context", "_token")

    def __init__(self, context: Context) -> None:
        self._context = context
        self._token: contextvars.Token[Context | None] | None = None

    def __enter__(self) -> Context:
        context = self._context
        if isinstance(context._log, ReplayLog):  # where the step's own calls come from
            context._log.home = threading.get_ident()
        self._token = _CURRENT.set(context)
        return context

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
