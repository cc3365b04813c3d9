"""Calling the steps of one level: their arguments, their context, what they did.

Every step of a level reads the state as it was when the level began, as the
values its record names: fresh copies decoded from their canonical encoding,
or a large value itself once it is checked to be exactly what decoding would
make (see _as_read). A step that mutates what it was given cannot change the
recorded state, and the mutation is noticed afterwards: the arguments are
encoded again, or, for a value handed over as it is, found to be made of the
same objects as when it was checked (a :class:`~pinrun.artifacts.seen.Seen`).
Sync steps run one after another; when the flow allows ``max_concurrency > 1``,
the async steps of a level run concurrently. Either way the outcomes come back
in declaration order, so the record never depends on timing.

A step's pin names the mutable module-level state its code reads (a cache, a
registry) and the project modules its code comes from; when recording passes
them, those globals are encoded before and after the step, and so are the
class attributes, mutable default arguments and ``lru_cache`` results those
modules own (:func:`~pinrun.world.hidden_state.code_watch`). A change is a
hazard on its record, named by its owner: hidden state that a long-lived
worker carries into its next run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import inspect
import sys
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import field
from types import CodeType, FrameType, MappingProxyType, ModuleType
from typing import Any, Final, TypeVar

from pinrun.artifacts import codec
from pinrun.artifacts.seen import (
    NO_SEEN,
    SEEN_FROM,
    WIDE_FROM,
    Seen,
    Wide,
    encode_seen,
    encode_wide,
    seen_encoding,
)
from pinrun.artifacts.trees import encode_entry
from pinrun.data_classes import data_class
from pinrun.engine.call_values import SCALARS
from pinrun.engine.context import Context, RecordingLog, ReplayLog, activate
from pinrun.engine.loops import in_event_loop
from pinrun.errors import InputError, PinrunError, StepOutputError, UnsupportedValueError
from pinrun.flows.flow import Flow
from pinrun.flows.module_objects import state_snapshot
from pinrun.flows.pinning import PinnedStep
from pinrun.flows.step import Step
from pinrun.world import World
from pinrun.world.hidden_state import MODULE_STATE, Watch, carried, code_watch, is_machinery

__all__ = ["HiddenState", "Outcome", "StepHiddenState", "StepOutputError",
           "check_outputs", "encode_output", "hidden_state_of", "module_state_hazards",
           "module_values", "run_coroutine", "run_level"]

T = TypeVar("T")


@data_class
class Outcome:
    """What one step did, gathered for its record."""

    step: Step
    #: The state values it read, as they were before it ran, and their encodings.
    reads: Mapping[str, Any]
    encoded_reads: Mapping[str, bytes]
    log: RecordingLog | ReplayLog
    #: When it started and ended (None on replay, which never reads the clock).
    began: Any
    finished: Any = None
    outputs: dict[str, Any] | None = None
    encoded_outputs: dict[str, bytes] = field(default_factory=dict)
    #: The Seens of its large outputs, made with their encodings (see walk.RunState.seen).
    seen: Mapping[str, Seen] | None = None
    #: The Wide of its outputs, when they are many small values (see walk.RunState.wide).
    wide: Wide | None = None
    error: BaseException | None = None
    hazards: list[str] = field(default_factory=list)
    #: What a guard noticed while it ran (calls around the context), when guarded.
    guarded: list[Any] = field(default_factory=list)


@data_class(frozen=True)
class StepHiddenState:
    """Where one step's code can keep hidden state (from its pin)."""

    #: The mutable module-level state its code reads, as (module, name) pairs.
    names: tuple[tuple[str, str], ...] = ()
    #: The project modules its code comes from (their classes, defaults and caches).
    modules: tuple[str, ...] = ()
    #: The module objects (weakly) last found to own no hidden state of their code's:
    #: while those are the ones loaded, there is nothing to look at (see _code_watch).
    #: (One slot, replaced whole: threads recording the same step read it safely.)
    quiet: list[tuple[weakref.ref[ModuleType], ...]] = field(
        default_factory=list, compare=False, repr=False)


#: Per step name, where its code can keep hidden state.
HiddenState = Mapping[str, StepHiddenState]


