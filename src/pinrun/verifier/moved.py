"""Where a recorded flow lives now: the recorded entry, or the one the user names.

A run records its flow's entry (``orders.flow:flow``). After a refactor moves
the module, that entry no longer imports, and the code on disk can only be
found where the user says it lives now (``--entry orders.pipeline:flow``, or
``flow=``/``entries=`` in the API). A flow named that way must have the
steps the run recorded, by name: a wrong entry is an error naming the steps
missing and extra, not a replay of some other flow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pinrun.artifacts.store import Store
from pinrun.engine.records import RunRecord, load_run
from pinrun.errors import InputError, StoreError
from pinrun.flows.entries import import_entry, import_recorded_entry
from pinrun.flows.flow import Flow
from pinrun.flows.status import load_pinned_flow

__all__ = ["check_entries_used", "check_same_steps", "flows_by_name", "recorded_flow"]


def recorded_flow(run: RunRecord, project_root: Path) -> Flow:
    """The flow of ``run`` as its recorded entry imports it from disk now.

    When that entry no longer imports (the module moved or was renamed) or no
    longer holds the flow, the error says so and how to name where it lives now.
    """
    if run.entry is None:
        raise InputError(f"run {run.id} does not say where its flow is defined; say where "
                         "it lives now: --entry MODULE:FLOW")
    try:
        return import_recorded_entry(run.entry, project_root)
    except InputError as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError):
            why = f"which no longer imports ({cause})"
        elif "not a pinrun.Flow" in str(exc):
            why = f"which no longer holds the flow ({exc})"
        else:
            raise
        raise InputError(f"the flow of run {run.id} was recorded at {run.entry}, {why}; if it "
                         "moved, say where it lives now: --entry MODULE:FLOW") from exc


def check_same_steps(store: Store, run: RunRecord, flow: Flow, where: str) -> None:
    """Raise :class:`InputError` unless ``flow`` (found at ``where``) has the steps
    ``run`` recorded, by name."""
    if run.flow_pin is None:
        return
    _, pinned = load_pinned_flow(store, run.flow_pin)
    names = [item.name for item in flow.steps]
    missing = [name for name in pinned if name not in names]
    extra = [name for name in names if name not in pinned]
    if missing or extra:
        parts = ([f"lacks step(s) {', '.join(map(repr, missing))}"] if missing else []) + \
                ([f"has step(s) {', '.join(map(repr, extra))} the run did not record"]
                 if extra else [])
        raise InputError(f"{where} is not where the flow of run {run.id} lives now: its flow "
                         f"{flow.name!r} {' and '.join(parts)} (the run recorded "
                         f"{', '.join(map(repr, pinned))}); name the module that holds the "
                         "recorded flow")


def flows_by_name(entries: Iterable[str]) -> dict[str, str]:
    """Flow name -> ``MODULE:FLOW`` for each entry (imported as the user gave it)."""
    found: dict[str, str] = {}
    for entry in entries:
        name = import_entry(entry).name
        if name in found and found[name] != entry:
            raise InputError(f"--entry {found[name]} and --entry {entry} both hold flow "
                             f"{name!r}; name one place per flow")
        found[name] = entry
    return found


def check_entries_used(store: Store, run_ids: Iterable[str],
                       by_flow: Mapping[str, str]) -> None:
    """Raise :class:`InputError` when an entry's flow is the flow of none of the runs."""
    if not by_flow:
        return
    flows: set[str] = set()
    for run_id in run_ids:
        try:
            flows.add(load_run(store, run_id).flow)
        except StoreError:
            continue  # its own result says the store is damaged
    unused = [f"--entry {entry} (flow {name!r})" for name, entry in by_flow.items()
              if name not in flows]
    if unused:
        raise InputError(f"{', '.join(unused)} matches no selected run: the runs are of "
                         f"flow(s) {', '.join(map(repr, sorted(flows))) or 'none'}; check "
                         "the entry, or select runs of that flow")
