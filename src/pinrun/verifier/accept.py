"""Accepting an intended change: re-record runs with the code on disk as the new baseline.

Old runs are never changed. Each accepted run is recorded again from its
pinned inputs with the workdir code, as a new run that names the one it
replaces; the ref ``replaced/<old id>`` points at the new run, and
``pinrun verify`` then checks the new baseline instead of the old run. The
new recording reuses the old run's effects, clock and randomness wherever a
step asks for the same ones, so accepting does not call the outside world
again for answers it already has.

Accepting is atomic and can be retried. The new run's end and its
``replaced/`` link are one commit (the engine's, see
:mod:`pinrun.engine.run`), and while it is unfinished ``replacing/<old id>``
names it. A retried accept after a kill therefore adopts that interrupted
baseline: it resumes it when the code and environment on disk are the ones
it pinned, and otherwise drops it (it was never a baseline) and records
afresh. Either way the old run ends with exactly one baseline and no
unlinked leftover.

Accepting is idempotent. A run already replaced is "already accepted": it
is not recorded again (nothing new is written), and its baseline is named.
:func:`plan_accept` says what accepting would do to each run before anything
is written (``pinrun accept --dry-run`` prints it); with ``check`` it first
replays the runs with the code on disk, so that only those that do not
reproduce are recorded again (``pinrun accept --flow F``). The tags of an
accepted run are put on its new baseline too, so ``verify --tag`` goes on
checking that many runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pinrun.artifacts.batch import WriteBatch
from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.artifacts.tags import add_tags, tags_of
from pinrun.engine.lease import RunLease
from pinrun.engine.records import RunRecord, load_run, load_run_object, run_ref
from pinrun.engine.resume import resume
from pinrun.engine.run import REPLACED_PREFIX, record, replaced_ref, replacing_ref
from pinrun.errors import CorruptObjectError, RunFailedError
from pinrun.flows.entries import import_entry
from pinrun.flows.flow import Flow
from pinrun.flows.loader import project_on_path
from pinrun.flows.pinning import pin_step, project_root_for
from pinrun.flows.registry import put_pins
from pinrun.verifier.moved import check_same_steps, recorded_flow
from pinrun.verifier.worker import RunResult

__all__ = ["REPLACED_PREFIX", "AcceptPlan", "Accepted", "PlanAction", "accept", "plan_accept",
           "replaced_ref"]

#: What accepting does with a run: ``record`` it again (the new baseline);
#: nothing, as it was ``accepted`` already (replaced) or ``reproduces`` with the
#: code on disk; or nothing, as its record or what it pins is ``unreadable``.
PlanAction = Literal["record", "accepted", "reproduces", "unreadable"]


@dataclass(frozen=True)
class Accepted:
    """An old run and the new one recorded in its place."""

    old: str
    new: RunRecord
    #: True when ``old`` had been accepted before: ``new`` is that baseline, nothing
    #: was recorded now.
    already: bool = False


@dataclass(frozen=True)
class AcceptPlan:
    """What accepting does with one run, and why."""

    run: str
    action: PlanAction
    #: Why, in words: how the replay diverged, or why the run is recorded anyway.
    reason: str = ""
    #: For an ``accepted`` run, the run that replaced it.
    baseline: str | None = None


def plan_accept(store: Store, run_ids: list[str], *, check: bool, jobs: int = 1,
                project_root: Path | None = None,
                entries: Mapping[str, str] | None = None) -> list[AcceptPlan]:
    """What :func:`accept` would do with each run; nothing is written.

    A run already replaced is ``accepted`` (it names its baseline); an
    unfinished baseline stands for the run it replaces. With ``check`` the
    other runs are first replayed with the code on disk (in ``jobs`` worker
    processes, as ``pinrun verify`` does): those that reproduce need no new
    baseline, the others are to ``record``. Without it they are all to record.
    """
    from pinrun.verifier.verify import verify_runs  # verify imports this module's neighbours

    plans: dict[str, AcceptPlan] = {}
    candidates: list[str] = []
    seen: dict[str, int] = {}
    for run_id in run_ids:
        old = load_run(store, run_id)
        if old.replaces is not None and _pending(store, old.replaces) == old.id:
            old = load_run(store, old.replaces)
        if old.id in seen:
            continue
        seen[old.id] = len(seen)
        baseline = store.get_ref(replaced_ref(old.id))
        if baseline is not None:
            value = store.get_object(baseline, Kind.RUN)
            new_id = value.get("id") if type(value) is dict else None
            plans[old.id] = AcceptPlan(old.id, "accepted", "accepted already",
                                       new_id if type(new_id) is str else None)
        else:
            candidates.append(old.id)
    if not check:
        plans.update((run_id, AcceptPlan(run_id, "record", "named")) for run_id in candidates)
    elif candidates:
        for result in verify_runs(store, candidates, code="workdir", guards="warn", jobs=jobs,
                                  project_root=project_root, entries=entries):
            if result.store_error:
                plans[result.run_id] = AcceptPlan(result.run_id, "unreadable", result.error)
            elif result.verdict == "reproduced":
                plans[result.run_id] = AcceptPlan(result.run_id, "reproduces",
                                                  "reproduces with the code on disk")
            else:
                plans[result.run_id] = AcceptPlan(result.run_id, "record", _why(result))
    return sorted(plans.values(), key=lambda plan: seen[plan.run])


def _why(result: RunResult) -> str:
    """How a replay failed to reproduce, in one line."""
    if result.report is None:
        return f"could not replay: {result.error}"
    value = result.report.as_value()
    step = next((s for s in value.get("steps", []) if s.get("status") == "diverged"), None)
    if step is not None:
        return f"diverged at step {step['name']}: {step['message']}"
    return f"could not replay: {value.get('error') or result.verdict}"


def accept(store: Store, run_ids: list[str], *, project_root: Path | None = None,
           entries: Mapping[str, str] | None = None) -> Iterator[Accepted]:
    """Re-record each run's inputs with the code on disk; the new runs replace the old.

    Yields each accepted run as soon as it is recorded, so a failure part way
    leaves the earlier ones accepted and known. A run whose earlier accept
    was interrupted gets that new run finished (or, when the code changed
    since, replaced) rather than a second one; naming the interrupted new
    run itself does the same for the run it replaces. A run accepted before
    is not recorded again: it comes back with ``already`` set and its baseline.

    ``entries`` maps a flow name to the ``MODULE:FLOW`` where that flow lives
    now (it moved since its runs were recorded): the runs of that flow are
    recorded again from the flow found there (imported as given), which must
    have the steps each run recorded (else :class:`InputError`), and the new
    runs record that entry.
    """
    root = project_root if project_root is not None else project_root_for(store.path)
    with project_on_path(root):
        yield from _accept(store, run_ids, root, entries or {})


def _accept(store: Store, run_ids: list[str], root: Path,
            entries: Mapping[str, str]) -> Iterator[Accepted]:
    # Resolved before anything is recorded: an unfinished baseline stands for the run
    # it replaces (once finished, it would look like a baseline to accept anew).
    targets: dict[str, RunRecord] = {}
    for run_id in run_ids:
        old = load_run(store, run_id)
        if old.replaces is not None and _pending(store, old.replaces) == old.id:
            old = load_run(store, old.replaces)
        targets.setdefault(old.id, old)
    for old in targets.values():
        baseline = store.get_ref(replaced_ref(old.id))
        if baseline is not None:  # accepted before: accepting again adds nothing
            yield Accepted(old.id, load_run_object(store, baseline), already=True)
            continue
        entry = entries.get(old.flow)
        if entry is not None:  # the user's own entry: imported as given
            flow = import_entry(entry)
            check_same_steps(store, old, flow, f"--entry {entry}")
        else:
            flow = recorded_flow(old, root)
            entry = old.entry
        new = _adopted(store, old, flow, root, entry)
        if new is None:
            inputs = store.get_snapshot(old.inputs)
            try:
                new = record(flow, inputs, store=store, project_root=root, entry=entry,
                             replaces=old)
            except RunFailedError as failure:
                new = failure.run  # a failure can be the intended baseline too
        # The new baseline carries the old run's labels, so `verify --tag` keeps its runs.
        add_tags(store, [new.id], tags_of(store, old.id))
        yield Accepted(old.id, new)


def _pending(store: Store, old_id: str) -> str | None:
    """The id of the unfinished run replacing ``old_id``, if there is one."""
    digest = store.get_ref(replacing_ref(old_id))
    if digest is None:
        return None
    value = store.get_object(digest, Kind.RUN)
    run_id = value.get("id") if type(value) is dict else None
    if type(run_id) is not str:
        raise CorruptObjectError(digest, None, f"ref {replacing_ref(old_id)} does not name "
                                 "a run record")
    return run_id


def _adopted(store: Store, old: RunRecord, flow: Flow, root: Path,
             entry: str | None) -> RunRecord | None:
    """Finish an interrupted earlier accept of ``old``; None when there is none (left).

    The unfinished run is resumed when the code and environment now pin to
    exactly what it pinned; otherwise it is dropped, under its lease (so
    never while another process writes it), and the caller records afresh.
    """
    pending_id = _pending(store, old.id)
    if pending_id is None:
        return None
    pending = load_run(store, pending_id)
    if pending.status != "running":  # finished, yet unlinked: link it (nothing to redo)
        assert pending.digest is not None
        with store.batch() as batch:
            batch.set_ref(replaced_ref(old.id), pending.digest)
            batch.delete_ref(replacing_ref(old.id))
        return pending
    if _pins_now(store, flow, root, entry) == (pending.flow_pin, pending.env):
        try:
            return resume(pending.id, store=store, code_policy="disabled", flow=flow,
                          project_root=root)
        except RunFailedError as failure:
            return failure.run
    with RunLease(store.path, pending.id):
        current = load_run(store, pending.id)
        with store.batch() as batch:
            batch.delete_ref(run_ref(pending.id), expected=current.digest)
            batch.delete_ref(replacing_ref(old.id), expected=store.get_ref(
                replacing_ref(old.id)))
    return None


def _pins_now(store: Store, flow: Flow, root: Path, entry: str | None) -> tuple[object, object]:
    """The flow and environment digests a recording of ``flow`` would pin now."""
    pins = {item.name: pin_step(item, root) for item in flow.steps}
    stored = put_pins(WriteBatch(store), flow, pins, entry, root)  # never committed
    return stored.flow, stored.env
