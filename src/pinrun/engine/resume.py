"""Continuing an interrupted or failed run: ``pinrun.resume(run_id, store=...)``.

The run's record says which steps succeeded; they are not run again. The
state is the one committed after the last of them, and every other step runs
as in :func:`~pinrun.engine.run.record`, appending to the same record (a
failed step's retry gets the next attempt number). Which code runs is the
code version policy's call: the code on disk (checked against the pinned code
and warned about, refused, or not checked), or with ``"artifact"`` the exact
sources the run pinned, loaded from the store.
"""

from __future__ import annotations

from pathlib import Path

from pinrun.artifacts.store import Store
from pinrun.artifacts.trees import encode_entry, snapshot_entries
from pinrun.engine.execution import hidden_state_of
from pinrun.engine.lease import RunLease
from pinrun.engine.rebuilt_state import state_values
from pinrun.engine.records import RunRecord, load_run, load_timing
from pinrun.engine.run import Durability, Recorder, check_durability, reuse_log_for
from pinrun.engine.walk import LevelBase
from pinrun.errors import InputError, UnknownRefError
from pinrun.flows.flow import Flow
from pinrun.flows.loader import project_on_path
from pinrun.flows.pinning import PinnedStep, project_root_for
from pinrun.flows.registry import put_pins
from pinrun.flows.status import CodePolicy, check_policy, flow_under_policy, load_pinned_flow
from pinrun.remote.origin import check_trusted
from pinrun.world import SystemWorld, World

__all__ = ["resume"]


def resume(run_id: str, *, store: Store, code_policy: CodePolicy = "warn",
           flow: Flow | None = None, durability: Durability = "step",
           world: World | None = None, project_root: Path | None = None,
           allow_unsigned: bool = False) -> RunRecord:
    """Continue run ``run_id`` (interrupted or failed) from its last committed step.

    ``code_policy``: ``"warn"`` (default) runs the code on disk and warns
    (:class:`~pinrun.flows.status.CodeChangedWarning`) when it differs from
    the pinned code; ``"strict"`` refuses with
    :class:`~pinrun.flows.status.CodeChangedError`; ``"disabled"`` does not
    check; ``"artifact"`` runs the pinned sources from the store. ``flow``
    is the flow to run instead of importing the one the record names (not
    used with ``"artifact"``; the pinned code of a run pulled from a remote
    runs only if a trusted key signed it, unless ``allow_unsigned``). Returns
    the final record; raises
    :class:`~pinrun.engine.records.RunFailedError` when a step fails again.
    """
    check_policy(code_policy)
    check_durability(durability)
    run = load_run(store, run_id)
    if code_policy == "artifact":  # refused before the lease, and checked again inside it
        check_trusted(store, run.id, run.digest, allow_unsigned=allow_unsigned)
    # The lease first, then the record as it is now: two resumes never both run.
    with RunLease(store.path, run.id):
        run = load_run(store, run.id)
        if code_policy == "artifact":
            check_trusted(store, run.id, run.digest, allow_unsigned=allow_unsigned)
        if run.status == "succeeded":
            raise InputError(f"run {run.id} already succeeded; there is nothing to resume")
        if run.flow_pin is None:
            raise InputError(f"run {run.id} pins no flow (recorded by an older pinrun); "
                             "record it again")
        root = project_root if project_root is not None else project_root_for(store.path)
        _, pinned_steps = load_pinned_flow(store, run.flow_pin)
        with project_on_path(root), flow_under_policy(
                store, code_policy, run.flow_pin, entry=run.entry, project_root=root,
                flow=flow, what=f"the code run {run.id} pinned") as (chosen, pins):
            if [item.name for item in chosen.steps] != list(pinned_steps):
                raise InputError(
                    f"flow {chosen.name!r} now has steps {[s.name for s in chosen.steps]}, "
                    f"but run {run.id} was recorded with {list(pinned_steps)}; a run resumes "
                    "only with the same steps (--code-policy artifact runs the pinned flow)")
            return _continue(run, chosen, pins, store, durability=durability,
                             world=world if world is not None else SystemWorld(),
                             code_policy=code_policy, project_root=root)


def _continue(run: RunRecord, flow: Flow, pins: dict[str, PinnedStep], store: Store, *,
              durability: Durability, world: World, code_policy: str,
              project_root: Path) -> RunRecord:
    timing = load_timing(store, run)
    # (A run whose newest commit left its state out comes with it rebuilt.)
    state = state_values(store, run.rebuilt_state) if run.rebuilt_state is not None else \
        store.get_snapshot(run.state)
    encoded = {key: encode_entry(value, root=f"state[{key!r}]") for key, value in state.items()}
    recorder = Recorder(flow, store, world, durability, state=state, encoded=encoded,
                        timing={**timing, "steps": list(timing.get("steps", []))},
                        project_root=project_root)
    batch = recorder.writer()
    stored = put_pins(batch, flow, pins, run.entry, project_root)
    recorder.step_pins = stored.steps
    recorder.hidden_state = hidden_state_of(pins)
    # The record keeps the flow and environment it started with; each resume says
    # which it continued with (the steps it runs name their own code).
    recorder.timing.setdefault("resumed", []).append({
        "at": world.now().isoformat(), "flow": stored.flow.hex, "env": stored.env.hex,
        "code_policy": code_policy})
    batch.put_snapshot(state, payloads=encoded, entries_out=recorder.entries)
    recorder.run = run
    recorder.digest = run.digest
    earlier = _replaced_run(store, run)
    if earlier is not None:
        # A new baseline (pinrun accept) goes on reusing the answers of the run it replaces.
        recorder.log_for_step = reuse_log_for(store, earlier, world)
    for item in run.steps:
        recorder.attempts[item.name] = max(recorder.attempts.get(item.name, 0), item.attempt)
    completed = run.completed()
    return recorder.execute(skip=completed, lease_held=True,
                            resumed_level=_half_done_level(store, run, flow, completed))


def _replaced_run(store: Store, run: RunRecord) -> RunRecord | None:
    """The run ``run`` re-records as a new baseline, when it is one and that run is here."""
    if run.replaces is None:
        return None
    try:
        return load_run(store, run.replaces)
    except UnknownRefError:  # carried without it (an export of the new run alone)
        return None


def _half_done_level(store: Store, run: RunRecord, flow: Flow,
                     completed: frozenset[str]) -> LevelBase | None:
    """The base of the level the run stopped in, when some of its steps had finished."""
    if run.level_start is None:
        return None
    for level in flow.levels:
        done = [item.name for item in level if item.name in completed]
        if done and len(done) < len(level):
            state = store.get_snapshot(run.level_start)
            written: set[str] = set()
            for record in run.steps:
                if record.name in done and record.outputs is not None:
                    written |= set(snapshot_entries(store, record.outputs))
            return LevelBase(
                state, {key: encode_entry(value) for key, value in state.items()},
                snapshot_entries(store, run.level_start), written)
    return None
