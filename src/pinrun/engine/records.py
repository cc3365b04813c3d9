"""Run records: what a run pins, as stored ``run`` objects.

A run record names, by digest, the flow, the input snapshot, and for every
step the snapshot of what it read, what it returned, and the context events it
consumed, with its status and error. Timing lives in a separate value the
record points to (``timing``), outside what replay compares; a record of a
run still recording holds its timing inline instead (``timing_inline``: one
object less for each step's commit to write).

A finished run's record is whole: every step, written once. While a run
records with ``durability="step"``, each step's commit writes only a *link*:
a record of the run holding the steps since the previous commit, which names
that commit's record in ``continues`` (the first commit's record continues
nothing). The ref ``runs/<id>`` names the newest link, so a commit costs the
same at the run's 5,000th step as at its first, and an interrupted run keeps
every step it finished. :func:`load_run_object` follows the chain and gives
the whole record, so every reader sees one record either way.

Most running commits do not store the run's state either (``state`` null,
format :data:`~pinrun.artifacts.shapes.RUN_LINK_FORMAT`): a step's commit then
writes one object (a page) less. The recorder stores it at every
:data:`STATE_EVERY`-th commit of a run, at the first commit of a resume and at
every commit that ends the run; loading a record without one rebuilds the
state from the newest link that has it (or the run's inputs, the state before
its first step) and the outputs of the steps since, as the run merged them
(:mod:`pinrun.engine.rebuilt_state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, fields, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import orjson

from pinrun.artifacts import codec, shapes
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.kept import Kept
from pinrun.artifacts.store import Store
from pinrun.artifacts.trees import Entry
from pinrun.data_classes import data_class
from pinrun.engine.lease import is_live
from pinrun.engine.rebuilt_state import rebuild_state
from pinrun.errors import (
    CorruptObjectError,
    InputError,
    PinrunError,
    RunFailedError,
    UnknownRefError,
)

is_run_id = shapes.is_run_id

__all__ = [
    "NO_STATE",
    "RUN_REF_PREFIX",
    "STATE_EVERY",
    "RunFailedError",
    "RunRecord",
    "RunStatus",
    "StepError",
    "StepRecord",
    "built",
    "changed",
    "display_status",
    "hash_seed_of",
    "is_run_id",
    "load_env",
    "load_run",
    "load_run_object",
    "load_run_ref",
    "load_timing",
    "recorded_hash_seed",
    "run_ref",
]

RUN_FORMAT = shapes.RUN_FORMAT
RUN_LINK_FORMAT = shapes.RUN_LINK_FORMAT
#: What a record that leaves the state out holds as its ``state`` (stored as null); this
#: very object, told by identity (a commit encodes its record: no digest comparison).
NO_STATE: Final = Digest(bytes(32))
#: A running run's every STATE_EVERY-th commit stores the state (a loader rebuilding it
#: merges the outputs of at most STATE_EVERY - 1 commits' steps).
STATE_EVERY = 8
#: Refs of runs are ``runs/<id>``.
RUN_REF_PREFIX = shapes.RUN_REF_PREFIX
RunStatus = Literal["running", "succeeded", "failed"]
#: The most links a chain of step commits may have (bounds what a crafted record costs).
MAX_LINKS = shapes.MAX_RUN_LINKS


def run_ref(run_id: str) -> str:
    """The ref under which run ``run_id`` is kept."""
    return f"{RUN_REF_PREFIX}{run_id}"


@data_class(frozen=True)
class StepError:
    """How a step failed: the exception's type, message and traceback."""

    type: str
    message: str
    traceback: str


@data_class(frozen=True)
class StepRecord:
    """One step of a run, as recorded."""

    name: str
    status: Literal["succeeded", "failed"]
    #: Snapshot of the state keys the step read.
    inputs: Digest
    #: Snapshot of the keys it returned (None when it failed).
    outputs: Digest | None
    #: The context events it consumed (ctx.now, random, uuid4, effects), in order.
    events: Digest
    error: StepError | None = None
    attempt: int = 1
    #: Determinism hazards noticed while it ran (e.g. a key collision).
    hazards: tuple[str, ...] = ()
    #: The pinned step: its fingerprint, version and the sources of its code.
    code: Digest | None = None
    #: The files it read and the folders it listed, with their digests (a value, see
    #: :mod:`pinrun.world.file_inputs`); None when it read none (or an older pinrun).
    files: Digest | None = None


