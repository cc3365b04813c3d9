"""Running a flow and recording it: ``pinrun.record(flow, inputs, store=...)``.

One step at a time, level by level in declaration order, the engine gives a
step fresh copies of the keys it reads (so mutating them cannot leak into the
state), runs it with its context, and commits in one transaction what it read,
what it returned, the context events it consumed, the new state and the
updated run record. A step that raises leaves the state as it was; its failure
is committed before :class:`~pinrun.engine.records.RunFailedError` is raised
from the step's own exception.

Replay (the next part) runs this same engine with a replay log instead of a
recording one.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import Store, WriteBatch
from pinrun.engine.context import Context, RecordingLog, activate
from pinrun.engine.records import (
    RunFailedError,
    RunRecord,
    RunStatus,
    StepError,
    StepRecord,
    run_ref,
)
from pinrun.errors import PinrunError
from pinrun.flows.flow import Flow
from pinrun.flows.pinning import PinnedStep, environment, flow_value, pin_step, project_root_for
from pinrun.flows.step import Step
from pinrun.world import SystemWorld, World

__all__ = ["StepOutputError", "record"]

_ID_ENTROPY = 3


class StepOutputError(PinrunError):
    """A step returned something that is not a mapping of state keys, or broke a policy."""


def record(flow: Flow, inputs: Mapping[str, Any], *, store: Store,
           world: World | None = None, project_root: Path | None = None) -> RunRecord:
    """Run ``flow`` on ``inputs`` and record it in ``store``; returns the run record.

    Before anything runs, every step's code is pinned (fingerprint and the
    sources of the project modules under ``project_root``, by default the
    folder holding the store's ``.pinrun``) with the flow and the environment.
    Raises :class:`~pinrun.flows.MissingInputError` or
    :class:`~pinrun.flows.FingerprintError` before anything is written, and
    :class:`RunFailedError` (from the step's exception) when a step fails,
    after the failure is recorded.
    """
    root = project_root if project_root is not None else project_root_for(store.path)
    recorder = _Recorder(flow, inputs, store, world if world is not None else SystemWorld(),
                         root)
    last = flow.steps[-1]
    for level in flow.levels:
        written_in_level: set[str] = set()
        for item in level:
            recorder.run_step(item, written_in_level, is_last=item is last)
    return recorder.run


def _fresh(value: Any, path: str) -> Any:
    """An independent copy of a value, through its canonical encoding (checks it, too)."""
    return codec.decode(codec.encode(value, root=path))


class _Recorder:
    """One run being recorded: its state, its record, and the commit after each step."""

    def __init__(self, flow: Flow, inputs: Mapping[str, Any], store: Store,
                 world: World, project_root: Path) -> None:
        flow.check_inputs(inputs.keys())
        pins = {item.name: pin_step(item, project_root) for item in flow.steps}
        self.flow = flow
        self.store = store
        self.world = world
        self.state = {key: _fresh(value, f"inputs[{key!r}]") for key, value in inputs.items()}
        started = world.now()
        # Readable and time-ordered to the millisecond, so `pinrun runs` lists newest first.
        stamp = f"{started.strftime('%Y%m%dT%H%M%S')}{started.microsecond // 1000:03d}"
        run_id = f"{stamp}-{world.entropy(_ID_ENTROPY).hex()}"
        self.timing: dict[str, Any] = {"started": started, "steps": {}}
        with store.batch() as batch:
            self.step_pins = _put_pins(batch, flow, pins)
            flow_pin = batch.put(Kind.FLOW, codec.encode(
                flow_value(flow, [self.step_pins[item.name] for item in flow.steps])))
            sources = [code for pinned in pins.values() for code in pinned.sources.values()]
            env = batch.put(Kind.ENV, codec.encode(environment(sources)))
            inputs_digest = batch.put_snapshot(self.state, root="inputs")
            run = RunRecord(id=run_id, flow=flow.name, status="running", inputs=inputs_digest,
                            state=inputs_digest, timing=batch.put_value(self.timing),
                            flow_pin=flow_pin, env=env)
            self.digest = batch.put(Kind.RUN, run.encode())
            batch.set_ref(run_ref(run_id), self.digest, expected=None)
        self.run = replace(run, digest=self.digest)

    def run_step(self, item: Step, written_in_level: set[str], *, is_last: bool) -> None:
        """Run one step and commit it (or its failure, then raise RunFailedError)."""
        reads = {key: self.state[key] for key in item.reads if key in self.state}
        arguments = {key: _fresh(value, f"state[{key!r}]") for key, value in reads.items()}
        log = RecordingLog(self.world)
        context = Context(self.run.id, item.name, log)
        if item.wants_context:
            arguments["ctx"] = context
        if item.wants_state:
            arguments["state"] = MappingProxyType(
                {key: _fresh(value, f"state[{key!r}]") for key, value in self.state.items()})
        outcome = _Outcome(item, reads, log, self.world.now())
        try:
            with activate(context):
                result = item.func(**arguments)
                if inspect.isawaitable(result):
                    result = asyncio.run(_await(result))
            outputs = self._check_outputs(item, result, written_in_level, outcome.hazards)
            codec.encode(outputs, root=f"the outputs of step {item.name!r}")
        except Exception as exc:  # the step's own failure: recorded, then raised
            outcome.error = exc
            self._commit(outcome, "failed")
            raise RunFailedError(self.run) from exc
        self.state.update(outputs)
        written_in_level.update(outputs)
        outcome.outputs = outputs
        self._commit(outcome, "succeeded" if is_last else "running")

    def _check_outputs(self, item: Step, result: Any, written_in_level: set[str],
                       hazards: list[str]) -> dict[str, Any]:
        if result is None:
            return {}
        if not isinstance(result, Mapping) or not all(isinstance(k, str) for k in result):
            raise StepOutputError(f"step {item.name!r} returned a {type(result).__qualname__};"
                                  " a step returns a dict of the state keys it writes (or None)")
        outputs = dict(result)
        for key in outputs:
            if key in written_in_level:
                raise StepOutputError(
                    f"step {item.name!r} writes {key!r}, which another step of the same level "
                    "also writes; the result would depend on which ran last. Give one of "
                    "them `after=` the other.")
            if key in self.state:
                if self.flow.on_collision == "error":
                    raise StepOutputError(f"step {item.name!r} overwrites {key!r}, and flow "
                                          f"{self.flow.name!r} has on_collision='error'")
                if self.flow.on_collision == "warn":
                    hazards.append(f"overwrote key {key!r}")
        return outputs

    def _commit(self, outcome: _Outcome, status: RunStatus) -> None:
        item = outcome.step
        self.timing["steps"][item.name] = {"started": outcome.began,
                                           "finished": self.world.now()}
        with self.store.batch() as batch:
            step_record = StepRecord(
                name=item.name, status="failed" if outcome.error is not None else "succeeded",
                inputs=batch.put_snapshot(outcome.reads,
                                          root=f"the inputs of step {item.name!r}"),
                outputs=(batch.put_snapshot(outcome.outputs,
                                            root=f"the outputs of step {item.name!r}")
                         if outcome.outputs is not None else None),
                events=batch.put_value([e.as_value() for e in outcome.log.events],
                                       root="context events"),
                error=_describe_error(outcome.error) if outcome.error is not None else None,
                hazards=tuple(outcome.hazards), code=self.step_pins[item.name],
            )
            state_digest = batch.put_snapshot(self.state, root="state")
            updated = replace(self.run.with_step(step_record, state_digest, status),
                              timing=batch.put_value(self.timing))
            digest = batch.put(Kind.RUN, updated.encode())
            batch.set_ref(run_ref(self.run.id), digest, expected=self.digest)
        self.run, self.digest = replace(updated, digest=digest), digest


def _put_pins(batch: WriteBatch, flow: Flow, pins: dict[str, PinnedStep]) -> dict[str, Digest]:
    """Store each step's code objects and step object; returns step name -> digest."""
    digests: dict[str, Digest] = {}
    for item in flow.steps:
        pinned = pins[item.name]
        code = [batch.put(Kind.CODE, codec.encode(source)) for source in pinned.sources.values()]
        digests[item.name] = batch.put(Kind.STEP, codec.encode({**pinned.value, "code": code}))
    return digests


@dataclass
class _Outcome:
    """What one step did, gathered for its commit."""

    step: Step
    reads: Mapping[str, Any]
    log: RecordingLog
    began: Any
    outputs: Mapping[str, Any] | None = None
    error: BaseException | None = None
    hazards: list[str] = field(default_factory=list)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _describe_error(error: BaseException) -> StepError:
    cls = type(error)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    return StepError(type=name, message=str(error),
                     traceback="".join(traceback.format_exception(error)))
