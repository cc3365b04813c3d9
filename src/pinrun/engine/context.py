"""The run context: everything nondeterministic a step does goes through it.

``ctx.now()``, ``ctx.random()``, ``ctx.uuid4()`` and ``ctx.effect(name, fn,
*args, **kwargs)`` are answered by an event log. While recording, the log asks
the :class:`~pinrun.world.World` (or calls ``fn``) and keeps each answer, in
order; while replaying, it hands back the recorded answers in the same order
and never calls ``fn``. A call of another kind, an effect under another name
or with other arguments than the recording had, or one call too many, is a
:class:`ContextDivergenceError`: the replayed code no longer does what the
recorded code did.

The active context is also kept in a ``contextvars.ContextVar``, so code deep
inside a step can reach it with :func:`current_context`, and runs in
concurrent threads or asyncio tasks never see each other's.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import blake3

from pinrun.artifacts import codec
from pinrun.errors import ContextDivergenceError, CorruptObjectError, RecordedEffectError
from pinrun.world import World, make_random, make_uuid4
from pinrun.world_guard import inside_effect

if TYPE_CHECKING:  # for annotations only: the engine never draws randomness itself
    import random
    import uuid

    from pinrun.artifacts.digest import Digest
    from pinrun.artifacts.store import Store

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
EventKind = Literal["now", "random", "uuid4", "effect"]
_SEED_BYTES = 8
_UUID_BYTES = 16


@dataclass(frozen=True)
class Event:
    """One recorded answer: its kind, the effect's name and argument digest, and the value."""

    kind: EventKind
    value: Any
    name: str | None = None
    arguments: str | None = None
    #: An effect that raised: the exception's type (``module.Qualname``) and message.
    error: tuple[str, str] | None = None

    def as_value(self) -> dict[str, Any]:
        """The canonical form stored in a run's step record."""
        out: dict[str, Any] = {"kind": self.kind, "value": self.value}
        if self.name is not None:
            out["name"] = self.name
            out["arguments"] = self.arguments
        if self.error is not None:
            out["error"] = list(self.error)
        return out

    @classmethod
    def from_value(cls, data: dict[str, Any]) -> Event:
        """Rebuild an event stored by :meth:`as_value` (checked by :func:`recorded_events`)."""
        error = data.get("error")
        return cls(data["kind"], data["value"], data.get("name"), data.get("arguments"),
                   (error[0], error[1]) if error else None)

    def answer(self) -> Any:
        """The recorded answer, as a fresh copy; an effect that raised raises again."""
        if self.error is not None:
            raise _rebuilt_error(*self.error)
        return codec.decode(codec.encode(self.value))


_EVENT_KINDS: Final = frozenset(("now", "random", "uuid4", "effect"))


def _event_problem(data: Any) -> str | None:
    if type(data) is not dict:
        return "is not an object"
    if data.get("kind") not in _EVENT_KINDS or "value" not in data:
        return "has no known kind, or no value"
    for field in ("name", "arguments"):
        if data.get(field) is not None and type(data[field]) is not str:
            return f"has a {field} that is not text"
    error = data.get("error")
    if error is not None and not (type(error) in (list, tuple) and len(error) == 2
                                  and all(type(part) is str for part in error)):
        return "has an error that is not [type, message]"
    return None


def recorded_events(store: Store, digest: Digest) -> list[Event]:
    """A step's recorded context events, each checked before anything reads it.

    The events are a plain value in the store, so their shape is this
    module's to check: a malformed one is a :class:`CorruptObjectError`
    (exit 3) naming the object, never a ``KeyError`` deep in a replay.
    """
    found = store.get_value(digest)
    if type(found) is not list:
        raise CorruptObjectError(digest, None, "its recorded context events are not a list")
    for index, data in enumerate(found):
        problem = _event_problem(data)
        if problem is not None:
            raise CorruptObjectError(digest, None, f"recorded context event #{index + 1} "
                                     f"{problem}")
    return [Event.from_value(data) for data in found]


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else \
        f"{cls.__module__}.{cls.__qualname__}"


def _rebuilt_error(type_name: str, message: str) -> BaseException:
    """The recorded exception again: its own type when this process has it loaded.

    The type name comes from the record, so it is looked up, never imported,
    and only an Exception subclass is called (with the recorded message).
    """
    parts = type_name.split(".")
    cls = codec.find_loaded_class(f"builtins:{type_name}") if len(parts) == 1 else None
    for split in range(len(parts) - 1, 0, -1):  # the module is the longest loaded prefix
        if cls is not None:
            break
        cls = codec.find_loaded_class(f"{'.'.join(parts[:split])}:{'.'.join(parts[split:])}")
    if cls is not None and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # a constructor that wants other arguments: named instead
            pass
    return RecordedEffectError(f"{type_name}: {message}")


