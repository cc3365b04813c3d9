"""Replaying a run: ``pinrun.replay(run_id, store=..., code="pinned"|"workdir")``.

The run's steps run again through the engine's own execution of levels, on
the recorded inputs, with a replay log in every context: ``ctx.now()``,
``random``, ``uuid4`` and every effect answer from the recording, and an
effect's function is never called. Each step's outputs are digested exactly
as recording stores them (nothing is written) and compared with the recorded
digest. A step that diverges gets a structured diff and the likely causes;
the replay then goes on from the recorded outputs, so every later step is
judged on its own.

Equal digests prove nothing when the recorded objects behind them are damaged
or gone, so what a step is judged against is read back too: on a match, every
object of the recorded output snapshot is read (each once per replay, in one
transaction at the end of the run or every few hundred objects) and proven to
hold the payload the replay itself hashed to its digest (equal bytes, or equal
once decompressed: a second hash would prove no more), and a damaged or missing
one raises :class:`~pinrun.errors.StoreError` instead of a verdict.

This module never reads the clock or fresh randomness: replay passes no
world to the engine, and the import contract test holds it to that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pinrun.artifacts import codec, trees
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.kept import Kept
from pinrun.artifacts.store import Store
from pinrun.engine.context import ReplayLog, recorded_events
from pinrun.engine.events import Event, type_name
from pinrun.engine.execution import HiddenState, Outcome, StepGuard
from pinrun.engine.logs import SHARED_ANSWERS_HAZARD
from pinrun.engine.records import RunRecord, StepRecord, load_run
from pinrun.engine.value_digests import digest_few_inline
from pinrun.engine.walk import LevelBase, RunState, Settled, walk
from pinrun.errors import ContextDivergenceError, InputError, PinrunError, StoreError
from pinrun.flows.flow import Flow
from pinrun.flows.pinning import project_root_for
from pinrun.flows.status import CodeStatus, pins_code
from pinrun.flows.step import Step
from pinrun.verifier.attempt_code import attempt_source_shown, final_attempts
from pinrun.verifier.causes import environment_drift, error_location
from pinrun.verifier.diff import diff_states
from pinrun.verifier.hidden_judge import HiddenStateJudge
from pinrun.verifier.moved import check_same_steps
from pinrun.verifier.replay_code import CodeSource, flow_to_replay, project_modules
from pinrun.verifier.report import Cause, ReplayReport, StepResult
from pinrun.world import World
from pinrun.world.files import FileSetup, files_read
from pinrun.world.guards import GuardedCall, GuardMode, Guards
from pinrun.world.hidden_state import Change, Watch, carried, forgotten_after
from pinrun.world.refusal import ReplayWatch, refusing_world

__all__ = ["CodeSource", "check_replay_arguments", "replay", "replay_loaded"]


def replay(run_id: str, *, store: Store, code: CodeSource = "pinned",
           project_root: Path | None = None, flow: Flow | None = None,
           guards: GuardMode = "warn", repeat: int = 1,
           debug_step: str | None = None, allow_world: bool = False,
           allow_unsigned: bool = False) -> ReplayReport:
    """Replay run ``run_id`` and compare every step with its recording.

    ``code="pinned"`` runs the sources the run pinned, imported from the
    store (never from disk): for each step, the code of the attempt whose
    result the run kept (a run resumed after a fix ran its later attempts
    with the fixed code). ``code="workdir"`` runs the code on disk now: the
    flow at the run's recorded entry, or ``flow`` when given (where the flow
    lives now, after a move: it must have the steps the run recorded, else
    :class:`~pinrun.errors.InputError`; pinned code needs no ``flow``, and
    refuses one). ``guards`` watches the steps for calls around their
    context (time, randomness, uuids, environment, network, subprocesses):
    ``warn`` notes them, ``strict`` makes them fail the step, ``off`` skips
    the watch. Network connections (localhost included) and subprocesses
    a step starts are refused inside it (a
    :class:`~pinrun.errors.NondeterminismError` naming the call and its
    file and line, and a cause of the divergence) unless ``allow_world``,
    which only notes them; ``guards="off"`` watches nothing, the world
    included. ``repeat`` replays the run that many times in this process
    with the code loaded once, as a long-running worker would run one run
    after another: state a step leaves behind shows as a later divergence.
    ``debug_step`` stops in the debugger (pdb) at the start of that step,
    with its recorded inputs. Returns a :class:`ReplayReport`; its verdict is
    ``error`` when the run could not be replayed at all (its flow no longer
    imports, a step is gone). A damaged or missing object raises
    :class:`~pinrun.errors.StoreError` naming its digest. Pinned code of a
    run pulled from a remote runs only if a key this store trusts signed it
    (:class:`~pinrun.errors.UntrustedRunError` otherwise), unless
    ``allow_unsigned``.
    """
    check_replay_arguments(code, repeat, flow)
    return replay_loaded(load_run(store, run_id), store=store, code=code,
                         project_root=project_root, flow=flow, guards=guards, repeat=repeat,
                         debug_step=debug_step, allow_world=allow_world,
                         allow_unsigned=allow_unsigned)


def replay_loaded(run: RunRecord, *, store: Store, code: CodeSource, project_root: Path | None,
                  flow: Flow | None, guards: GuardMode, repeat: int, debug_step: str | None,
                  allow_world: bool, allow_unsigned: bool) -> ReplayReport:
    """:func:`replay` of a run record already loaded (and its arguments checked)."""
    if code == "pinned":
        # Imported here: the remote package (clients, transfers) is no part of a workdir
        # replay, and a fresh verify worker would import all of it before its first run.
        from pinrun.remote.origin import check_trusted

        # The record loaded here is the one whose code runs: the signature must cover it.
        check_trusted(store, run.id, run.digest, allow_unsigned=allow_unsigned)
    report = ReplayReport(run.id, run.flow, code, "reproduced", repeat=repeat)
    if run.flow_pin is None:
        report.verdict, report.error = "error", "the run pins no flow (an older pinrun)"
        return report
    recorded = [step.name for step in run.steps]
    if debug_step is not None and debug_step not in recorded:
        raise InputError(f"run {run.id} has no recorded step {debug_step!r} to stop in "
                         f"(its steps: {', '.join(dict.fromkeys(recorded))})")
    if flow is not None:
        check_same_steps(store, run, flow, "the flow given")
    if code == "pinned":
        # Then "pinned" replay runs whatever is installed: the report must not claim more.
        report.nothing_pinned = not pins_code(store, run.flow_pin)
    root = project_root if project_root is not None else project_root_for(store.path)
    try:
        # From the first import of the project's code to the last step: the whole replay.
        with (nullcontext(None) if allow_world else refusing_world()) as refused, \
                flow_to_replay(store, run, code, root, flow) as (chosen, drift, ran, loaded,
                                                                 kept):
            modules = [] if guards == "off" else [*project_modules(root), *loaded]
            # Pinned code's modules go after the replay (what was found in them with
            # them), unless their keeper decides.
            with forgotten_after(modules if code == "pinned" and not kept else []), \
                    Guards(modules, guards, allow_world=allow_world) as watching, \
                    attempt_source_shown(store, chosen, debug_step, ran):
                # The files each step reads, named under the project (once per replay).
                files = FileSetup.for_store(store.path, root, strict=guards == "strict",
                                            files=watching.files)
                if refused is not None:  # a pool warmed earlier, running the project's code
                    refused.files = frozenset(watching.files)
                    refused.strict = guards == "strict"
                verified: set[bytes] = set()
                # The project's hidden state, watched across the repetitions.
                hidden = Watch(watching.modules) if guards != "off" else None
                earlier: dict[str, dict[str, int]] = {}
                for repetition in range(1, repeat + 1):
                    _remember_hazards(report.steps, earlier, repetition - 1)
                    report.steps, report.repetition = [], repetition
                    _Replay(store, run, chosen, drift=drift, report=report, guards=watching,
                            debug_step=debug_step, verified=verified, ran=ran,
                            refused=refused, hidden=hidden, repetition=repetition,
                            step_by_step=repeat > 1 or debug_step is not None
                            or (hidden is not None and hidden.seen_changing),
                            files=files).run()
                    if report.first_divergence is not None:
                        break
                _add_earlier_hazards(report.steps, earlier)
    except StoreError:
        raise
    except PinrunError as exc:
        report.verdict, report.error = "error", str(exc)
        return report
    if report.first_divergence is not None:
        report.verdict = "diverged"
        report.causes += environment_drift(store, run)
    return report


def _remember_hazards(steps: list[StepResult], earlier: dict[str, dict[str, int]],
                      repetition: int) -> None:
    """Keep each step's hazards of a repetition that reproduced (the report shows the
    last repetition's steps; a hazard only the first met must not vanish)."""
    for step in steps:
        for hazard in step.hazards:
            earlier.setdefault(step.name, {}).setdefault(hazard, repetition)