@data_class(frozen=True)
class RunRecord:
    """A recorded run: everything replay needs, named by digest."""

    id: str
    flow: str
    status: RunStatus
    inputs: Digest
    #: The state after the steps (a snapshot tree; stored, unless ``rebuilt_state`` is
    #: set). :data:`NO_STATE` only in a running commit's record that left it out (see
    #: the module's docstring), never in a loaded record.
    state: Digest
    steps: tuple[StepRecord, ...] = ()
    timing: Digest | None = None
    #: The pinned flow (its steps' code, policies and levels).
    flow_pin: Digest | None = None
    #: The environment it ran in (Python, platform, distributions, hash seed).
    env: Digest | None = None
    #: Where the flow is defined, ``module:attribute``, when known (resume imports it).
    entry: str | None = None
    #: The state as the level in progress began, while a level with siblings is half
    #: done (what its remaining steps read when the run is resumed).
    level_start: Digest | None = None
    #: The run this one re-recorded as a new baseline (``pinrun accept``).
    replaces: str | None = None
    #: In a link of a run still recording: the record of the previous commit, whose
    #: steps come before this one's (a loaded record is whole, and continues nothing).
    continues: Digest | None = None
    #: The digest of this record's stored object (set once it is stored).
    digest: Digest | None = field(default=None, compare=False)
    #: A record loaded from a chain of links: each link's timing (a value's digest, or
    #: the value held inline), oldest first (:func:`load_timing` joins them).
    timing_parts: tuple[Digest | dict[str, Any], ...] = field(default=(), compare=False)
    #: In a record of a run still recording (status ``running``): its timing value
    #: itself, held in the record instead of as an object of its own (``timing`` is
    #: then None). Every step's commit writes one object less; a finished run's
    #: record names its timing value as before.
    timing_inline: dict[str, Any] | None = field(default=None, compare=False)
    #: A record loaded from a commit that left the state out: each state key's
    #: entry, rebuilt (``state`` is their snapshot's digest, which the run's next commit
    #: that stores its state writes; until then that tree is not in the store).
    rebuilt_state: Mapping[str, Entry] | None = field(default=None, compare=False)

    @property
    def failed_step(self) -> StepRecord | None:
        """The step that failed, if the run failed (the last attempt of a resumed run)."""
        if self.status != "failed":
            return None
        return next((s for s in reversed(self.steps) if s.status == "failed"), None)

    def completed(self) -> frozenset[str]:
        """Names of the steps that succeeded: a resumed run skips them."""
        return frozenset(s.name for s in self.steps if s.status == "succeeded")

    def to_value(self) -> dict[str, Any]:
        """The canonical value stored as the run object."""
        value = {
            "format": RUN_FORMAT if self.state is not NO_STATE else RUN_LINK_FORMAT,
            "id": self.id, "flow": self.flow, "status": self.status, "inputs": self.inputs,
            "state": self.state if self.state is not NO_STATE else None,
            "timing": self.timing,
            "flow_pin": self.flow_pin, "env": self.env, "entry": self.entry,
            "level_start": self.level_start, "replaces": self.replaces,
            "steps": [_step_value(s) for s in self.steps],
        }
        if self.continues is not None:  # only links have it: whole records stay as they were
            value["continues"] = self.continues
        if self.timing_inline is not None:  # only running records: finished ones stay as they were
            value["timing_inline"] = self.timing_inline
        return value

    def encode(self) -> bytes:
        """The run object's payload: ``codec.encode(self.to_value())``, built directly.

        A run record is re-encoded at every commit, so it skips the generic
        walk: its shape is known, and only digests need a tag.
        """
        plain = {
            "format": RUN_FORMAT if self.state is not NO_STATE else RUN_LINK_FORMAT,
            "id": self.id, "flow": self.flow, "status": self.status,
            "inputs": _tag(self.inputs),
            "state": _tag(self.state) if self.state is not NO_STATE else None,
            "timing": _tag(self.timing), "flow_pin": _tag(self.flow_pin),
            "env": _tag(self.env), "entry": self.entry,
            "level_start": _tag(self.level_start), "replaces": self.replaces,
            "steps": [_step_plain(s) for s in self.steps],
        }
        if self.continues is not None:
            plain["continues"] = _tag(self.continues)
        if self.timing_inline is not None:  # plain strings and numbers (see Recorder)
            plain["timing_inline"] = self.timing_inline
        try:
            return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a lone surrogate in an error message: the codec escapes it
            return codec.encode(self.to_value(), root="run record")

    @classmethod
    def from_value(cls, data: Any, digest: Digest | None = None) -> RunRecord:
        """Rebuild a record stored by :meth:`to_value` (decoded, or as tagged JSON).

        Every field is checked first (:mod:`pinrun.artifacts.shapes`): a bad
        record raises :class:`~pinrun.errors.CorruptObjectError` naming
        ``digest``, or :class:`~pinrun.errors.InputError` when the value was
        not read from the store (no ``digest``); never a ``KeyError``.
        """
        value = shapes.check_shape(digest, Kind.RUN, data)
        # Every field is given and checked (a replay loads a record each): a step's
        # checked dict holds exactly its record's fields (a test holds the table to it),
        # so it becomes the record's own, with its error and hazards made as they are kept.
        steps = tuple(map(_step_record, value["steps"]))
        return built(cls, id=value["id"], flow=value["flow"], status=value["status"],
                     inputs=value["inputs"],
                     state=value["state"] if value["state"] is not None else NO_STATE,
                     steps=steps,
                     timing=value["timing"], flow_pin=value["flow_pin"], env=value["env"],
                     entry=value["entry"], level_start=value["level_start"],
                     replaces=value["replaces"], continues=value.get("continues"),
                     digest=digest, timing_inline=value.get("timing_inline"),
                     timing_parts=(), rebuilt_state=None)

    def with_step(self, step: StepRecord, state: Digest, status: RunStatus) -> RunRecord:
        """A new record with ``step`` appended (records are never changed in place)."""
        return replace(self, steps=(*self.steps, step), state=state, status=status, digest=None)