def hidden_state_of(pins: Mapping[str, PinnedStep]) -> dict[str, StepHiddenState]:
    """Per step, the hidden state its pin names: the globals it reads, its modules."""
    return {name: _hidden_state(pinned) for name, pinned in pins.items()}


def _hidden_state(pinned: PinnedStep) -> StepHiddenState:
    found = _HIDDEN.get(pinned)
    if found is None:
        found = _HIDDEN[pinned] = StepHiddenState(tuple(pinned.state), tuple(pinned.sources))
    return found


#: Per pin, what :func:`hidden_state_of` makes of it: a pin is immutable and kept for a
#: process while its step lives (a run pins the same objects again), so its answer is
#: kept with it, owned by the pin (weakly: it goes with the pin).
_HIDDEN: weakref.WeakKeyDictionary[PinnedStep, StepHiddenState] = weakref.WeakKeyDictionary()


def module_values(names: Sequence[tuple[str, str]]) -> dict[str, bytes]:
    """Snapshots of module-level values (:func:`~pinrun.flows.module_objects.state_snapshot`;
    what pinrun cannot see is skipped)."""
    found: dict[str, bytes] = {}
    for module_name, name in names:
        module = sys.modules.get(module_name)
        if module is None or name not in vars(module):
            continue
        value = vars(module)[name]
        if is_machinery(value):  # a pool, a lock, a queue: bookkeeping, not state
            continue
        snapshot = state_snapshot(value)
        if snapshot is not None:
            found[f"{module_name}.{name}"] = snapshot
    return found


def module_state_hazards(before: Mapping[str, object], after: Mapping[str, object]) -> list[str]:
    """One hazard per module-level value that differs between two snapshots, named by its
    owner: ``module state: orders.cache.SEEN changed (...)``."""
    return [carried(f"{MODULE_STATE}: {name} changed") for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name)]


class _Call:
    """One step about to run: its arguments, and their encodings to spot mutation."""

    def __init__(self, item: Step, base: Mapping[str, Any], encoded: Mapping[str, bytes],
                 log: RecordingLog | ReplayLog, *, world: World | None, run_id: str,
                 hidden: StepHiddenState | None = None, handed: set[int] | None = None,
                 seen: Mapping[str, Seen] | None = None, wide: tuple[Wide, ...] = ()) -> None:
        self.item = item
        self.world = world
        self.hidden = hidden.names if hidden is not None else ()
        self.hidden_before = module_values(self.hidden) if self.hidden else {}
        self.code: Watch | None = None
        if hidden is not None and hidden.modules:
            self.code = _code_watch(hidden)
            if self.code is not None:
                self.code_before = self.code.look()
        reads: dict[str, Any] = {}
        self.encoded: dict[str, bytes] = {}
        self.arguments: dict[str, Any] = {}
        #: The arguments a step could change in place: checked when it is done.
        self.mutable: list[str] = []
        #: The Seen of each argument handed over as it is (see _as_read), once there is one.
        self.seen: dict[str, Seen] | None = None
        for key in item.reads:
            if key not in base:
                continue
            value = reads[key] = base[key]
            raw = self.encoded[key] = encoded[key]
            # A step gets the value its encoding decodes to, and changing it in place is
            # noticed (the record keeps the encoding); an immutable value is its own copy.
            if type(value) in SCALARS or _immutable(value):
                self.arguments[key] = value
            else:
                given, checked = _as_read(value, raw, handed,
                                          seen.get(key) if seen else None)
                self.arguments[key] = given
                if checked is not None:
                    if self.seen is None:
                        self.seen = {}
                    self.seen[key] = checked
                self.mutable.append(key)
        self.outcome = Outcome(item, reads, self.encoded, log,
                               world.now() if world is not None else None)
        self.context = Context(run_id, item.name, self.outcome.log)
        if item.wants_context:
            self.arguments["ctx"] = self.context
        if item.wants_state:
            self.arguments["state"] = MappingProxyType(_state_as_read(base, encoded, handed,
                                                                      wide))

    def finish(self, result: Any) -> Outcome:
        """Check what the step returned and whether it changed its arguments."""
        outcome = self.outcome
        outcome.finished = self.world.now() if self.world is not None else None
        for key in self.mutable:
            raw = self.encoded[key]
            if type(self.arguments[key]) is bytes:
                continue  # immutable: nothing to re-check (and no JSON to compare with)
            checked = self.seen.get(key) if self.seen is not None else None
            if checked is not None and checked.same(self.arguments[key]):
                continue  # the very objects it was handed, in place: its encoding is raw
            try:
                changed = codec.encode(self.arguments[key]) != raw
            except Exception:  # whatever the step left there cannot even be encoded
                changed = True
            if changed:
                outcome.hazards.append(
                    f"mutated its input {key!r} in place (the record keeps the value it was "
                    "given); return a new value instead")
        if self.hidden:
            after = module_values(self.hidden)
            outcome.hazards += module_state_hazards(self.hidden_before, after)
        if self.code is not None:
            outcome.hazards += [carried(change) for change in self.code.changes(
                self.code_before, self.code.look()) if change.hazard]
        if outcome.error is None:
            # What cannot be stored is the step's failure, recorded as such: never an
            # exception out of the engine, which would leave the run interrupted.
            try:
                outcome.outputs, outcome.encoded_outputs, outcome.seen, outcome.wide = \
                    _outputs(self.item, result)
            except Exception as exc:  # a Mapping of the step's own may raise anything
                outcome.error = exc
        return outcome