def _add_earlier_hazards(steps: list[StepResult], earlier: dict[str, dict[str, int]]) -> None:
    for step in steps:
        for hazard, repetition in earlier.get(step.name, {}).items():
            if hazard not in step.hazards:
                step.hazards.append(f"{hazard} (in repetition {repetition})")


def check_replay_arguments(code: str, repeat: int, flow: Flow | None) -> None:
    """Refuse arguments no replay can take (:class:`~pinrun.errors.InputError`)."""
    if code not in ("pinned", "workdir"):
        raise InputError(f"code={code!r}: replay runs the 'pinned' code or the 'workdir' code")
    if repeat < 1:
        raise InputError(f"repeat={repeat}: replay a run at least once")
    if flow is not None and code == "pinned":
        raise InputError("pinned replay loads the flow from the code the run pinned, where "
                         "it was recorded, so it takes no flow (--entry): drop it, or replay "
                         "the code on disk (--code workdir)")


#: The order a step's causes are listed in (kinds not named here come before exceptions).
_CAUSE_RANK = {"nondeterministic call": 0, "file system": 1, "code drift": 2,
               "module state": 3, "default argument": 3, "cache": 3, "input mutation": 4,
               "answer order": 5, "exception": 9}


def _rank_causes(result: StepResult) -> None:
    """Order a step's causes by :data:`_CAUSE_RANK`."""
    if len(result.causes) > 1:  # most steps have none: no sort, no key function made
        result.causes.sort(key=lambda cause: _CAUSE_RANK.get(cause.kind, 6))