_Record = TypeVar("_Record", "RunRecord", StepRecord)
#: Each record class's fields (all of them init fields; neither has a __post_init__).
_FIELDS: dict[type[Any], frozenset[str]] = {
    cls: frozenset(item.name for item in fields(cls)) for cls in (RunRecord, StepRecord)}


def built(cls: type[_Record], **values: Any) -> _Record:
    """``cls(**values)`` given every field: the same record, without the frozen
    ``__init__``, which sets each field through ``object.__setattr__`` (~16k
    instructions a step record, made at every recorded step)."""
    if values.keys() != _FIELDS[cls]:
        raise TypeError(f"{cls.__name__} needs exactly its fields, not {sorted(values)}")
    made = object.__new__(cls)
    made.__dict__.update(values)
    return made


def _step_record(checked: dict[str, Any]) -> StepRecord:
    """The StepRecord of a step's fields as :func:`~pinrun.artifacts.shapes.check_shape`
    returns them (a new dict for each: taken as the record's own)."""
    made = object.__new__(StepRecord)
    error = checked["error"]
    if error is not None:
        checked["error"] = StepError(**error)
    checked["hazards"] = tuple(checked["hazards"])
    made.__dict__.update(checked)
    return made


def changed(record: RunRecord, **changes: Any) -> RunRecord:
    """``dataclasses.replace(record, **changes)`` at a third of its cost (the recorder
    copies its record twice a durable step): its fields copied with ``changes`` set, no
    field list walked, no frozen ``__init__`` (a RunRecord has no ``__post_init__``; its
    fields are checked when read from the store)."""
    if not changes.keys() <= _FIELDS[RunRecord]:
        raise TypeError(f"RunRecord has no field {sorted(changes.keys() - _FIELDS[RunRecord])}")
    made = object.__new__(RunRecord)
    fields = made.__dict__
    fields.update(record.__dict__)
    fields.update(changes)
    return made


