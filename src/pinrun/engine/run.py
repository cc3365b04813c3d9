"""Running a flow and recording it: ``pinrun.record(flow, inputs, store=...)``.

Level by level, the engine gives each step the values of the keys it reads as
their encodings decode (so mutating them cannot leak into the state, and a
mutation is noticed), runs it with its context, and merges what it returned in
declaration order. Each step is committed with what it read, what it returned, the context
events it consumed, the new state and the updated run record. A step that
raises leaves the state as it was; its failure is committed before
:class:`~pinrun.engine.records.RunFailedError` is raised from the step's own
exception.

A run that ``replaces`` another (``pinrun accept``) is linked to it in the
same commits: its first commit claims ``replacing/<old id>`` (so a retried
accept finds, and adopts, its own interrupted baseline), and its last one
sets ``replaced/<old id>`` and drops the claim. A kill at any moment leaves
either the old run as the baseline with at most one claimed, resumable new
run, or the new run linked; never a finished baseline without its link.

``durability`` says when that reaches the disk: ``"step"`` commits after every
step (a killed process leaves an interrupted run that ``pinrun resume``
continues), ``"run"`` commits the whole run once when it ends, and ``"none"``
does the same without forcing a sync. The run record is the same in all three.
A step's commit is one transaction and one device flush: it stores the step's
objects, the state, and a link of the run record holding only the steps since
the last commit (see :mod:`pinrun.engine.records`), so its cost does not grow
with the run; the whole record is written once, by the run's last commit. A
new run's pins and inputs go with its first step's commit: a run killed
before any step finished leaves no record (nothing it did would be kept).

Replay (the next part) runs this same engine with a replay log instead of a
recording one.
"""

from __future__ import annotations

import datetime as dt
import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pinrun.artifacts import codec
from pinrun.artifacts.digest import VALUE_KIND, Digest, Kind, compute_digest
from pinrun.artifacts.store import Store, WriteBatch
from pinrun.artifacts.trees import Entry, encode_entry
from pinrun.engine.call_values import SCALARS
from pinrun.engine.context import RecordingLog, ReuseLog, recorded_events
from pinrun.engine.events import type_name
from pinrun.engine.execution import HiddenState, Outcome, StepGuard, hidden_state_of
from pinrun.engine.lease import RunLease
from pinrun.engine.records import (
    NO_STATE,
    STATE_EVERY,
    RunRecord,
    RunStatus,
    StepError,
    StepRecord,
    built,
    changed,
    run_ref,
)
from pinrun.engine.value_digests import ValueDigests
from pinrun.engine.walk import LevelBase, RunState, Settled, walk
from pinrun.errors import (
    BaselineBusyError,
    InputError,
    RefConflictError,
    RunBusyError,
    RunFailedError,
)
from pinrun.flows.environment import warn_if_hash_seed_random
from pinrun.flows.flow import Flow
from pinrun.flows.pinning import pin_steps, project_root_for
from pinrun.flows.registry import find_entry, put_pins
from pinrun.flows.step import Step
from pinrun.world import SystemWorld, World
from pinrun.world.file_inputs import recorded_value
from pinrun.world.files import FileGuard, FileSetup, files_read
from pinrun.world.refusal import GuardedCall, recording_guard, world_hazards

__all__ = ["DURABILITIES", "REPLACED_PREFIX", "REPLACING_PREFIX", "BaselineBusyError",
           "Durability", "Recorder", "record", "record_async", "replaced_ref", "replacing_ref",
           "reuse_log_for"]

#: ``replaced/<old run id>`` points at the finished run that replaced it.
REPLACED_PREFIX = "replaced/"
#: ``replacing/<old run id>`` points at the first record of a replacing run not yet
#: finished (a new baseline being recorded, or interrupted while it was).
REPLACING_PREFIX = "replacing/"


