"""The logs that answer a step's context: from the world, or from a recording.

A :class:`RecordingLog` asks the world (or calls the effect's function) and
keeps each answer; a :class:`ReplayLog` hands back the recorded answers and
never calls anything; a :class:`ReuseLog` (``pinrun accept``) answers from an
earlier recording where it can and records either way. Recorded answers are
matched by :class:`_Answers`: the clock, seeds and uuids in recorded order,
effects by name and arguments, so calls made from threads or tasks may come
in any order.
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, TypeVar

from pinrun.artifacts import codec
from pinrun.engine.call_values import SCALARS, call_difference, describe_call
from pinrun.engine.events import (
    EffectCall,
    Event,
    EventKind,
    error_arguments,
    type_name,
)
from pinrun.engine.loops import current_task, in_event_loop
from pinrun.errors import ContextDivergenceError
from pinrun.world import World
from pinrun.world.refusal import inside_effect

__all__ = ["SHARED_ANSWERS_HAZARD", "RecordingLog", "ReplayLog", "ReuseLog",
           "at_debugger_prompt"]

T = TypeVar("T")
_SEED_BYTES = 8
#: At most this many out-of-order effects are noted on one step.
_ORDER_NOTES = 3
_UUID_BYTES = 16


class _Answers:
    """A step's recorded answers, handed out as the replayed step asks for them.

    ``ctx.now()``, ``ctx.random()`` and ``ctx.uuid4()`` answer in recorded
    order. An effect answers by its name and arguments, in recorded order
    among equal calls only: calls made from threads or ``asyncio.gather``
    come in whatever order they are scheduled, and each still gets its own
    answer. Safe to use from several threads.
    """

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self._plain: list[int] = []
        self._next_plain = 0
        self._effects: dict[tuple[str | None, str | None], deque[int]] = defaultdict(deque)
        for index, event in enumerate(events):  # (most steps record none)
            if event.kind == "effect":
                self._effects[event.name, event.arguments].append(index)
            else:
                self._plain.append(index)
        self._used = [False] * len(events)
        self._lock = threading.Lock()

    def plain(self, kind: EventKind, *, take: bool = True) -> tuple[int, Event | None, bool]:
        """The next recorded time, seed or uuid: (its index, the event, whether it is of
        ``kind``); taken only when it is."""
        with self._lock:
            if self._next_plain >= len(self._plain):
                return len(self.events), None, False
            index = self._plain[self._next_plain]
            event = self.events[index]
            if event.kind == kind and take:
                self._next_plain += 1
                self._used[index] = True
            return index, event, event.kind == kind

    def effect(self, name: str, arguments: str, *,
               take: bool = True) -> tuple[int, Event] | None:
        """The first unanswered recorded call of this effect with these arguments, and its
        place among the recorded events."""
        with self._lock:
            waiting = self._effects.get((name, arguments))
            if not waiting:
                return None
            index = waiting.popleft() if take else waiting[0]
            if take:
                self._used[index] = True
            return index, self.events[index]

    def effects_named(self, name: str) -> list[Event]:
        """The recorded calls of effect ``name`` not answered yet (for a divergence)."""
        with self._lock:
            return [self.events[index] for (found, _), waiting in self._effects.items()
                    if found == name for index in waiting]

    @property
    def unused(self) -> list[Event]:
        """Recorded answers nobody asked for, in recorded order."""
        with self._lock:
            return [event for event, used in zip(self.events, self._used, strict=True)
                    if not used]


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

    def effect(self, step: str, effect: EffectCall, call: Callable[[], T]) -> T:
        try:
            with inside_effect():  # what an effect does in the world is its purpose
                result = call()
        except Exception as exc:  # the outside world failed: that is an answer too
            self._failed(effect, exc)
            raise
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # never awaited: closed, so Python does not warn about it
            raise TypeError(f"effect {effect.name!r} returned an awaitable: make its function "
                            "an `async def` and `await ctx.effect(...)` in an async step")
        return self._answered(effect, result)

    async def effect_async(self, step: str, effect: EffectCall,
                           call: Callable[[], Awaitable[T]]) -> T:
        try:
            with inside_effect():
                result = await call()
        except Exception as exc:
            self._failed(effect, exc)
            raise
        return self._answered(effect, result)

    def _failed(self, effect: EffectCall, exc: Exception) -> None:
        self.events.append(Event("effect", None, effect.name, effect.arguments,
                                 (type_name(exc), str(exc)), effect.call, error_arguments(exc)))

    def _answered(self, effect: EffectCall, result: T) -> T:
        payload = codec.encode(result, root=f"the result of effect {effect.name!r}")
        # Appended as each call ends (list.append is atomic: threads may record at once).
        self.events.append(Event("effect", result, effect.name, effect.arguments,
                                 call=effect.call))
        if type(result) in SCALARS:
            return result
        # The step gets a copy: changing it must not change what was recorded.
        copy: T = codec.decode(payload)
        return copy


class ReuseLog(RecordingLog):
    """Records like :class:`RecordingLog`, but answers from an earlier recording first.

    Used to re-record a run as a new baseline (``pinrun accept``): where the
    step asks for the same thing the earlier run's step did (the same effect
    with the same arguments, the clock, a seed, a uuid, matched as a replay
    matches them), the recorded answer is reused and the outside world is not
    called again; anything new goes to the world. Either way the answer is
    recorded.
    """

    def __init__(self, world: World, earlier: list[Event]) -> None:
        super().__init__(world)
        self.earlier = _Answers(earlier)

    def _reuse(self, kind: EventKind) -> Event | None:
        _, event, matches = self.earlier.plain(kind)
        if event is None or not matches:
            return None
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

    def _reused_effect(self, effect: EffectCall) -> Event | None:
        found = self.earlier.effect(effect.name, effect.arguments)
        if found is None:
            return None
        self.events.append(found[1])
        return found[1]

    def effect(self, step: str, effect: EffectCall, call: Callable[[], T]) -> T:
        event = self._reused_effect(effect)
        if event is not None:
            result: T = event.answer()
            return result
        return super().effect(step, effect, call)

    async def effect_async(self, step: str, effect: EffectCall,
                           call: Callable[[], Awaitable[T]]) -> T:
        event = self._reused_effect(effect)
        if event is not None:
            result: T = event.answer()
            return result
        return await super().effect_async(step, effect, call)


class ReplayLog:
    """The recorded answers, handed back as :class:`_Answers` matches them; anything
    else is a divergence.

    While the step runs under the debugger (``debugging``), a call made at the
    debugger's prompt only peeks at the answer it would get: looking must not
    change the replay.
    """

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.answers = _Answers(events)
        self.debugging = False
        #: The first divergence raised to the step: a step that catches it (``except
        #: Exception``) and goes on has still diverged.
        self.divergence: ContextDivergenceError | None = None
        #: The thread the step runs in (set when its context is activated).
        self.home: int | None = None
        #: Effects the step's own code asked for in another order than recorded (hazards).
        self.out_of_order: list[str] = []
        self._last_in_sequence = -1
        #: Who was answered each kind of plain call: (thread, task) pairs.
        self._askers: dict[str, set[tuple[int, int]]] = {}

    def _diverged(self, error: ContextDivergenceError, *, peeking: bool) -> None:
        if not peeking and self.divergence is None:
            self.divergence = error
        raise error

    def _plain(self, step: str, kind: EventKind, asked: str) -> Event:
        peeking = self.peeking()
        index, event, matches = self.answers.plain(kind, take=not peeking)
        if event is None or not matches:
            next_one = event.describe() if event is not None else "nothing more"
            self._diverged(ContextDivergenceError(step, index, event, asked, message=(
                f"the step's next recorded answer is {next_one}, not {asked} (asked at the "
                "debugger's prompt: nothing was used up)")) if peeking else
                ContextDivergenceError(step, index, event, asked), peeking=peeking)
        assert event is not None
        if not peeking:
            self._askers.setdefault(asked, set()).add(_asker())
        return event

    @property
    def shared_answers(self) -> list[str]:
        """Hazards: plain answers (the clock, seeds, uuids) handed to several threads or
        tasks of the step in turn. They go out in the order they are asked, and threads
        and tasks may ask in another order than when recording: then each gets
        another's answer, the same answers in another order."""
        return [f"{SHARED_ANSWERS_HAZARD} {asked} answered {len(askers)} threads or tasks "
                "in turn: a replay hands the recorded answers out in the order they are "
                "asked, which threads and tasks may change (ask once before fanning out, "
                "and pass the answer on)"
                for asked, askers in self._askers.items() if len(askers) > 1]

    def now(self, step: str) -> dt.datetime:
        value: dt.datetime = self._plain(step, "now", "ctx.now()").value
        return value

    def seed(self, step: str) -> int:
        value: int = self._plain(step, "random", "ctx.random()").value
        return value

    def uuid_bytes(self, step: str) -> bytes:
        value: bytes = self._plain(step, "uuid4", "ctx.uuid4()").value
        return value

    def effect(self, step: str, effect: EffectCall, call: Callable[[], T]) -> T:
        result: T = self._answer(step, effect)  # the recorded result: `call` is never made
        return result

    async def effect_async(self, step: str, effect: EffectCall,
                           call: Callable[[], Awaitable[T]]) -> T:
        result: T = self._answer(step, effect)
        return result

    def _answer(self, step: str, effect: EffectCall) -> Any:
        peeking = self.peeking()
        found = self.answers.effect(effect.name, effect.arguments, take=not peeking)
        if found is None:
            self._diverged(self._unanswered(step, effect), peeking=peeking)
        assert found is not None
        index, event = found
        if not peeking and self._in_sequence():
            self._note_order(index)
        return event.answer()

    def _in_sequence(self) -> bool:
        """Whether this call comes from the step's own code, one call after another (its
        thread, no event loop): there, the recorded order is the code's order. Calls from
        threads or tasks may come in any order."""
        return threading.get_ident() == self.home and not in_event_loop()

    def _note_order(self, index: int) -> None:
        if index < self._last_in_sequence and len(self.out_of_order) < _ORDER_NOTES:
            later = self.events[self._last_in_sequence]
            self.out_of_order.append(
                f"called {self.events[index].describe()} after {later.describe()}, though "
                "the recording made it first (effects answered out of their recorded order)")
        self._last_in_sequence = max(self._last_in_sequence, index)

    def peeking(self) -> bool:
        """Whether a context call now comes from the debugger's prompt (answered, not used)."""
        return self.debugging and at_debugger_prompt()

    def _unanswered(self, step: str, effect: EffectCall) -> ContextDivergenceError:
        asked = f"effect {describe_call(effect.name, effect.call)}"
        # Each distinct call once, with its count: equal calls are one line, not three.
        waiting = self.answers.effects_named(effect.name)
        others = Counter(describe_call(effect.name, other.call, other.arguments)
                         for other in waiting)
        if others:
            shown = "; ".join(f"{call} x{count}" if count > 1 else call
                              for call, count in list(others.items())[:3])
            more = f" (and {len(others) - 3} more)" if len(others) > 3 else ""
            found = f"the recording's unanswered calls of {effect.name!r} are {shown}{more}"
            closest = _closest_difference(effect, waiting)
            if closest:
                found += f"; the nearest differs in {'; '.join(closest[:4])}" + (
                    f" (and {len(closest) - 4} more)" if len(closest) > 4 else "")
        else:
            found = f"the recording has no unanswered call of effect {effect.name!r}"
        index = len(self.events) - len(self.answers.unused)
        return ContextDivergenceError(
            step, index, None, asked,
            message=f"it called {asked}, which the recording has no answer for; {found}.")

    @property
    def unused(self) -> list[Event]:
        """Recorded answers the replay never asked for (also a divergence, for the engine)."""
        return self.answers.unused