def _tag(digest: Digest | None) -> dict[str, str] | None:
    """A digest as the codec writes it."""
    return {"$digest": digest.raw.hex()} if digest is not None else None


def _step_plain(step: StepRecord) -> dict[str, Any]:
    """:func:`_step_value` with its digests tagged, as the codec writes them."""
    error = step.error
    value = {"name": step.name, "status": step.status, "inputs": _tag(step.inputs),
             "outputs": _tag(step.outputs), "events": _tag(step.events),
             "error": None if error is None else {
                 "type": error.type, "message": error.message, "traceback": error.traceback},
             "attempt": step.attempt, "hazards": list(step.hazards), "code": _tag(step.code)}
    if step.files is not None:
        value["files"] = _tag(step.files)
    return value


def _step_value(step: StepRecord) -> dict[str, Any]:
    error = None
    if step.error is not None:
        error = {"type": step.error.type, "message": step.error.message,
                 "traceback": step.error.traceback}
    value = {"name": step.name, "status": step.status, "inputs": step.inputs,
             "outputs": step.outputs, "events": step.events, "error": error,
             "attempt": step.attempt, "hazards": list(step.hazards), "code": step.code}
    if step.files is not None:  # written only when there are some: older records stay as they were
        value["files"] = step.files
    return value


def display_status(store: Store, run: RunRecord) -> str:
    """The status to show: ``interrupted`` for a running record nobody is writing."""
    if run.status == "running" and not is_live(store.path, run.id):
        return "interrupted"
    return run.status


def load_run(store: Store, run_id: str) -> RunRecord:
    """The run recorded as ``run_id`` (a full id, or a unique prefix of one).

    The record must be well formed and hold the id its ref names, or
    :class:`~pinrun.errors.CorruptObjectError` is raised: an id read from a
    record names a lease file and reaches terminals, so a record kept under
    ``runs/A`` that says it is run ``../B`` is damage, never a run.
    """
    name = run_ref(run_id)
    target = store.get_ref(name)
    if target is None:
        matches = sorted(store.refs(name))
        if len(matches) > 1:
            raise InputError(f"{run_id!r} is the start of {len(matches)} run ids; give more "
                             f"of it (e.g. {matches[0][len(RUN_REF_PREFIX):]})")
        if not matches:
            raise UnknownRefError(name)
        name = matches[0]
        target = store.ref(name)
    return load_run_ref(store, name, target)


def load_run_ref(store: Store, name: str, target: Digest | None = None) -> RunRecord:
    """The run kept under the ref ``name`` (``runs/<id>``), checked against its ref."""
    digest = target if target is not None else store.ref(name)
    run = load_run_object(store, digest)
    if run.id != name[len(RUN_REF_PREFIX):] or not name.startswith(RUN_REF_PREFIX):
        raise CorruptObjectError(digest, None, f"it is the record of run {run.id} but is kept "
                                 f"under the ref {name!r}")
    return run