def _code_watch(hidden: StepHiddenState) -> Watch | None:
    """The watch of what the step's modules' code owns; None when it owns nothing.

    The places are found once per module objects and kept (a module loaded again
    is another object), so modules whose code owns none (most) have nothing to
    look at, now or after the step: that is remembered with the step's hidden
    state, for as long as the very same module objects are loaded.
    """
    loaded = sys.modules
    modules = [loaded[name] for name in hidden.modules if name in loaded]
    if hidden.quiet:  # (a loop, not all() over a generator: this runs at every step)
        quiet = hidden.quiet[0]
        if len(quiet) == len(modules):
            for ref, module in zip(quiet, modules, strict=True):
                if ref() is not module:
                    break
            else:
                return None
    watch = code_watch(modules)
    if watch.places:
        return watch
    # (A module object that takes no weak reference: asked each time.)
    with contextlib.suppress(TypeError):
        hidden.quiet[:] = [tuple(weakref.ref(module) for module in modules)]
    return None


#: A value encoding to fewer bytes than this is decoded for the step that reads it (a
#: few microseconds); a larger one may be handed over as it is (see _as_read). (Such a
#: value written by a step gets a Seen with its encoding, from the same size.)
_HANDED_FROM: Final = SEEN_FROM
#: A step's output dict or list of at least this many items is encoded with its Seen.
_SEEN_ITEMS: Final = 32


def _as_read(value: Any, raw: bytes, handed: set[int] | None,
             seen: Seen | None) -> tuple[Any, Seen | None]:
    """What a step reading the state value ``value``, encoded as ``raw``, is given:
    ``codec.decode(raw)``, or ``value`` itself when that is the same thing; and for the
    value itself, its :class:`~pinrun.artifacts.seen.Seen` when there is one (what
    :meth:`_Call.finish` checks it against), else None.

    Decoding a large value makes every object in it again (3-4x the cost of
    encoding it). A value that :func:`~pinrun.artifacts.codec.still_encodes` to
    ``raw`` (reads back as it is and encodes to ``raw``, checked now: the code that
    made it may hold it still) is what decoding would make, so the step is given the value itself;
    a change the step makes is noticed afterwards as for a copy (its encoding is
    compared with ``raw``), and the next step reading it checks it again, so the
    state it is given is always what its record says. ``handed`` holds the ids of
    the values handed over in this level: a value is handed to one step, once
    (siblings, or two names of the same object, get copies, as before).

    ``seen``: the Seen made with the value's encoding (by the step that wrote it),
    or None. When it is of ``raw`` and the value is still made of the very objects
    it saw, the value still encodes to ``raw``, told without walking it against the
    bytes; otherwise that walk tells (and makes the Seen the step is checked with).
    """
    if (type(value) is dict or type(value) is list) and len(raw) >= _HANDED_FROM and \
            handed is not None and id(value) not in handed and _EVERY not in handed:
        if seen is None or seen.encoding is not raw or not seen.same(value):
            seen = seen_encoding(value, raw)
        if seen is not None or codec.encodes_again(value, raw):
            handed.add(id(value))
            return value, seen
    return codec.decode(raw), None