def replaced_ref(run_id: str) -> str:
    """The ref that names the run which replaced run ``run_id``."""
    return f"{REPLACED_PREFIX}{run_id}"


def replacing_ref(run_id: str) -> str:
    """The ref that names the unfinished run replacing run ``run_id``, while there is one."""
    return f"{REPLACING_PREFIX}{run_id}"


iso_time: Callable[[dt.datetime], str]
try:
    # datetime.isoformat written in C for the times a run stamps (naive or UTC; anything
    # else is isoformat's own answer): ~10k instructions less a step.
    from pinrun.artifacts._speedups import iso_time
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    def iso_time(value: dt.datetime) -> str:
        """``value.isoformat()``: what the C iso_time answers for anything it is given."""
        return value.isoformat()

_ID_ENTROPY = 3
#: Most steps consume no context events: that value, encoded and digested once.
_NO_EVENTS = codec.encode([], root="context events")
_NO_EVENTS_DIGEST = compute_digest(Kind.VALUE, _NO_EVENTS)
#: When a run's progress reaches the disk.
Durability = Literal["step", "run", "none"]
DURABILITIES: tuple[str, ...] = ("step", "run", "none")


def record(flow: Flow, inputs: Mapping[str, Any], *, store: Store,
           durability: Durability = "step", world: World | None = None,
           project_root: Path | None = None, entry: str | None = None,
           replaces: RunRecord | None = None) -> RunRecord:
    """Run ``flow`` on ``inputs`` and record it in ``store``; returns the run record.

    Before anything runs, every step's code is pinned (fingerprint and the
    sources of the project modules under ``project_root``, by default the
    folder holding the store's ``.pinrun``) with the flow and the environment.
    ``durability`` is ``"step"`` (commit after each step), ``"run"`` (one
    commit when the run ends) or ``"none"`` (the same, without a forced sync).
    ``entry`` (``"module:attribute"``) tells ``pinrun resume`` where the flow
    is defined; by default it is looked up in the first step's module.
    ``replaces``: an earlier run this one re-records as a new baseline
    (``pinrun accept``); where a step asks its context for what that run's
    step did (the same effect with the same arguments, the clock...), the
    recorded answer is reused instead of calling the world again. The new run
    claims ``replacing/<old id>`` in its first commit and sets
    ``replaced/<old id>`` in its last one (see :data:`REPLACED_PREFIX`); a
    second run replacing the same one while this one is unfinished raises
    :class:`BaselineBusyError` before writing anything.

    Warns :class:`~pinrun.flows.environment.HashSeedWarning`, once per process,
    when this interpreter's hash seed is random (``PYTHONHASHSEED`` unset).

    Raises :class:`~pinrun.flows.MissingInputError` or
    :class:`~pinrun.flows.FingerprintError` before anything is written, and
    :class:`RunFailedError` (from the step's exception) when a step fails,
    after the failure is recorded.
    """
    check_durability(durability)
    flow.check_inputs(inputs.keys())
    root = project_root if project_root is not None else project_root_for(store.path)
    pins = pin_steps(flow.steps, root)
    warn_if_hash_seed_random()  # once per process, and never for a CLI run (it has a seed)
    encoded: dict[str, bytes] = {}
    state: dict[str, Any] = {}
    for key, value in inputs.items():
        raw = encoded[key] = encode_entry(value, root=f"inputs[{key!r}]")
        # The run's own copy of its inputs: an immutable value is its own copy.
        state[key] = value if type(value) in SCALARS else codec.decode(raw)
    actual_world = world if world is not None else SystemWorld()
    started = actual_world.now()
    # Readable and time-ordered to the millisecond, so `pinrun runs` lists newest first.
    stamp = (f"{started.year:04d}{started.month:02d}{started.day:02d}T{started.hour:02d}"
             f"{started.minute:02d}{started.second:02d}{started.microsecond // 1000:03d}")
    run_id = f"{stamp}-{actual_world.entropy(_ID_ENTROPY).hex()}"
    recorder = Recorder(flow, store, actual_world, durability, state=state, encoded=encoded,
                        timing={"started": iso_time(started), "steps": []},
                        project_root=root)
    batch = recorder.writer()
    where = entry if entry is not None else find_entry(flow, root)
    stored = put_pins(batch, flow, pins, where, root)
    inputs_digest = recorder.values.put_snapshot(batch, state, root="inputs", payloads=encoded,
                                                 entries_out=recorder.entries)
    recorder.run = RunRecord(id=run_id, flow=flow.name, status="running", inputs=inputs_digest,
                             state=inputs_digest, flow_pin=stored.flow, env=stored.env,
                             entry=where, replaces=replaces.id if replaces else None)
    if replaces is not None:
        recorder.log_for_step = reuse_log_for(store, replaces, actual_world)
    recorder.step_pins = stored.steps
    recorder.hidden_state = hidden_state_of(pins)
    return recorder.execute()