#: How a hazard about plain answers shared by threads or tasks begins.
SHARED_ANSWERS_HAZARD = "order:"


def _asker() -> tuple[int, int]:
    """Who is asking: this thread, and the task running in it (0 outside a loop)."""
    task = current_task()
    return threading.get_ident(), id(task) if task is not None else 0


def _closest_difference(effect: EffectCall, waiting: list[Event]) -> list[str] | None:
    """The arguments in which the call differs from the nearest recorded call of its
    effect still unanswered (fewest differences), so the report names what changed
    rather than two digests; None when no recorded call kept its arguments."""
    if len(waiting) > _NEAREST_LOOKED_AT:
        waiting = waiting[:_NEAREST_LOOKED_AT]
    differences = [found for other in waiting
                   if (found := call_difference(effect.call, other.call)) is not None]
    return min(differences, key=len) if differences else None


#: At most this many recorded calls are compared with an unanswered one.
_NEAREST_LOOKED_AT = 50


def at_debugger_prompt() -> bool:
    """Whether the context call being made comes from the debugger's prompt.

    Walks up from the caller until the engine's own frames: pdb reads and
    runs what is typed at its prompt in ``cmd.Cmd``'s command loop, so a
    frame of ``cmd`` on the way means the call was typed there (the
    debugger's ``runcall``, which started the step, is not in that loop).
    """
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__")
        if module == "cmd":
            return True
        if module == "pinrun.engine.execution":
            return False
        frame = frame.f_back
    return False