#: In a level's ``handed``: a step was given the whole state as it is (no object's id).
_EVERY: Final = 0


def _state_as_read(base: Mapping[str, Any], encoded: Mapping[str, bytes],
                   handed: set[int] | None, wide: tuple[Wide, ...] = ()) -> dict[str, Any]:
    """What a step taking ``state`` is given: every value as :func:`_as_read` gives one.

    A wide state whose values all read back as themselves and still encode to their
    encodings (:func:`~pinrun.artifacts.codec.read_back_all`: one check for the whole
    state) is handed over as it is, once per level (its values then go to no other
    step of the level as they are); otherwise it is decoded, in one call when it is
    wide. The step's changes to it never reach the record, as before (its values are
    checked again before the next step is given them). ``wide``: the
    :class:`~pinrun.artifacts.seen.Wide` records of steps' outputs in the state, which
    tell the values they saw by identity in that check, while all they saw is unchanged.
    """
    if handed is not None and not handed and codec.read_back_all(base, encoded, wide):
        handed.add(_EVERY)
        return dict(base)
    # A wide state is decoded in one call (fresh values all the same).
    return codec.decode_many(encoded if type(encoded) is dict else dict(encoded)) or \
        {key: codec.decode(raw) for key, raw in encoded.items()}


def _immutable(value: object, depth: int = 0) -> bool:
    """Whether nothing can change ``value`` in place: a str, number, bool, None or
    bytes, or a (small, shallow) tuple or frozenset of those. Exact types only: a
    subclass may hold attributes."""
    kind = type(value)
    if kind in SCALARS:
        return True
    if isinstance(value, tuple | frozenset) and kind in (tuple, frozenset) and depth < 2 \
            and len(value) <= 64:
        return all(_immutable(item, depth + 1) for item in value)
    return False


def check_outputs(flow: Flow, state: Mapping[str, Any], outcome: Outcome,
                  written: set[str]) -> None:
    """Apply the flow's key policies to a step's outputs; a breach becomes its error.

    ``written`` holds the keys its level's earlier steps wrote; a key ``state``
    holds already is an overwrite, which ``flow.on_collision`` rules on.
    """
    item = outcome.step
    outputs = outcome.outputs or {}
    # Nothing collides (a wide step's outputs: found without a loop over their keys;
    # a view's isdisjoint goes over the smaller side).
    if outputs.keys().isdisjoint(written) and (flow.on_collision == "overwrite" or
                                               outputs.keys().isdisjoint(state.keys())):
        return
    try:
        for key in outputs:
            if key in written:
                raise StepOutputError(
                    f"step {item.name!r} writes {key!r}, which another step of the same "
                    "level also writes; the result would depend on which ran last. Give "
                    "one of them `after=` the other")
            if key in state:
                if flow.on_collision == "error":
                    raise StepOutputError(f"step {item.name!r} overwrites {key!r}, and flow "
                                          f"{flow.name!r} has on_collision='error'")
                if flow.on_collision == "warn":
                    outcome.hazards.append(f"overwrote key {key!r}")
    except StepOutputError as exc:
        outcome.error, outcome.outputs = exc, None


def _outputs(item: Step, result: Any
             ) -> tuple[dict[str, Any], dict[str, bytes], Mapping[str, Seen], Wide | None]:
    """The returned mapping, its values' encodings (refusing what cannot be stored),
    the Seens of its large dicts and lists, made with their encodings, and the Wide
    of many small values that read back as they are, made with theirs."""
    if result is None:
        return {}, {}, NO_SEEN, None
    if not isinstance(result, Mapping):
        raise _not_a_map(item, result)
    outputs = dict(result)
    if len(outputs) >= WIDE_FROM:
        # Many values that read back as they are: encoded at once, seen as they were
        # (a step reading the whole state is then handed them with no walk of each).
        wide = encode_wide(outputs)
        if wide is not None:
            return outputs, wide[0], NO_SEEN, wide[1]
    # Many plain values: one call (None: value by value). Its orjson call refuses a key
    # that is not a str, so a map it encodes needs no loop over its keys to check them.
    many = codec.encode_many(outputs)
    if many is not None:
        return outputs, many, NO_SEEN, None
    if not all(isinstance(k, str) for k in outputs):
        raise _not_a_map(item, result)
    encoded: dict[str, bytes] = {}
    seen: Mapping[str, Seen] = NO_SEEN
    for key, value in outputs.items():
        # A Seen for a wide dict or list (a small one is rarely SEEN_FROM bytes, and would
        # pay for a walk it never uses; one it misses is checked the old way when read).
        if (type(value) is dict or type(value) is list) and len(value) >= _SEEN_ITEMS:
            made = encode_seen(value)
            if made is not None:
                encoded[key] = made[0]
                if made[1] is not None:
                    if not seen:
                        seen = {}
                    seen[key] = made[1]  # type: ignore[index]  # (a dict, made just above)
                continue
        try:
            encoded[key] = encode_entry(value)
        except Exception:  # encoded again to name where it failed (a path costs, spelled out)
            encoded[key] = encode_output(value, f"the outputs of step {item.name!r}[{key!r}]")
    return outputs, encoded, seen, None