async def record_async(flow: Flow, inputs: Mapping[str, Any], *, store: Store,
                       durability: Durability = "step", world: World | None = None,
                       project_root: Path | None = None, entry: str | None = None,
                       replaces: RunRecord | None = None) -> RunRecord:
    """:func:`record` for async code: ``await pinrun.record_async(flow, inputs, store=...)``.

    The run goes on in a worker thread (with this task's context variables),
    so the caller's event loop keeps serving its other tasks while steps run
    and commits reach the disk; its async steps run on an event loop of their
    own in that thread. The same arguments, record and errors as :func:`record`.
    """
    import asyncio  # only async callers need it (see pinrun.engine.loops)

    return await asyncio.to_thread(record, flow, inputs, store=store, durability=durability,
                                   world=world, project_root=project_root, entry=entry,
                                   replaces=replaces)


def reuse_log_for(store: Store, earlier: RunRecord,
                  world: World) -> Callable[[Step], RecordingLog]:
    """Each step's log when re-recording ``earlier``: its answers first, then the world."""
    events = {step.name: step.events for step in earlier.steps}  # final attempts

    def reuse(item: Step) -> RecordingLog:
        found = recorded_events(store, events[item.name]) if item.name in events else []
        return ReuseLog(world, found)

    return reuse


def check_durability(durability: str) -> None:
    """Refuse a durability that is not one of :data:`DURABILITIES`."""
    if durability not in DURABILITIES:
        raise InputError(f"durability={durability!r} is not one of {', '.join(DURABILITIES)}")


