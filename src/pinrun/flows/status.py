"""Does the code on disk still match the pinned code? Per step, and what to do about it.

For each step the fingerprint (or the ``version=``) decides: a different one
means the step's behaviour may have changed. The same identity with a
different source text means only comments, formatting, docstrings or code
the step does not use changed. The comparison also notices steps added or
removed and a changed flow shape (levels, policies).

A code version policy says what to do when the code changed: ``disabled``
(do not check), ``warn`` (the default: say so, run the code on disk),
``strict`` (refuse to run) or ``artifact`` (run the pinned code instead).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.kept import Kept
from pinrun.artifacts.store import Store
from pinrun.data_classes import data_class
from pinrun.errors import CodeChangedError, InputError, PinrunWarning
from pinrun.flows.entries import import_entry, import_recorded_entry
from pinrun.flows.flow import Flow
from pinrun.flows.loader import pinned_modules, pinned_sources
from pinrun.flows.normalize import normalized_source_tree
from pinrun.flows.pinning import PinnedStep, pin_steps
from pinrun.flows.step import Step

__all__ = [
    "CODE_POLICIES",
    "CodeChangedError",
    "CodeChangedWarning",
    "CodePolicy",
    "CodeStatus",
    "StepCodeStatus",
    "apply_code_policy",
    "compare_code",
    "flow_under_policy",
    "load_pinned_flow",
    "loaded_as_pinned",
    "pinned_flow_loaded",
    "pins_code",
    "source_diff",
]

CodePolicy = Literal["disabled", "warn", "strict", "artifact"]
CODE_POLICIES: tuple[str, ...] = ("disabled", "warn", "strict", "artifact")
StepState = Literal["same", "formatting", "same-version", "changed", "added", "removed"]


class CodeChangedWarning(PinrunWarning):
    """The code on disk differs from the pinned code; it runs anyway (policy ``warn``)."""


@data_class(frozen=True)
class StepCodeStatus:
    """One step's code: pinned against on disk."""

    name: str
    state: StepState
    pinned: str | None
    current: str | None
    #: Unified diff of the pinned sources against the ones on disk ('' when equal).
    diff: str

    @property
    def changed(self) -> bool:
        """Whether the step's behaviour may differ from the pinned one."""
        return self.state in ("changed", "added", "removed")


@data_class(frozen=True)
class CodeStatus:
    """A flow's code: pinned against on disk."""

    flow: str
    steps: tuple[StepCodeStatus, ...]
    #: What changed in the flow's shape (levels, policies), if anything.
    structure: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """Whether any step, or the flow's shape, may behave differently."""
        return bool(self.structure) or any(item.changed for item in self.steps)

    def summary(self) -> str:
        """One line naming what changed."""
        parts = [f"step {item.name!r} {item.state}" for item in self.steps if item.changed]
        return "; ".join([*parts, *self.structure]) or "no change"


def load_pinned_flow(store: Store, digest: Digest) -> tuple[dict[str, Any],
                                                            dict[str, dict[str, Any]]]:
    """The pinned flow value and its step values by name (each with a ``digest`` key).

    Read once per store and process (a digest names one content forever: a verify
    worker replays many runs of one pin); each call gets its own dicts to change.
    """
    flow, steps = _pinned_flow(store, digest)
    return dict(flow), {name: dict(value) for name, value in steps.items()}


def pins_code(store: Store, digest: Digest) -> bool:
    """Whether the pinned flow ``digest`` holds any code (its own or a step's); a flow
    pinned without (an older pinrun) replays whatever is installed."""
    flow, steps = _pinned_flow(store, digest)
    return bool(flow.get("code")) or any(step["code"] for step in steps.values())


def _pinned_flow(store: Store, digest: Digest) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    key = (store.path, digest)
    cached = _PINNED_FLOWS.get(key)
    if cached is None:
        flow = store.get_object(digest, Kind.FLOW)
        steps = {}
        for step_digest in flow["steps"]:
            value = store.get_object(step_digest, Kind.STEP)
            steps[value["name"]] = {**value, "digest": step_digest}
        cached = _PINNED_FLOWS.put(key, (flow, steps))
    return cached


#: Pinned flows read, per store path and flow pin (see :func:`load_pinned_flow`).
_PINNED_FLOWS: Kept[tuple[Path, Digest],
                    tuple[dict[str, Any], dict[str, dict[str, Any]]]] = Kept(64)