#: Recorded objects matched by digest are read back (and re-hashed) this many at a time.
_CHECK_BATCH = 256
#: Recorded event lists kept decoded per process (see :func:`_recorded_events`).
_EVENTS: Kept[tuple[Path, bytes], tuple[Event, ...]] = Kept(1024)
_SCALARS = (str, int, float, bool, type(None))


def _recorded_events(store: Store, digest: Digest) -> list[Event]:
    """A step's recorded context events (:func:`~pinrun.engine.context.recorded_events`).

    Most steps of a corpus record the same few event lists (most often none at all),
    and a digest names one content forever: a list whose every answer is a plain
    scalar (nothing a step could change in place) is read and checked once per store
    and process. Lists holding effect answers (dicts, lists) are read every time.
    """
    # By the digest's bytes: hashed and compared in C (a Digest's own methods are Python).
    key = (store.path, digest.raw)
    found = _EVENTS.get(key)
    if found is not None:
        return list(found)
    events = recorded_events(store, digest)
    if all(type(event.value) in _SCALARS and event.call is None and event.error_args is None
           for event in events):
        _EVENTS.put(key, tuple(events))
    return events


#: Payloads (``bytes``) up to this size are kept until the recorded objects are read back
#: (compared with them, not hashed again); a larger one, or a view, is re-hashed (never
#: held for a batch, nor anything a step could still change).
_KEEP_PAYLOAD = 64 * 1024