def load_run_object(store: Store, digest: Digest) -> RunRecord:
    """The run record stored as ``digest`` (a tag, say), read as data and checked.

    A link of a run still recording is followed back to the run's first
    commit: the record returned holds every step, with ``digest`` the link's.
    """
    head = _load_link(store, digest)
    if head.continues is None:  # a run's first commit: its own steps since its inputs
        if head.state is NO_STATE:
            first, entries = rebuild_state(store, [head])
            head = replace(head, state=first, rebuilt_state=entries)
        if head.timing_inline is not None:
            return replace(head, timing_parts=(head.timing_inline,), timing_inline=None)
        return head
    links = [head]
    holder: Digest = digest
    previous: Digest | None = head.continues
    while previous is not None:
        if len(links) >= MAX_LINKS:
            raise CorruptObjectError(digest, None, f"its chain of step commits is longer than "
                                     f"{MAX_LINKS:,} records")
        link = _load_link(store, previous)
        if link.id != head.id:
            raise CorruptObjectError(holder, None, f"it is a link of run {head.id} that "
                                     f"continues {previous.hex}, a record of run {link.id}")
        links.append(link)
        holder, previous = previous, link.continues
    links.reverse()
    parts = (link.timing if link.timing is not None else link.timing_inline for link in links)
    state, rebuilt = head.state, head.rebuilt_state  # (None: a link is read as stored)
    if state is NO_STATE:
        state, rebuilt = rebuild_state(store, links)
    return replace(head, steps=tuple(step for link in links for step in link.steps),
                   continues=None, digest=digest, timing_inline=None, state=state,
                   rebuilt_state=rebuilt,
                   timing_parts=tuple(part for part in parts if part is not None))


def load_timing(store: Store, run: RunRecord) -> dict[str, Any]:
    """Run ``run``'s timing value (each step's start and duration...); {} when it has none.

    A record loaded from a chain of links joins its links' values: each one's
    ``steps`` in order, the newest one's other keys. Timing is outside what
    replay compares: a value that is not a dict reads as {}.
    """
    if not run.timing_parts:
        value = store.get_value(run.timing) if run.timing is not None else {}
        return value if isinstance(value, dict) else {}
    parts = [part if isinstance(part, dict) else store.get_value(part)
             for part in run.timing_parts]
    joined = dict(parts[-1]) if isinstance(parts[-1], dict) else {}
    joined["steps"] = [entry for part in parts if isinstance(part, dict)
                       and isinstance(part.get("steps"), list) for entry in part["steps"]]
    return joined


def _load_link(store: Store, digest: Digest) -> RunRecord:
    """One stored run record (a whole one, or a link), as it is stored."""
    kind, payload = store.load(digest)
    if kind is not Kind.RUN:
        raise CorruptObjectError(digest, None, f"a run was expected, it is a {kind.value} object")
    try:
        data = codec.decode_tagged(payload)  # as data: from_value checks every field once
    except PinrunError as exc:
        raise CorruptObjectError(digest, None, f"its run payload does not parse ({exc})") \
            from None
    return RunRecord.from_value(data, digest=digest)


def load_env(store: Store, run: RunRecord) -> dict[str, Any]:
    """The environment run ``run`` recorded, checked (a valid hash seed...); {} if none."""
    if run.env is None:
        return {}
    kind, payload = store.load(run.env)
    if kind is not Kind.ENV:
        raise CorruptObjectError(run.env, None, f"run {run.id} names it as its environment, "
                                 f"but it is a {kind.value} object")
    return shapes.parse(run.env, Kind.ENV, payload)


def recorded_hash_seed(store: Store, run: RunRecord) -> str | None:
    """The ``PYTHONHASHSEED`` run ``run`` recorded (checked: Python starts with it), or None.

    Read once per environment and store in a process: the runs of a worker share a
    few environments, and an environment's check reads every installed distribution.
    """
    if run.env is None:
        return None
    key = (store.path, run.env)
    known = _SEEDS.get(key)
    if known is None:
        known = _SEEDS.put(key, (hash_seed_of(load_env(store, run)),))
    return known[0]


# Owner-free on purpose: keyed by the store and the environment's digest (its content);
# the value is a checked string, never an object the data names.
#: The hash seed each environment recorded (see :func:`recorded_hash_seed`).
_SEEDS: Kept[tuple[Path, Digest], tuple[str | None]] = Kept(256)


def hash_seed_of(env: dict[str, Any]) -> str | None:
    """The ``PYTHONHASHSEED`` in a recorded environment (:func:`load_env`), or None."""
    seed = env.get("hash_seed")
    return seed if isinstance(seed, str) else None