def argument_digest(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The digest that identifies an effect call's arguments (canonically encoded)."""
    payload = codec.encode([list(args), kwargs], root=f"the arguments of effect {name!r}")
    return blake3.blake3(payload).hexdigest()


class RecordingLog:
    """Answers from the world (or the effect function), kept in order."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.events: list[Event] = []

    def now(self, step: str) -> dt.datetime:
        value = self.world.now()
        self.events.append(Event("now", value))
        return value

    def seed(self, step: str) -> int:
        value = int.from_bytes(self.world.entropy(_SEED_BYTES), "little")
        self.events.append(Event("random", value))
        return value

    def uuid_bytes(self, step: str) -> bytes:
        value = self.world.entropy(_UUID_BYTES)
        self.events.append(Event("uuid4", value))
        return value

    def effect(self, step: str, name: str, arguments: str, call: Callable[[], T]) -> T:
        try:
            with inside_effect():  # what an effect does in the world is its purpose
                result = call()
        except Exception as exc:  # the outside world failed: that is an answer too
            self.events.append(Event("effect", None, name, arguments,
                                     (_type_name(exc), str(exc))))
            raise
        payload = codec.encode(result, root=f"the result of effect {name!r}")
        # The step gets a copy: changing it must not change what was recorded.
        self.events.append(Event("effect", result, name, arguments))
        copy: T = codec.decode(payload)
        return copy


class ReuseLog(RecordingLog):
    """Records like :class:`RecordingLog`, but answers from an earlier recording first.

    Used to re-record a run as a new baseline (``pinrun accept``): where the
    step asks for the same thing the earlier run's step did, in the same
    order (the same effect with the same arguments, the clock, a seed, a
    uuid), the recorded answer is reused and the outside world is not called
    again; anything new goes to the world. Either way the answer is recorded.
    """

    def __init__(self, world: World, earlier: list[Event]) -> None:
        super().__init__(world)
        self.earlier = earlier
        self.position = 0

    def _reuse(self, kind: EventKind, name: str | None = None,
               arguments: str | None = None) -> Event | None:
        index = self.position
        event = self.earlier[index] if index < len(self.earlier) else None
        if event is None or event.kind != kind or event.name != name or \
                event.arguments != arguments:
            return None
        self.position += 1
        self.events.append(event)
        return event

    def now(self, step: str) -> dt.datetime:
        event = self._reuse("now")
        return event.value if event is not None else super().now(step)

    def seed(self, step: str) -> int:
        event = self._reuse("random")
        return event.value if event is not None else super().seed(step)

    def uuid_bytes(self, step: str) -> bytes:
        event = self._reuse("uuid4")
        return event.value if event is not None else super().uuid_bytes(step)

    def effect(self, step: str, name: str, arguments: str, call: Callable[[], T]) -> T:
        event = self._reuse("effect", name, arguments)
        if event is not None:
            result: T = event.answer()
            return result
        return super().effect(step, name, arguments, call)


class ReplayLog:
    """The recorded answers, handed back in order; anything else is a divergence."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.position = 0

    def _next(self, step: str, kind: EventKind, asked: str) -> Event:
        index = self.position
        expected = self.events[index] if index < len(self.events) else None
        if expected is None or expected.kind != kind:
            raise ContextDivergenceError(step, index, expected, asked)
        self.position += 1
        return expected

    def now(self, step: str) -> dt.datetime:
        value: dt.datetime = self._next(step, "now", "ctx.now()").value
        return value

    def seed(self, step: str) -> int:
        value: int = self._next(step, "random", "ctx.random()").value
        return value

    def uuid_bytes(self, step: str) -> bytes:
        value: bytes = self._next(step, "uuid4", "ctx.uuid4()").value
        return value

    def effect(self, step: str, name: str, arguments: str, call: Callable[[], T]) -> T:
        asked = f"effect {name!r} with arguments {arguments}"
        index = self.position
        event = self._next(step, "effect", asked)
        if event.name != name or event.arguments != arguments:
            self.position = index
            raise ContextDivergenceError(step, index, event, asked)
        result: T = event.answer()  # the recorded result: `call` is never made
        return result

    @property
    def unused(self) -> list[Event]:
        """Recorded answers the replay never asked for (also a divergence, for the engine)."""
        return self.events[self.position:]


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

        On replay the recorded result is returned and ``fn`` is not called. The
        arguments must be canonical values: they identify the call, and a call
        with other arguments than the recording's is a divergence.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("ctx.effect needs a non-empty name for the call, e.g. 'fx_rate'")
        arguments = argument_digest(name, args, kwargs)
        return self._log.effect(self.step, name, arguments, lambda: fn(*args, **kwargs))

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


@contextmanager
def activate(context: Context) -> Iterator[Context]:
    """Make ``context`` the current one for the duration of a step."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)