class _DigestSink:
    """Digests objects as the store would, without storing anything; keeps the digests,
    each with its kind and payload (None when large: see :data:`_KEEP_PAYLOAD`)."""

    def __init__(self) -> None:
        #: Every object digested (a snapshot's values, subtrees and its tree), by raw
        #: digest: bytes hash in C, where a Digest key calls its ``__hash__``.
        self.objects: dict[bytes, tuple[Kind, bytes | None]] = {}

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        found = digest if digest is not None else compute_digest(kind, payload)
        self.objects[found.raw] = (kind, payload if type(payload) is bytes
                                   and len(payload) <= _KEEP_PAYLOAD else None)
        return found

    def snapshot(self, outputs: dict[str, Any], payloads: dict[str, bytes],
                 known: dict[bytes, Digest]) -> Digest:
        """Digest a step's outputs as recording stores them (``known``: the replay's
        digests of small payloads, as a recording keeps them)."""
        # A few small values (most steps' outputs): in C, their payloads all kept (each
        # is at most a page's size, far under _KEEP_PAYLOAD).
        digest = digest_few_inline(outputs, payloads, self.objects, known)  # type: ignore[arg-type]
        if digest is not None:
            return digest
        return trees.store_snapshot(self, outputs, payloads=payloads)


class _Replay:
    """One replay: the state as it goes, and the report being filled."""

    def __init__(self, store: Store, run: RunRecord, flow: Flow, *,
                 drift: Callable[[], CodeStatus] | None, report: ReplayReport,
                 guards: Guards, debug_step: str | None = None,
                 verified: set[bytes] | None = None,
                 ran: dict[str, tuple[str, bool]] | None = None,
                 refused: ReplayWatch | None = None, hidden: Watch | None = None,
                 repetition: int = 1, step_by_step: bool = True,
                 files: FileSetup) -> None:
        self.debug_step = debug_step
        #: What the replay refused outside a step's own watch (its threads, say).
        self.refused = refused
        self.guards = guards
        self.watched = guards.mode != "off"
        #: The files each step reads: checked against what it read when recorded.
        self.files = files
        self.file_guard = guards.step_reading(self.files, refused) if self.watched else None
        self.repetition = repetition
        #: Looks at the project's hidden state (None: not watched).
        self.judge = HiddenStateJudge(hidden, repetition, step_by_step=step_by_step) \
            if hidden is not None else None
        #: The hidden state the step being judged changed, or found changed: its causes.
        self.hidden_causes: list[Change] = []
        #: The replay log of each step running now (judged by what it left unused).
        self.logs: dict[str, ReplayLog] = {}
        self.world: World | None = None  # a replay never reads the clock
        self.hidden_state: HiddenState | None = None
        self.store = store
        self.run_record = run
        self.flow = flow
        self.drift = drift
        self.report = report
        self.recorded = final_attempts(run)
        #: The step pin each step runs (hex), and whether it is a resumed attempt's.
        self.ran = ran or {}
        self.calls: list[GuardedCall] = []
        #: Recorded objects read back and checked in this replay (shared by its repetitions).
        self.verified = verified if verified is not None else set()
        #: Recorded objects matched by digest and not read back yet (in order).
        self.unchecked: dict[bytes, tuple[Kind, bytes | None]] = {}
        #: The digests of small payloads the replay made (see ValueDigests.put).
        self.known: dict[bytes, Digest] = {}
        #: Recorded output snapshots already loaded for a diff, by step name (loaded once).
        self.recorded_outputs: dict[str, dict[str, Any]] = {}
        self.state: dict[str, Any] = store.get_snapshot(run.inputs)
        self.encoded = {key: codec.encode(value) for key, value in self.state.items()}

    def run(self) -> None:
        known = {item.name for item in self.flow.steps}
        missing = [name for name in self.recorded if name not in known]
        if missing:
            raise InputError(f"the flow has no step {missing[0]!r} any more, which the run "
                             "recorded; replay it with its pinned code (--code pinned)")
        if self.judge is not None:  # nothing of the project's runs from here to a step
            self.judge.begin()
        walk(self.flow, RunState(self.state, self.encoded), self)
        self.check_recorded()  # what the last levels matched on, before any verdict
        ran = [result for result in self.report.steps if result.status != "not-run"]
        if self.judge is not None and ran:
            self._name_run_changes(self.judge.run_changes([result.name for result in ran]),
                                   ran[-1])

    def _name_run_changes(self, changes: list[Change], last: StepResult) -> None:
        """Hidden state the run changed (seen at its edges): a hazard on its last step (all
        its steps had run by then), and a cause of its first divergence, which may be
        why (the recording found state an earlier run left)."""
        last.hazards += [carried(str(change)) for change in changes]
        first = self.report.first_divergence
        if first is not None and changes:
            first.causes += [Cause(change.kind, f"{change.owner} {change.what}")
                             for change in changes]
            _rank_causes(first)

    # The replay mode of the engine's walk (pinrun.engine.walk.Mode): the engine runs
    # the steps; this judges what they did against the recording.

    @property
    def run_id(self) -> str:
        return self.run_record.id

    @property
    def guard(self) -> StepGuard | None:
        return self.file_guard  # None with guards off: nothing watched

    def select(self, level: Sequence[Step]) -> list[Step]:
        return [item for item in level if item.name in self.recorded]

    def log_for(self, item: Step) -> ReplayLog:
        log = self.logs[item.name] = ReplayLog(
            _recorded_events(self.store, self.recorded[item.name].events))
        # Under the debugger, what is asked at its prompt only peeks at the answers.
        log.debugging = item.name == self.debug_step
        return log

    def begin_level(self, base: LevelBase, *, fresh: bool, siblings: bool) -> None:
        """Nothing to do: hidden state is first looked at as the run starts (:meth:`run`)."""

    def settle(self, outcome: Outcome, base: LevelBase, *, final: bool) -> Settled | None:
        if self.refused is not None:  # refused in the step's threads while it ran
            outcome.guarded += self.refused.drain()
        self.hidden_causes = []
        if self.judge is not None and self.judge.step_by_step:
            hazards, self.hidden_causes = self.judge.after_step(outcome.step.name, self.logs)
            outcome.hazards += hazards
        record = self.recorded[outcome.step.name]
        result = self._judge(outcome, record, self.logs.pop(outcome.step.name))
        self._check_files(outcome, record, result)
        # The likeliest first (verify and CI annotations show only the first): what the
        # step read of the world, then what changed around it; the exception it raised,
        # a symptom, last.
        _rank_causes(result)
        self.report.steps.append(result)
        # Go on from what was recorded, so each later step is judged on its own.
        if result.status == "match" and outcome.outputs is not None:
            return Settled(outcome.outputs, outcome.encoded_outputs, outcome.seen, outcome.wide)
        if record.outputs is not None:
            outputs = self._recorded(outcome.step.name, record.outputs)
            return Settled(outputs, {k: codec.encode(v) for k, v in outputs.items()})
        return None

    def end_level(self, level: Sequence[Step], failure: Outcome | None) -> None:
        # A read every _CHECK_BATCH objects (and at the end of the run, in run()): one
        # transaction for a small run, and never more than a batch in memory at once.
        if len(self.unchecked) >= _CHECK_BATCH:
            self.check_recorded()
        for item in level:
            if item.name in self.recorded:
                continue
            result = StepResult(item.name, 0, "not-run")
            if self.run_record.status == "succeeded":
                # The run finished without this step: the code has a new one.
                self.calls, self.hidden_causes = [], []
                self._diverge(result, "added", "the code has this step, the recording "
                              "does not: the flow changed since it was recorded")
            self.report.steps.append(result)

    def _judge(self, outcome: Outcome, record: StepRecord, log: ReplayLog) -> StepResult:
        calls = [call for call in outcome.guarded if isinstance(call, GuardedCall)]
        # One hazard per call site, with a count: a loop must not flood the report. (Most
        # steps call nothing outside their context: no Counter for them, ~4k instructions.)
        sites: Counter[str] | dict[str, int] = Counter(
            ("refused " if call.refused else "called ") + str(call) for call in calls
        ) if calls else {}
        result = StepResult(outcome.step.name, record.attempt, "match",
                            recorded_outputs=record.outputs.hex if record.outputs else None,
                            hazards=[*outcome.hazards, *log.out_of_order, *log.shared_answers, *(
                                f"{site} outside its context"
                                + (f" ({count} times)" if count > 1 else "")
                                for site, count in sites.items())])
        result.code, result.resumed_code = self.ran.get(outcome.step.name, (None, False))
        calls = list({str(call): call for call in calls}.values())
        self.calls = calls
        error = outcome.error
        if record.status == "failed":  # first: a failure may well end in the context
            self._judge_failure(outcome, record, result, log)
        elif isinstance(error, ContextDivergenceError):
            self._diverge(result, "effects", str(error))
        elif log.divergence is not None:  # raised to the step, which caught it and went on
            self._diverge(result, "effects", f"{log.divergence} (The step caught the error "
                          "and went on.)")
        elif error is None and log.unused:
            unused = log.unused
            more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
            self._diverge(result, "effects", f"the recording has {unused[0].describe()}{more}, "
                          "which the replayed step never asked for")
        elif error is not None:
            where = error_location(error)
            self._diverge(result, "error", f"it raised {type(error).__name__}: {error}",
                          [Cause("exception", f"{type(error).__name__}: {error}", *where)])
        else:
            assert outcome.outputs is not None
            sink = _DigestSink()
            digest = sink.snapshot(outcome.outputs, outcome.encoded_outputs, self.known)
            result.replayed_outputs = digest.hex
            matched = record.outputs is not None and digest == record.outputs
            if record.outputs is not None and not matched:
                # A large nested map recorded key by key (before pages) is the same
                # output when today's values, stored that way, give the same digest.
                earlier = _key_by_key(outcome, record.outputs)
                if earlier is not None:
                    sink, matched = earlier, True
            if matched:
                self._check_recorded(sink.objects)
            else:
                recorded = (self._recorded(outcome.step.name, record.outputs)
                            if record.outputs is not None else {})
                self._diverge(result, "outputs", "its outputs differ from the recording")
                result.changes, result.changes_left_out = diff_states(recorded, outcome.outputs)
        refused = next((call for call in calls if call.refused), None)
        if result.status == "match" and refused is not None and self.guards.mode == "strict":
            # Strict guards refuse for the verdict's sake: a step that catches the refusal
            # (except Exception), or whose thread the refusal ended, and goes on has not
            # reproduced under them.
            self._diverge(result, "error", f"strict guards refused {refused}; the step "
                          "went on past the refusal (it caught it, or it ended a thread "
                          "of the step's)")
        return result

    def _check_files(self, outcome: Outcome, record: StepRecord, result: StepResult) -> None:
        """Name the files the step read when recorded that differ now: causes when it
        diverged, hazards when it reproduced all the same (its outputs did not depend on
        them, this time)."""
        if record.files is None:
            return
        # Imported when first needed: most steps read no files (a verify worker's start).
        from pinrun.world.file_inputs import changes, load_inputs

        found = changes(load_inputs(self.store, record.files), self.files,
                        files_read(outcome.guarded))
        if result.status == "diverged":
            result.causes += [Cause("file system", change.message, change.file, change.line)
                              for change in found]
        else:
            result.hazards += [f"{change.message} (the outputs are the same)"
                               for change in found]

    def _check_recorded(self, objects: dict[bytes, tuple[Kind, bytes | None]]) -> None:
        """Note the recorded objects a match was judged on, to be read back at the end
        (the same digests name the same objects, so these are all of them), with what
        the replay made of them (the same content: it hashed them to these digests)."""
        verified = self.verified
        self.unchecked.update({raw: made for raw, made in objects.items()
                               if raw not in verified})

    def check_recorded(self) -> None:
        """Read back the recorded objects matches were judged on, in one transaction:
        a damaged or missing one raises instead of the verdict standing. Each is
        compared with the payload the replay hashed to its digest (a second hash would
        prove no more), or re-hashed when the replay kept none."""
        todo = self.unchecked
        if todo:
            self.unchecked = {}
            self.store.check_many_raw(todo)
            self.verified.update(todo)

    def _recorded(self, name: str, digest: Digest) -> dict[str, Any]:
        """A step's recorded outputs, loaded (and so checked) once for its diff and merge."""
        if name not in self.recorded_outputs:
            self.recorded_outputs[name] = self.store.get_snapshot(digest)
        return self.recorded_outputs[name]

    def _judge_failure(self, outcome: Outcome, record: StepRecord, result: StepResult,
                       log: ReplayLog) -> None:
        """A recorded failure reproduces when the same error type and message come back,
        after asking the context for what the recording did (no more, no less)."""
        assert record.error is not None
        error = outcome.error
        if error is None:
            self._diverge(result, "failure-not-reproduced",
                          f"the recording failed with {record.error.type}: "
                          f"{record.error.message}, the replay succeeded")
            return
        name = type_name(error)
        if (name, str(error)) != (record.error.type, record.error.message):
            self._diverge(result, "failed-differently",
                          f"the recording failed with {record.error.type}: "
                          f"{record.error.message}, the replay with {name}: {error}",
                          [Cause("exception", f"{name}: {error}", *error_location(error))])
        elif log.divergence is not None and log.divergence is not error:
            self._diverge(result, "effects", f"{log.divergence} (The step caught the error "
                          "and went on to fail as recorded.)")
        elif log.unused:
            self._diverge(result, "effects", f"the recording has {log.unused[0].describe()} "
                          "before it failed, which the replayed step never asked for")

    def _diverge(self, result: StepResult, kind: Any, message: str,
                 causes: list[Cause] | None = None) -> None:
        result.status, result.divergence, result.message = "diverged", kind, message
        result.causes += [Cause("nondeterministic call", f"{call.call} ({call.kind}) outside "
                                "the context", call.file, call.line) for call in self.calls]
        # A refused call raised the step's exception: named once, as the call it was.
        refused = {(call.file, call.line) for call in self.calls if call.refused}
        result.causes += [cause for cause in causes or [] if not (
            cause.kind == "exception" and (cause.file, cause.line) in refused)]
        result.causes += [Cause("input mutation", hazard) for hazard in result.hazards
                          if hazard.startswith("mutated")]
        result.causes += [Cause(change.kind, f"{change.owner} {change.what}")
                          for change in self.hidden_causes]
        result.causes += [Cause("answer order", hazard.removeprefix(SHARED_ANSWERS_HAZARD)
                                .strip()) for hazard in result.hazards
                          if hazard.startswith(SHARED_ANSWERS_HAZARD)]
        if self.drift is not None:
            for step in self.drift().steps:
                if step.name == result.name and (step.changed or step.state == "same-version"):
                    result.causes.append(Cause(
                        "code drift", f"the code of step {step.name!r} on disk differs from "
                        f"the pinned code ({step.state})", detail=step.diff))


def _key_by_key(outcome: Outcome, recorded: Digest) -> _DigestSink | None:
    """The replayed outputs digested in an earlier layout (one object per top-level
    key; a large map key by key too), when one gives the recorded digest (None
    otherwise, or when today's layout is the same as theirs)."""
    assert outcome.outputs is not None
    if not trees.may_differ_from_earlier(outcome.encoded_outputs):
        return None
    for layout in trees.EARLIER_LAYOUTS:
        sink = _DigestSink()
        if layout(sink, outcome.outputs, payloads=outcome.encoded_outputs) == recorded:
            return sink
    return None