def _not_a_map(item: Step, result: Any) -> StepOutputError:
    return StepOutputError(f"step {item.name!r} returned a {type(result).__qualname__}; a "
                           "step returns a dict of the state keys it writes (or None)")


def encode_output(value: Any, path: str) -> bytes:
    """``codec.encode(value)``; any failure is an :class:`UnsupportedValueError` at ``path``.

    The codec raises :class:`UnsupportedValueError` for what it cannot
    represent; anything else escaping it (a registered encoder that raises,
    a value too deep or too large for the interpreter) is named the same way,
    so a step's bad return value is always its own recorded failure.
    """
    try:
        return encode_entry(value, root=path)  # bytes: a stand-in, never base64 in JSON
    except PinrunError:
        raise
    except Exception as exc:
        raise UnsupportedValueError(path, type(value).__qualname__,
                                    f"encoding it raised {type(exc).__name__}: {exc}") from exc


#: Gives each step the log its context answers from: recording, or replaying.
LogFor = Callable[[Step], "RecordingLog | ReplayLog"]
#: Watches one step while it runs; yields the list where what it notices goes.
StepGuard = Callable[[], AbstractContextManager[list[Any]]]


def run_level(flow: Flow, level: list[Step], state: Mapping[str, Any],
              encoded: Mapping[str, bytes], *, log_for: LogFor, world: World | None,
              run_id: str, guard: StepGuard | None = None,
              debug_step: str | None = None,
              hidden_state: HiddenState | None = None,
              seen: Mapping[str, Seen] | None = None,
              wide: tuple[Wide, ...] = ()) -> Iterator[Outcome]:
    """Run ``level``'s steps and yield their outcomes in declaration order.

    ``state`` and ``encoded`` are the level's view, which nothing changes while
    its steps are called (a level of one step may be given the walk's own state:
    its call takes what it reads first). ``encoded`` holds the canonical encoding
    of every state value; ``log_for``
    gives each step its context's log (a recording one, or a replay one).
    ``world`` stamps start and end times (None: no clock is read); ``guard``
    watches each step while it runs; the step named ``debug_step`` runs
    under pdb, stopped at its first line. ``hidden_state`` names, per step,
    the module-level state to watch (a change is a hazard on its outcome).
    ``seen`` holds the Seens of large values (see ``walk.RunState.seen``), ``wide``
    the Wides of steps' wide outputs (see ``walk.RunState.wide``).
    Sequential steps run lazily: the caller commits each outcome before the
    next starts.
    """
    hidden = hidden_state or {}
    # The level's view: siblings never see each other's writes (the walk merges them
    # into its own state, never into this one, while the level runs).
    base, base_encoded = state, encoded
    concurrent = flow.max_concurrency > 1 and sum(item.is_async for item in level) > 1
    # Values handed to a step as they are (not decoded copies): once per level.
    handed: set[int] = set()
    if not concurrent:
        for item in level:
            yield _run_sync(_Call(item, base, base_encoded, log_for(item), world=world,
                                  run_id=run_id, hidden=hidden.get(item.name), handed=handed,
                                  seen=seen, wide=wide),
                            guard, debug=item.name == debug_step)
        return
    calls = [_Call(item, base, base_encoded, log_for(item), world=world, run_id=run_id,
                   hidden=hidden.get(item.name), handed=handed, seen=seen, wide=wide)
             for item in level]
    yield from run_coroutine(_run_concurrently(calls, flow.max_concurrency, guard, debug_step))


