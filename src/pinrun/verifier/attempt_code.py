"""The code each step's recorded result came from, for a run resumed after a change.

A run pins its flow (``flow_pin``) when it starts, and every step attempt
names the step pin it ran with (:attr:`~pinrun.engine.records.StepRecord.code`).
A run that failed, was fixed on disk and resumed ran its later attempts with
the new code: their step pins are not the flow pin's. Pinned replay runs, for
each step, the code of its final attempt (the one whose result the run kept).

For such a step, the step pin's own sources (its ``code`` objects), over the
flow pin's sources for the modules it does not name, are imported in their own
:func:`~pinrun.flows.loader.pinned_modules` block; the flow is imported from
them and that step's function taken from it, checked to fingerprint as its
step pin recorded (the check the flow pin gets), and the step is swapped into
the flow to replay, same name, same place in the levels. The block restores
the caller's modules when it ends, while the Step keeps the module it was
defined in alive. One limit follows: an import the step makes lazily inside
its body (``import x`` in the function) finds ``sys.modules`` as the main
replay left it, so it resolves to the flow pin's version of that module.
"""

from __future__ import annotations

import linecache
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.kept import Kept
from pinrun.artifacts.store import Store
from pinrun.engine.records import RunRecord, StepRecord
from pinrun.errors import InputError
from pinrun.flows.entries import import_recorded_entry
from pinrun.flows.flow import Flow
from pinrun.flows.loader import pinned_modules, pinned_sources
from pinrun.flows.status import load_pinned_flow, loaded_as_pinned
from pinrun.flows.step import Step

__all__ = ["attempt_pins", "attempt_source_shown", "final_attempts", "with_attempt_code"]


#: Per store and flow pin: the step pins the flow pin names (read once per process).
_FLOW_STEPS: Kept[tuple[Path, Digest], frozenset[Digest]] = Kept(256)


def final_attempts(run: RunRecord) -> dict[str, StepRecord]:
    """Each recorded step's last attempt: the one whose outcome the run kept."""
    return {record.name: record for record in run.steps}


def attempt_pins(store: Store, run: RunRecord) -> dict[str, Digest]:
    """Step name -> the step pin its final attempt ran, for the steps whose final
    attempt ran other code than the run's flow pin names (a resume after a change)."""
    if run.flow_pin is None:
        return {}
    # The usual case, every attempt ran the flow pin's own steps, needs one object read
    # (per store and process: a digest names one content forever).
    key = (store.path, run.flow_pin)
    started_with = _FLOW_STEPS.get(key)
    if started_with is None:
        started_with = _FLOW_STEPS.put(
            key, frozenset(store.get_object(run.flow_pin, Kind.FLOW)["steps"]))
    if all(record.code is None or record.code in started_with
           for record in final_attempts(run).values()):
        return {}
    _, pinned = load_pinned_flow(store, run.flow_pin)
    return {name: record.code for name, record in final_attempts(run).items()
            if record.code is not None and name in pinned
            and record.code != pinned[name]["digest"]}


def with_attempt_code(store: Store, run: RunRecord, flow: Flow, project_root: Path,
                      pins: dict[str, Digest]) -> tuple[Flow, list[ModuleType]]:
    """``flow`` (loaded from the flow pin) with each step of ``pins`` loaded from its
    own step pin; and the modules those steps were loaded in (for the guards).

    Raises :class:`~pinrun.errors.CodeChangedError` when a step's code does not
    load back as its step pin recorded.
    """
    if not pins:
        return flow, []
    assert run.flow_pin is not None
    assert run.entry is not None
    base = pinned_sources(store, run.flow_pin)
    # Steps that name the same sources share one import of them (per replay).
    groups: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    for name, digest in pins.items():
        value: dict[str, Any] = store.get_object(digest, Kind.STEP)
        groups.setdefault(tuple(sorted(code.hex for code in value["code"])), {})[name] = value
    modules: list[ModuleType] = []
    swapped: dict[str, Step] = {}
    for values in groups.values():
        sources = dict(base)
        for code_digest in next(iter(values.values()))["code"]:
            code = store.get_object(code_digest, Kind.CODE)
            sources[code["module"]] = code
        with pinned_modules(sources, project_root):
            loaded = import_recorded_entry(run.entry, project_root)
            variants = {item.name: item for item in loaded.steps if item.name in values}
            missing = [name for name in values if name not in variants]
            if missing:
                raise InputError(f"the code run {run.id} resumed step {missing[0]!r} with "
                                 f"has no such step in its flow {run.entry}")
            # Checked inside the block, while the pinned text is what linecache holds.
            loaded_as_pinned(loaded.name, list(variants.values()), values, project_root,
                             sources)
            # Loaded in this block (pinned_modules took these names out first).
            modules += [module for module_name in sources
                        if isinstance(module := sys.modules.get(module_name), ModuleType)]
        swapped.update(variants)
    steps = [swapped.get(item.name, item) for item in flow.steps]
    return Flow(flow.name, steps, on_collision=flow.on_collision,
                max_concurrency=flow.max_concurrency), modules


@contextmanager
def attempt_source_shown(store: Store, flow: Flow, step: str | None,
                         ran: dict[str, tuple[str, bool]]) -> Iterator[None]:
    """While the block runs, what tracebacks and the debugger show for ``step``'s file is
    the source of the attempt it replays with (a resumed step ran other code than the flow
    pin's, whose text is what the file's name otherwise shows)."""
    pin, resumed = ran.get(step or "", ("", False))
    item = next((found for found in flow.steps if found.name == step), None)
    code = getattr(getattr(item, "func", None), "__code__", None)
    if not resumed or item is None or code is None:
        yield
        return
    value: dict[str, Any] = store.get_object(Digest.from_hex(pin), Kind.STEP)
    sources = [store.get_object(digest, Kind.CODE) for digest in value["code"]]
    source = next((found["source"] for found in sources
                   if found["module"] == item.func.__module__), None)
    if source is None:
        yield
        return
    filename = code.co_filename
    saved = linecache.cache.get(filename)
    # mtime None: linecache.checkcache leaves it alone instead of re-reading disk.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    try:
        yield
    finally:
        if saved is None:
            linecache.cache.pop(filename, None)
        else:
            linecache.cache[filename] = saved