class Recorder:
    """One run being recorded: its state, its record, and when it is committed."""

    run: RunRecord
    step_pins: dict[str, Digest]

    def __init__(self, flow: Flow, store: Store, world: World, durability: Durability, *,
                 state: dict[str, Any], encoded: dict[str, bytes],
                 timing: dict[str, Any], project_root: Path) -> None:
        self.flow = flow
        #: The project the steps run in: file inputs and call sites are named under it.
        self.project_root = project_root
        self.store = store
        self.world = world
        self.durability = durability
        self.state = state
        #: The canonical encoding of every state value, kept beside it (never encoded twice).
        self.encoded = encoded
        #: The stored entry of every state value (filled as values are stored).
        self.entries: dict[str, Entry] = {}
        #: Where its trees are stored: each small value digested once, however many
        #: trees (outputs, inputs of the steps that read it, the state) name it.
        self.values = ValueDigests()
        self.timing = timing
        self.steps: list[StepRecord] = []
        #: The digest of the stored run record (None until the first commit).
        self.digest: Digest | None = None
        #: How many of ``steps`` and of the timing's steps that record's chain holds.
        self._stored_steps = 0
        self._stored_timing = 0
        #: Commits since the last one that stored the state (see execute()).
        self._bare_links = 0
        self._batch: WriteBatch | None = None
        #: Raw digests of the objects this run's commits stored (see writer()).
        self._held: set[bytes] = set()
        self.attempts: dict[str, int] = {}
        #: The base of the level being run, when it has siblings (recorded for resume).
        self.level: LevelBase | None = None
        #: Each step's context log (None: a fresh recording log).
        self.log_for_step: Callable[[Step], RecordingLog] | None = None
        self._skip: frozenset[str] = frozenset()
        # The rest of the walk's mode: recording stamps times and notes the network and
        # processes a step reaches outside ctx.effect (hazards a replay will refuse), and
        # the files it reads (its file inputs, which a replay checks).
        self.guard: StepGuard | None = FileGuard(recording_guard, FileSetup.for_store(
            store.path, project_root, files=_step_files(flow)))
        self.debug_step: str | None = None
        #: Per step, the module-level state its pin says it reads (watched for changes).
        self.hidden_state: HiddenState | None = {}

    def writer(self) -> WriteBatch:
        """The batch being filled for the next commit (one per step, or the run's only one)."""
        if self._batch is None:
            # What an earlier commit of this run stored (new, or found there) is named by
            # the record that commit wrote, which the run's ref reaches; each commit
            # checks the ref still names that record (expected=self.digest) in its
            # transaction, so gc cannot have taken them: a step's commit does not queue
            # nor look up again the state's values it re-names, the empty events...
            self._batch = WriteBatch(self.store, held=self._held)
        return self._batch

    def execute(self, *, skip: frozenset[str] = frozenset(), lease_held: bool = False,
                resumed_level: LevelBase | None = None) -> RunRecord:
        """Run every step not in ``skip``, level by level; returns the final record.

        :meth:`writer` holds what was queued before (pins, inputs);
        ``self.digest`` is what the run's ref points to now (None for a new
        run). A resumed run whose last level was half done passes that
        level's base as ``resumed_level``, and holds the run's lease itself.
        """
        self.steps = list(self.run.steps)
        self._stored_steps, self._stored_timing = len(self.steps), len(self.timing["steps"])
        # A resume's first commit stores the state (its loaded one may be rebuilt, and a
        # rebuild merges at most STATE_EVERY - 1 commits' steps).
        self._bare_links = 0 if self.digest is None else STATE_EVERY
        self._skip = skip
        lease = (RunLease(self.store.path, self.run.id)
                 if self.durability == "step" and not lease_held else None)
        try:
            # A resumed run says so before it goes on, and a new baseline claims the run it
            # replaces before running anything; a new run's first step commits it.
            if self.durability == "step" and (self.digest is not None
                                              or self.run.replaces is not None):
                self._commit(self.writer(), "running")
            walk(self.flow, RunState(self.state, self.encoded), self,
                 resumed_level=resumed_level)
            if self.run.status != "succeeded" or self.durability != "step":
                self._commit(self.writer(), "succeeded")
        finally:
            if lease is not None:
                lease.release()
        return self.run

    # The recording mode of the engine's walk (pinrun.engine.walk.Mode).

    @property
    def run_id(self) -> str:
        return self.run.id

    def select(self, level: Sequence[Step]) -> list[Step]:
        return [item for item in level if item.name not in self._skip]

    def log_for(self, item: Step) -> RecordingLog:
        return self.log_for_step(item) if self.log_for_step is not None else \
            RecordingLog(self.world)

    def begin_level(self, base: LevelBase, *, fresh: bool, siblings: bool) -> None:
        if fresh and siblings:
            base.entries.update(self.entries)
        elif fresh:
            # One step: it reads the entries before its own outputs join them (see
            # _record_step), and no resume needs the level's start: no copy.
            base.entries = self.entries
        self.level = base if siblings else None

    def settle(self, outcome: Outcome, base: LevelBase, *, final: bool) -> Settled | None:
        """Record the step; in ``"step"`` durability commit it (the run's last step's
        commit says the run succeeded: one durable commit per step)."""
        # The network or a process, reached outside ctx.effect (the step's file watch is
        # among its guarded calls too: alone, it is no such hazard).
        for call in outcome.guarded:  # (a loop: most steps have their file watch alone)
            if isinstance(call, GuardedCall):
                outcome.hazards += world_hazards(outcome.guarded, self.project_root)
                break
        self._record_step(outcome, base.entries)
        if outcome.error is not None:
            return None  # committed with the level's end, which fails the run
        if self.durability == "step":
            if final:
                self.level = None
            self._commit(self.writer(), "succeeded" if final else "running")
        return Settled(outcome.outputs or {}, outcome.encoded_outputs, outcome.seen,
                       outcome.wide)

    def end_level(self, level: Sequence[Step], failure: Outcome | None) -> None:
        if failure is not None:
            self._commit(self.writer(), "failed")
            raise RunFailedError(self.run) from failure.error
        self.level = None

    def _record_step(self, outcome: Outcome, entries: dict[str, Entry]) -> None:
        item = outcome.step
        attempt = self.attempts.get(item.name, 0) + 1
        self.attempts[item.name] = attempt
        # One entry per step record, in order; plain strings and numbers, since
        # timing is re-stored at every commit.
        finished = outcome.finished if outcome.finished is not None else self.world.now()
        self.timing["steps"].append({
            "name": item.name, "attempt": attempt, "started": iso_time(outcome.began),
            "seconds": (finished - outcome.began).total_seconds()})
        batch = self.writer()
        # What it read, taken before its outputs join the entries (a level of one step
        # reads the run's own entries: a key it reads and writes is read as it was).
        read = {key: entries[key] for key in outcome.reads}
        outputs = None
        if outcome.outputs is not None:
            try:
                outputs = self.values.put_snapshot(
                    batch, outcome.outputs, payloads=outcome.encoded_outputs,
                    root=f"the outputs of step {item.name!r}", entries_out=self.entries)
            except Exception as exc:  # what cannot be stored fails the step, recorded
                outcome.error, outcome.outputs = exc, None
        files = self._file_inputs(outcome, batch)  # first: it may add a hazard
        self.steps.append(built(  # (StepRecord(...) without its frozen __init__)
            StepRecord, name=item.name,
            status="failed" if outcome.error is not None else "succeeded",
            # What it read is in the state already: its tree names the same entries.
            inputs=self.values.put_entries(batch, read),
            outputs=outputs,
            events=batch.put_value([e.as_value() for e in outcome.log.events],
                                   root="context events") if outcome.log.events
            else batch.put(VALUE_KIND, _NO_EVENTS, _NO_EVENTS_DIGEST),
            error=describe_error(outcome.error) if outcome.error is not None else None,
            attempt=attempt, hazards=tuple(outcome.hazards), code=self.step_pins[item.name],
            files=files,
        ))

    @staticmethod
    def _file_inputs(outcome: Outcome, batch: WriteBatch) -> Digest | None:
        """Store the files the step read, digested now it is done (None: it read none)."""
        watch = files_read(outcome.guarded)
        if watch is None or not (watch.reads or watch.listings):
            return None  # (what recorded_value makes of a watch that saw nothing)
        value, hazards = recorded_value(watch)
        outcome.hazards += hazards
        return batch.put_value(value, root="input files") if value is not None else None

    def _commit(self, batch: WriteBatch, status: RunStatus) -> None:
        """Write the record as it stands (with everything queued in ``batch``).

        While the run goes on after an earlier commit, only a link is written:
        the steps since then, continuing that commit's record (O(1) in the run's
        length); its end writes the whole record.
        """
        running = status == "running"
        linked = running and self.digest is not None
        timing = self.timing if not linked else {
            **self.timing, "steps": self.timing["steps"][self._stored_timing:]}
        # Most running commits leave the state out (an object, a page written, less): a
        # loader rebuilds it from the newest link that has it and the steps since.
        bare = running and self._bare_links < STATE_EVERY - 1
        self._bare_links = self._bare_links + 1 if bare else 0
        updated = changed(
            self.run, status=status,
            state=NO_STATE if bare else self.values.put_entries(batch, self.entries),
            steps=tuple(self.steps[self._stored_steps:] if linked else self.steps),
            # While the run goes on, its timing rides in the record (an object less per
            # step's commit: each is a page write); its end stores the whole value.
            timing=None if running else batch.put_value(timing),
            timing_inline=timing if running else None,
            level_start=(self.values.put_entries(batch, self.level.entries)
                         if self.level is not None and status != "succeeded" else None),
            continues=self.digest if linked else None, digest=None, timing_parts=(),
            rebuilt_state=None)
        digest = batch.put(Kind.RUN, updated.encode())
        if running:
            # Garbage once the run is whole (its end writes the whole record and state):
            # not worth zstd's time at every step.
            batch.store_as_is(digest)
            if not bare:
                batch.store_as_is(updated.state)
        batch.set_ref(run_ref(self.run.id), digest, expected=self.digest)
        old = self.run.replaces
        if old is not None and status != "running":
            # The end of a new baseline and its link: one commit, never one without the other.
            batch.set_ref(replaced_ref(old), digest)
            batch.delete_ref(replacing_ref(old))
        elif old is not None and self.digest is None:
            # Its first commit claims the old run, so a retry finds this run to adopt.
            batch.set_ref(replacing_ref(old), digest, expected=None)
        try:
            batch.commit()
        except RefConflictError as conflict:
            if old is not None and conflict.ref == replacing_ref(old):
                raise BaselineBusyError(old) from None
            raise RunBusyError(self.run.id) from None
        if self.durability != "none" and not self.store.durable:
            self.store.sync()
        self._batch = None
        if self.durability == "step":  # (the other durabilities commit once)
            if len(self._held) > _MOST_HELD:  # a long run: start again from none
                self._held.clear()
            self._held.update(batch.offered())
        # What the run is now: the whole record, named by the newest commit's digest.
        self.run = changed(updated, steps=tuple(self.steps), continues=None, digest=digest,
                            timing_inline=None)
        self.digest = digest
        self._stored_steps, self._stored_timing = len(self.steps), len(self.timing["steps"])