def compare_code(store: Store, pinned_flow: Digest, flow: Flow,
                 project_root: Path, pins: Mapping[str, PinnedStep] | None = None, *,
                 step_pins: Mapping[str, Digest] | None = None) -> CodeStatus:
    """Compare ``flow`` as loaded now with the flow pinned as ``pinned_flow``.

    ``step_pins`` names, by step, a step pin to compare with instead of the
    flow pin's (the code a resumed run's later attempt ran).
    """
    pinned, pinned_steps = load_pinned_flow(store, pinned_flow)
    for name, digest in (step_pins or {}).items():
        pinned_steps[name] = {**store.get_object(digest, Kind.STEP), "digest": digest}
    current = pins if pins is not None else pin_steps(flow.steps, project_root)
    statuses = []
    for item in flow.steps:
        now = current[item.name]
        before = pinned_steps.get(item.name)
        if before is None:
            statuses.append(StepCodeStatus(item.name, "added", None, _identity(now.value), ""))
            continue
        old_sources = {code["module"]: code for code in
                       (store.get_object(d, Kind.CODE) for d in before["code"])}
        diff = source_diff(old_sources, now.sources)
        state: StepState = "changed"
        old_print, new_print = before.get("fingerprint"), now.value.get("fingerprint")
        if _identity(before) == _identity(now.value):
            state = "same" if not diff else "formatting"
            if diff and (old_print != new_print or not old_print) and \
                    not _same_logic(old_sources, now.sources):
                state = "same-version"  # the code changed; version= says it did not
        elif before.get("version") is None and now.value.get("version") is None and \
                _same_logic(old_sources, now.sources):
            # Fingerprints differ but no project source does beyond formatting: what
            # differs is outside the code (a value computed at import, an installed
            # package, or a pin made by a pinrun whose fingerprints were built otherwise).
            state = "same" if not diff else "formatting"
        statuses.append(StepCodeStatus(item.name, state, _identity(before),
                                       _identity(now.value), diff))
    for name in pinned_steps:
        if name not in current:
            statuses.append(StepCodeStatus(name, "removed", _identity(pinned_steps[name]),
                                           None, ""))
    structure = []
    levels = [[item.name for item in level] for level in flow.levels]
    if pinned["levels"] != levels and not any(s.state in ("added", "removed")
                                              for s in statuses):
        structure.append(f"the step order changed: {pinned['levels']} -> {levels}")
    for policy in ("on_collision", "max_concurrency"):
        if pinned[policy] != getattr(flow, policy):
            structure.append(f"{policy} changed: {pinned[policy]!r} -> "
                             f"{getattr(flow, policy)!r}")
    return CodeStatus(flow.name, tuple(statuses), tuple(structure))


