"""What a replay runs: the flow and its code, pinned or on disk, and the project's
modules that the guards watch.

Pinned code is imported from the store for each replay (never from disk), with
each step's code being the attempt whose result the run kept; code on disk is
the flow at the run's recorded entry, or the one given after a move, checked
against the pins only when a step diverged (the comparison opens every pinned
source).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, cast

from pinrun.artifacts.digest import Digest
from pinrun.artifacts.store import Store
from pinrun.engine.records import RunRecord
from pinrun.flows.fingerprint import is_project_local
from pinrun.flows.flow import Flow
from pinrun.flows.loader import project_on_path
from pinrun.flows.pinning import PinnedStep
from pinrun.flows.project import may_install_project, project_context
from pinrun.flows.status import CodeStatus, compare_code, flow_under_policy, pinned_flow_loaded
from pinrun.verifier.attempt_code import attempt_pins, with_attempt_code
from pinrun.verifier.moved import recorded_flow

__all__ = ["CodeSource", "ToReplay", "flow_to_replay", "project_modules"]

CodeSource = Literal["pinned", "workdir"]

#: Per root: how many modules were loaded, in what project context, and the project's.
_MODULES_SEEN: dict[Path, tuple[int, object, list[ModuleType]]] = {}
#: Per root and module name: the module object last asked about, and whether it is the
#: project's (the answer holds for as long as that name holds that object).
_LOCALITY: dict[tuple[Path, object, bool], dict[str, tuple[ModuleType, bool]]] = {}


def project_modules(root: Path) -> list[ModuleType]:
    """The loaded modules of the project (what guards watch), found again only when
    modules were imported or dropped since the last time."""
    count = len(sys.modules)
    # What is the project's also depends on what is named as the project's (the
    # environment, pyproject.toml), which may change while the same modules stay loaded.
    context = project_context(root)
    seen = _MODULES_SEEN.get(root)
    # Pinned code is imported afresh for each replay: the same names, new modules.
    if seen is not None and seen[0] == count and seen[1] == context and \
            all(sys.modules.get(module.__name__) is module for module in seen[2]):
        return list(seen[2])
    if len(_LOCALITY) > 16:  # contexts come and go (sys.path, the configuration)
        _LOCALITY.clear()
    # Asked once per look: with no installed distribution that may be the project's (the
    # usual case), a module's place decides, with no owner looked up for each.
    installed = may_install_project(root)
    known = _LOCALITY.setdefault((root, context, installed), {})
    found = []
    # sys.modules may hold None or other objects (a blocked import, a stand-in).
    for name, module in list(cast("dict[str, object]", sys.modules).items()):
        if not isinstance(module, ModuleType):
            continue
        seen_before = known.get(name)
        if seen_before is None or seen_before[0] is not module:
            # Only new module objects are asked (pinned code is new in every replay;
            # the hundreds of installed modules are not).
            seen_before = known[name] = (module, is_project_local(module, root,
                                                                     installed=installed))
        if seen_before[1]:
            found.append(module)
    _MODULES_SEEN[root] = (count, context, found)
    return found


#: What the replay runs: the flow, how to learn (workdir) how its code differs from
#: the code each step's attempt ran, the step pin each step runs (hex) and whether
#: it is a later attempt's (resumed) code, the modules loaded outside sys.modules, and
#: whether the code has a keeper (:mod:`~pinrun.verifier.kept_code`), which forgets what
#: was found in its modules when it drops them.
ToReplay = tuple[Flow, Callable[[], CodeStatus] | None, dict[str, tuple[str, bool]],
                 list[ModuleType], bool]


@contextmanager
def flow_to_replay(store: Store, run: RunRecord, code: CodeSource, root: Path, flow: Flow | None,
                   ) -> Iterator[ToReplay]:
    """The flow to replay, and what goes with it (:data:`ToReplay`).

    The comparison opens every pinned source: it is made only when a step diverged.
    """
    assert run.flow_pin is not None
    attempts = attempt_pins(store, run)
    with project_on_path(root):
        if code == "pinned" and not attempts and run.entry is not None:
            with _kept_pinned_flow(store, run.flow_pin, run.entry, root) as (chosen, pins):
                yield chosen, None, _steps_ran(pins, {}), [], True
            return
        if code == "pinned":
            with flow_under_policy(store, "artifact", run.flow_pin, entry=run.entry,
                                   project_root=root, flow=None,
                                   what=f"run {run.id}") as (main, pins):
                chosen, loaded = with_attempt_code(store, run, main, root, attempts)
                yield chosen, None, _steps_ran(pins, attempts), loaded, False
            return
        if flow is None:
            flow = recorded_flow(run, root)
        with flow_under_policy(store, "disabled", run.flow_pin, entry=run.entry,
                               project_root=root, flow=flow,
                               what=f"run {run.id}") as (chosen, pins):
            pinned = run.flow_pin
            # A step a resumed attempt ran with other code drifted from that code.
            drift = functools.cache(lambda: compare_code(store, pinned, chosen, root, pins,
                                                         step_pins=attempts))
            yield chosen, drift, _steps_ran(pins, {}), [], False


def _steps_ran(pins: dict[str, PinnedStep], attempts: dict[str, Digest]
               ) -> dict[str, tuple[str, bool]]:
    """Step name -> the step pin it runs (hex), and whether a later attempt's."""
    return {name: (attempts[name].hex, True) if name in attempts
            else (pin.step_digest.hex, False) for name, pin in pins.items()}


@contextmanager
def _kept_pinned_flow(store: Store, flow_pin: Digest, entry: str, root: Path
                      ) -> Iterator[tuple[Flow, dict[str, PinnedStep]]]:
    """The pinned flow, loaded afresh or put back as the last replay of the same pin left it
    (:mod:`pinrun.verifier.kept_code`); kept for the next replay when this one left the
    project's code as it was right after the import."""
    # Imported when first needed: only pinned code is kept (a verify worker's start).
    from pinrun.verifier import kept_code

    key = (flow_pin, root, entry, project_context(root))
    kept = kept_code.take(key)
    left: dict[str, ModuleType] = {}
    start: tuple[Any, ...] | None = None
    clean = False
    try:
        # Put back, the modules answer the import of the entry as they are.
        with pinned_flow_loaded(store, flow_pin, entry, root,
                                reuse=kept.modules if kept is not None else None
                                ) as (chosen, pins, left):
            start = kept.state if kept is not None else kept_code.state_of(
                project_modules(root))
            yield chosen, pins
            # The replay is over (its guards gone): the code as the run left it.
            clean = start is not None and kept_code.state_of(project_modules(root)) == start
    finally:
        if clean and start is not None:
            kept_code.put_back(key, kept_code.KeptCode(left, start))
        else:  # (the modules put back, when the block failed before taking them in)
            kept_code.drop([*left.values(), *(kept.modules.values() if kept else ())])
