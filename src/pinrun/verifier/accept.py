"""Accepting an intended change: re-record runs with the code on disk as the new baseline.

Old runs are never changed. Each accepted run is recorded again from its
pinned inputs with the workdir code, as a new run that names the one it
replaces; the ref ``replaced/<old id>`` points at the new run, and
``pinrun verify`` then checks the new baseline instead of the old run. The
new recording reuses the old run's effects, clock and randomness wherever a
step asks for the same ones, so accepting does not call the outside world
again for answers it already has.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pinrun.artifacts.store import Store
from pinrun.engine.records import RunFailedError, RunRecord, load_run
from pinrun.engine.run import record
from pinrun.errors import InputError
from pinrun.flows.loader import import_entry, project_on_path
from pinrun.flows.pinning import project_root_for

__all__ = ["REPLACED_PREFIX", "Accepted", "accept", "replaced_ref"]

#: ``replaced/<old run id>`` points at the run that replaced it.
REPLACED_PREFIX = "replaced/"


def replaced_ref(run_id: str) -> str:
    """The ref that names the run which replaced run ``run_id``."""
    return f"{REPLACED_PREFIX}{run_id}"


@dataclass(frozen=True)
class Accepted:
    """An old run and the new one recorded in its place."""

    old: str
    new: RunRecord


def accept(store: Store, run_ids: list[str], *,
           project_root: Path | None = None) -> Iterator[Accepted]:
    """Re-record each run's inputs with the code on disk; the new runs replace the old.

    Yields each accepted run as soon as it is recorded, so a failure part way
    leaves the earlier ones accepted and known.
    """
    root = project_root if project_root is not None else project_root_for(store.path)
    with project_on_path(root):
        yield from _accept(store, run_ids, root)


def _accept(store: Store, run_ids: list[str], root: Path) -> Iterator[Accepted]:
    for run_id in run_ids:
        old = load_run(store, run_id)
        if old.entry is None:
            raise InputError(f"run {old.id} does not say where its flow is defined, so it "
                             "cannot be recorded again")
        flow = import_entry(old.entry)
        inputs = store.get_snapshot(old.inputs)
        try:
            new = record(flow, inputs, store=store, project_root=root, entry=old.entry,
                         replaces=old)
        except RunFailedError as failure:
            new = failure.run  # a failure can be the intended baseline too
        assert new.digest is not None
        store.set_ref(replaced_ref(old.id), new.digest)
        yield Accepted(old.id, new)
