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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pinrun.artifacts.batch import WriteBatch
from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.engine.lease import RunLease
from pinrun.engine.records import RunRecord, load_run, run_ref
from pinrun.engine.resume import resume
from pinrun.engine.run import REPLACED_PREFIX, record, replaced_ref, replacing_ref
from pinrun.errors import CorruptObjectError, RunFailedError
from pinrun.flows.entries import import_entry
from pinrun.flows.flow import Flow
from pinrun.flows.loader import project_on_path
from pinrun.flows.pinning import pin_step, project_root_for
from pinrun.flows.registry import put_pins
from pinrun.verifier.moved import check_same_steps, recorded_flow

__all__ = ["REPLACED_PREFIX", "Accepted", "accept", "replaced_ref"]


@dataclass(frozen=True)
class Accepted:
    """An old run and the new one recorded in its place."""

    old: str
    new: RunRecord


def accept(store: Store, run_ids: list[str], *, project_root: Path | None = None,
           entries: Mapping[str, str] | None = None) -> Iterator[Accepted]:
    """Re-record each run's inputs with the code on disk; the new runs replace the old.

    Yields each accepted run as soon as it is recorded, so a failure part way
    leaves the earlier ones accepted and known. A run whose earlier accept
    was interrupted gets that new run finished (or, when the code changed
    since, replaced) rather than a second one; naming the interrupted new
    run itself does the same for the run it replaces.

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