def _same_logic(old: Mapping[str, Mapping[str, str]],
                new: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether two sets of module sources differ only in comments, formatting, docstrings."""
    if set(old) != set(new):
        return False
    for module, code in old.items():
        if code["source"] == new[module]["source"]:
            continue
        try:
            if normalized_source_tree(code["source"]) != \
                    normalized_source_tree(new[module]["source"]):
                return False
        except (SyntaxError, ValueError):
            return False
    return True


def _identity(step_value: Mapping[str, Any]) -> str:
    """What names a step's code: its version (and hash_includes) when given, else its
    fingerprint. ``version=`` overrides the automatic fingerprint, as documented."""
    if step_value.get("version") is not None:
        includes = step_value.get("includes")
        return f"version {step_value['version']}" + (f" ({includes[:12]})" if includes else "")
    return str(step_value.get("fingerprint"))


def source_diff(old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]],
                labels: tuple[str, str] = ("pinned", "disk")) -> str:
    """A unified diff of two sets of module sources (module name -> code value)."""
    chunks: list[str] = []
    for module in sorted(set(old) | set(new)):
        before = old[module]["source"] if module in old else ""
        after = new[module]["source"] if module in new else ""
        if before == after:
            continue
        path = (new.get(module) or old[module])["path"]
        chunks.extend(_unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"{labels[0]}/{path}", tofile=f"{labels[1]}/{path}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)


def check_policy(policy: str) -> None:
    """Refuse a code policy that is not one of :data:`CODE_POLICIES`."""
    if policy not in CODE_POLICIES:
        raise InputError(f"code policy {policy!r} is not one of {', '.join(CODE_POLICIES)}")


@contextmanager
def flow_under_policy(store: Store, policy: CodePolicy, pinned_flow: Digest, *,
                      entry: str | None, project_root: Path, flow: Flow | None,
                      what: str, typed_entry: bool = False
                      ) -> Iterator[tuple[Flow, dict[str, PinnedStep]]]:
    """The flow to run and its pins, as ``policy`` decides, for the block's duration.

    With ``artifact`` the block runs inside :func:`~pinrun.flows.loader.pinned_modules`
    with the flow imported from the pinned sources (``entry`` is required);
    otherwise ``flow`` (or ``entry`` imported from disk) is checked against
    the pinned flow: a change warns, or with ``strict`` raises
    :class:`CodeChangedError` before anything runs. An ``entry`` read from a
    run record is imported only when it names a module of the project
    (:func:`~pinrun.flows.entries.import_recorded_entry`); ``typed_entry=True``
    says the user typed it, and it is imported as given.
    """
    def load(entry: str) -> Flow:
        return import_entry(entry) if typed_entry else import_recorded_entry(entry,
                                                                             project_root)

    if policy == "artifact":
        if entry is None:
            raise InputError(f"{what} does not say where its flow is defined, so the "
                             "pinned code cannot be imported; use another --code-policy")
        with pinned_flow_loaded(store, pinned_flow, entry, project_root,
                                typed_entry=typed_entry) as (pinned, pins, _):
            yield pinned, pins
        return
    if flow is None:
        if entry is None:
            raise InputError(f"{what} does not say where its flow is defined; pass the "
                             "flow, or use --code-policy artifact")
        flow = load(entry)
    pins = pin_steps(flow.steps, project_root)
    if policy != "disabled":
        apply_code_policy(policy, compare_code(store, pinned_flow, flow, project_root, pins),
                          what)
    yield flow, pins


@contextmanager
def pinned_flow_loaded(store: Store, pinned_flow: Digest, entry: str, project_root: Path, *,
                       typed_entry: bool = False,
                       reuse: Mapping[str, ModuleType] | None = None,
                       ) -> Iterator[tuple[Flow, dict[str, PinnedStep], dict[str, ModuleType]]]:
    """The flow at ``entry`` imported from the pinned sources of ``pinned_flow``, its pins
    checked to load back as pinned, for the block's duration (inside
    :func:`~pinrun.flows.loader.pinned_modules`); and the dict that holds, once the block
    has ended, the modules that left with it.

    ``reuse``: what an earlier block of the same pin, root and entry left (its
    modules are put back as they are, and the flow is taken from them again).
    """
    sources = pinned_sources(store, pinned_flow)
    with pinned_modules(sources, project_root, reuse=reuse) as left:
        flow = import_entry(entry) if typed_entry else import_recorded_entry(entry,
                                                                             project_root)
        key = (pinned_flow, project_root, entry)
        pins = _VERIFIED_PINS.get(key)
        if pins is None:
            _, steps = load_pinned_flow(store, pinned_flow)
            pins = loaded_as_pinned(flow.name, flow.steps, steps, project_root, sources)
            # The same sources load back the same way: once per process is proof
            # enough (and a verify worker replays many runs of one pin).
            _VERIFIED_PINS.put(key, pins)
        yield flow, pins, left


def loaded_as_pinned(flow_name: str, items: Sequence[Step],
                     pinned: Mapping[str, Mapping[str, Any]], project_root: Path,
                     sources: Collection[str]) -> dict[str, PinnedStep]:
    """Pin ``items`` as loaded from the pinned ``sources`` (module names), checking each
    against its ``pinned`` step value by name.

    The pinned code must be what runs: a step the pin lacks, or a project module
    the loaded code uses that the pin does not hold (it came from disk), raises
    :class:`CodeChangedError`. A fingerprint that differs while every module
    came from the pin does not: the code is the pinned text (what differs is a
    value computed at import, or how an older pinrun built fingerprints).
    """
    pins = pin_steps(items, project_root)
    missing = [item.name for item in items if item.name not in pinned]
    unpinned = sorted({module for item in items if item.name in pinned
                       and pins[item.name].value["fingerprint"]
                       != pinned[item.name]["fingerprint"]
                       for module in pins[item.name].sources if module not in sources})
    if missing or unpinned:
        what_differs = (f"it has no pinned step {missing[0]!r}" if missing else
                        f"its steps use the project module(s) {unpinned}, which the pin "
                        "does not hold, so they would run from the files on disk")
        raise CodeChangedError(
            f"the pinned code of flow {flow_name!r} cannot run as pinned: {what_differs}. "
            "Run it with the code on disk instead (replay and verify: --code workdir; run "
            "and resume: --code-policy warn), or record the flow again so that its pin "
            "holds all of its code")
    return pins


# Owner-free on purpose: keyed by the pinned flow's digest (its sources, by content), the
# root and entry; the value is data (digests and sources), never a loaded module or class.
#: Pinned flows already checked to load back as pinned: (flow digest, root, entry) -> pins.
_VERIFIED_PINS: Kept[tuple[Digest, Path, str], dict[str, PinnedStep]] = Kept(64)


def apply_code_policy(policy: CodePolicy, status: CodeStatus, what: str) -> None:
    """Warn about, or refuse, code that changed since it was pinned (``what`` says where)."""
    if not status.changed or policy in ("disabled", "artifact"):
        return
    message = (f"the code of flow {status.flow!r} differs from {what}: {status.summary()}. "
               "`pinrun status` shows the diff; --code-policy artifact runs the pinned code")
    if policy == "strict":
        raise CodeChangedError(f"{message}. Refusing to run (code policy strict).")
    warnings.warn(CodeChangedWarning(message), stacklevel=4)


def _unified_diff(*args: Any, **kwargs: Any) -> Iterator[str]:
    """``difflib.unified_diff``, imported on the first diff: a replay that reproduces
    (most of them) makes none, and a fresh worker saves the import."""
    import difflib

    return difflib.unified_diff(*args, **kwargs)