# A step's own failure is recorded, never raised from here: any exception,
# SystemExit included (a step calling sys.exit() failed; it must not end the
# run unrecorded). KeyboardInterrupt goes through: the user stops the run.
_STEP_FAILURES = (Exception, SystemExit)


def _run_sync(call: _Call, guard: StepGuard | None, *, debug: bool = False) -> Outcome:
    result = None
    with guard() if guard is not None else nullcontext([]) as noticed:
        try:
            with activate(call.context):
                if debug and call.item.is_async:
                    result = run_coroutine(_stopped_in(call.item.func(**call.arguments)))
                elif debug:  # the forensic workflow: stop at the step's first line
                    # Not Pdb.runcall: it swallows a quit, which must stop the replay.
                    with _stopping_in(call.item.func.__code__):
                        result = call.item.func(**call.arguments)
                else:
                    result = call.item.func(**call.arguments)
                # (A dict or None, as most steps return, is never awaitable: no call.)
                if result is not None and type(result) is not dict and \
                        inspect.isawaitable(result):
                    result = run_coroutine(_await(result))
        except _STEP_FAILURES as exc:
            _stop_if_debugger_quit(exc, debug, call.item)
            call.outcome.error = exc
    call.outcome.guarded = list(noticed)
    return call.finish(result)


def _stop_if_debugger_quit(error: BaseException, debug: bool, item: Step) -> None:
    """Quitting pdb (``q``, or the end of its input) stops the replay: it is not the
    step's failure, and no verdict may be drawn from it."""
    if debug and type(error).__name__ == "BdbQuit" and type(error).__module__ == "bdb":
        raise InputError(f"you quit the debugger in step {item.name!r}: the replay stopped "
                         "there, with no verdict (use `continue` to let it go on)") from None


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end, also when called from inside a running event loop.

    ``asyncio.run`` refuses to nest, so under a running loop the coroutine
    runs on a fresh loop in a worker thread, with this thread's context
    variables (the active pinrun context among them).
    """
    import asyncio  # only async steps need it (see pinrun.engine.loops)

    if not in_event_loop():
        return asyncio.run(coroutine)
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pinrun-step") as pool:
        return pool.submit(context.run, asyncio.run, coroutine).result()


async def _run_concurrently(calls: list[_Call], limit: int, guard: StepGuard | None,
                            debug_step: str | None) -> list[Outcome]:
    import asyncio  # only async steps need it (see pinrun.engine.loops)

    gate = asyncio.Semaphore(limit)

    async def one(call: _Call) -> Outcome:
        debug = call.item.name == debug_step
        if not call.item.is_async:
            return _run_sync(call, guard, debug=debug)
        result = None
        async with gate:
            # Each task runs in a copy of the context: its guard watches it alone.
            with guard() if guard is not None else nullcontext([]) as noticed:
                try:
                    with activate(call.context):
                        running = call.item.func(**call.arguments)
                        result = await (_stopped_in(running) if debug else running)
                except _STEP_FAILURES as exc:
                    _stop_if_debugger_quit(exc, debug, call.item)
                    call.outcome.error = exc
            call.outcome.guarded = list(noticed)
        return call.finish(result)

    # gather keeps the order of its arguments, whatever order the steps finish in.
    return list(await asyncio.gather(*(one(call) for call in calls)))


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _stopped_in(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await an async step's coroutine under pdb, stopped at its first line.

    ``Pdb.runcall`` would only stop in the call that makes the coroutine, not
    in its body: here a trace function waits for the coroutine's own frame to
    start, in whichever thread runs the event loop, and hands it to pdb.
    """
    with _stopping_in(coroutine.cr_code):  # type: ignore[attr-defined]
        return await coroutine


@contextmanager
def _stopping_in(body: CodeType) -> Iterator[None]:
    """While the block runs in this thread, stop in pdb at the first line of the frame
    that runs ``body`` (a step's code): a trace function waits for it to start."""
    import pdb  # only when asked for: --step NAME --pdb

    debugger = pdb.Pdb()

    def wait(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is body:
            debugger.set_trace(frame)
            return debugger.trace_dispatch
        return None

    sys.settrace(wait)
    try:
        yield
    finally:
        sys.settrace(None)