#: At most this many digests are kept as stored by a run's commits (32 bytes each).
_MOST_HELD = 1 << 16


def _step_files(flow: Flow) -> frozenset[str]:
    """The files of ``flow``'s step functions: a step's own file names its reads, also when
    it is installed in site-packages."""
    found = _STEP_FILES.get(flow)
    if found is None:
        found = _STEP_FILES[flow] = frozenset(
            func_code.co_filename for item in flow.steps
            if (func_code := getattr(item.func, "__code__", None)) is not None)
    return found


#: Per flow, the files of its steps: a flow and its steps are immutable once built, so
#: the answer is kept with the flow (weakly: a flow loaded from pinned code leaves with it).
_STEP_FILES: weakref.WeakKeyDictionary[Flow, frozenset[str]] = weakref.WeakKeyDictionary()


def describe_error(error: BaseException) -> StepError:
    """The recorded form of a step's exception: type, message and traceback."""
    name = type_name(error)
    # From the step's own frames: pinrun's, which called it, say nothing about the error
    # (all of them are kept when pinrun itself raised it: an output it refused, say).
    frames = error.__traceback__
    while frames is not None and frames.tb_next is not None and \
            frames.tb_frame.f_code.co_filename.startswith(_ENGINE):
        frames = frames.tb_next
    if frames is not None and frames.tb_frame.f_code.co_filename.startswith(_ENGINE):
        frames = error.__traceback__
    return StepError(type=name, message=str(error), traceback="".join(
        traceback.format_exception(type(error), error, frames)))


_ENGINE = str(Path(__file__).resolve().parent)
