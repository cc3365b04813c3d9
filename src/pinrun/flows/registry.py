"""Pinned flows in the store: the objects a flow pins, and the ``flows/<name>`` refs.

Every run stores its flow's pins (``code``, ``step``, ``flow`` and ``env``
objects). ``pinrun pin`` stores them without running anything and names them
with the ref ``flows/<flow name>``, pointing at a small value
``{"flow": digest, "env": digest, "entry": "module:attribute"}``: the code a
worker checks itself against at start-up (``pinrun status``) and the code
``pinrun run --code-policy artifact`` runs.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.store import Store, WriteBatch
from pinrun.errors import CorruptObjectError, PinrunWarning
from pinrun.flows.environment import (
    Changing,
    changing_environment,
    environment_with,
    settled_environment,
)
from pinrun.flows.flow import Flow
from pinrun.flows.pinning import PinnedStep, flow_sources, flow_value, pin_steps
from pinrun.flows.project import DISTRIBUTIONS_VARIABLE, module_identity, script_path

__all__ = ["FLOW_REF_PREFIX", "FlowPins", "NothingPinnedWarning", "PinnedFlow", "find_entry",
           "flow_ref", "load_pinned", "pin_flow", "pinned_flows", "put_pins"]

#: Refs of pinned flows are ``flows/<name>``.
FLOW_REF_PREFIX = "flows/"


def flow_ref(name: str) -> str:
    """The ref under which flow ``name`` is pinned."""
    return f"{FLOW_REF_PREFIX}{name}"


class NothingPinnedWarning(PinrunWarning):
    """A flow was recorded or pinned without any of its code: replay cannot pin it."""


@dataclass(frozen=True)
class FlowPins:
    """The digests of what a flow pinned: each step, the flow, the environment."""

    steps: dict[str, Digest]
    flow: Digest
    env: Digest


@dataclass(frozen=True)
class PinnedFlow:
    """What ``flows/<name>`` names: the pinned flow, its environment, where it is defined."""

    flow: Digest
    env: Digest
    entry: str | None
    #: The digest of the value the ref points to.
    digest: Digest


def put_pins(batch: WriteBatch, flow: Flow, pins: Mapping[str, PinnedStep],
             entry: str | None, project_root: Path) -> FlowPins:
    """Queue each step's code and step objects, the flow object and the environment.

    The flow object also names the code of the module defining the flow
    (``entry``) and of the project packages above the pinned modules; the
    environment names the distributions that code came from as the project's
    (see :func:`~pinrun.flows.environment.environment`).
    """
    found = _flow_payloads(flow, tuple(pins[item.name] for item in flow.steps), entry,
                           project_root)
    if found.nothing_pinned:
        warnings.warn(NothingPinnedWarning(
            f"flow {flow.name!r} pinned no code: the modules of its steps are neither in the "
            f"project folder {project_root} nor in an installed project distribution, so a "
            "replay with the pinned code would run whatever is installed then. Run pinrun "
            "from the project folder, or name the distribution in pyproject.toml's "
            f"[tool.pinrun] distributions or in ${DISTRIBUTIONS_VARIABLE}."), stacklevel=3)
    batch.put_known(found.objects)  # (one call: ~3.5k instructions less an object)
    return FlowPins(dict(found.steps), found.flow,
                    batch.put(Kind.ENV, *found.env.payload(changing_environment())))


class _Environments:
    """A flow's environment objects: its settled fields read once, and its encoding
    per state of the fields a process can change (the time zone, the locale, the
    place), which are read at every run."""

    def __init__(self, sources: tuple[dict[str, str], ...]) -> None:
        self.sources = sources
        self.settled: dict[str, object] | None = None
        self.encoded: dict[Changing, _Payload] = {}

    def payload(self, changing: Changing) -> _Payload:
        """The environment object's payload and digest with these changing fields."""
        found = self.encoded.get(changing)
        if found is None:
            if self.settled is None:
                # The installed distributions the pinned code came from are the project's.
                own = sorted({source["distribution"] for source in self.sources
                              if source.get("distribution")})
                self.settled = settled_environment(self.sources, project=own)
            if len(self.encoded) >= 8:  # a process that keeps changing them: keep the recent
                self.encoded.clear()
            payload = codec.encode(environment_with(self.settled, changing), root="environment")
            found = self.encoded[changing] = (payload, compute_digest(Kind.ENV, payload))
        return found


_Payload = tuple[bytes, Digest]


class _FlowObjects:
    """What a flow pins, encoded and digested once per flow object and pins (a flow
    recorded again and again reuses them): every code, step and flow object in the
    order they are queued, each step's pin, and the flow's environment objects."""

    __slots__ = ("env", "flow", "nothing_pinned", "objects", "steps")

    def __init__(self, flow: Flow, pins: tuple[PinnedStep, ...], entry: str | None,
                 project_root: Path) -> None:
        objects: list[tuple[Kind, bytes, Digest]] = []
        self.steps: dict[str, Digest] = {}
        for item, pinned in zip(flow.steps, pins, strict=True):
            objects += [(Kind.CODE, payload, digest) for payload, digest in
                        zip(pinned.code_payloads, pinned.code_digests, strict=True)]
            objects.append((Kind.STEP, pinned.step_payload, pinned.step_digest))
            self.steps[item.name] = pinned.step_digest
        own = flow_sources(entry, pins, project_root)
        code = [(payload, compute_digest(Kind.CODE, payload))
                for payload in (codec.encode(source, root="code") for source in own.values())]
        objects += [(Kind.CODE, payload, digest) for payload, digest in code]
        flow_payload = codec.encode(flow_value(flow, [p.step_digest for p in pins],
                                               [digest for _, digest in code]), root="flow")
        self.flow = compute_digest(Kind.FLOW, flow_payload)
        objects.append((Kind.FLOW, flow_payload, self.flow))
        self.objects = tuple(objects)
        self.nothing_pinned = not code and not any(pinned.sources for pinned in pins)
        self.env = _Environments(
            (*(source for pinned in pins for source in pinned.sources.values()), *own.values()))


#: Owned by the flow object (weakly: a flow loaded from pinned code leaves with it, and
#: no flow is kept alive by this cache); per flow, by its step pins, entry and root.
_PAYLOADS: weakref.WeakKeyDictionary[Flow, dict[tuple[object, ...], _FlowObjects]] = \
    weakref.WeakKeyDictionary()


def _flow_payloads(flow: Flow, pins: tuple[PinnedStep, ...], entry: str | None,
                   project_root: Path) -> _FlowObjects:
    """The flow's pinned objects (see :class:`_FlowObjects`), made once per flow object,
    step pins, entry and root."""
    known = _PAYLOADS.setdefault(flow, {})
    key = (pins, entry, project_root)
    found = known.get(key)
    if found is None:
        if len(known) >= 16:  # pins change when the code does: keep the recent ones
            known.clear()
        found = known[key] = _FlowObjects(flow, pins, entry, project_root)
    return found


def pin_flow(flow: Flow, store: Store, project_root: Path,
             entry: str | None = None) -> PinnedFlow:
    """Pin ``flow`` (code, definition, environment) under ``flows/<name>``; nothing runs."""
    pins = pin_steps(flow.steps, project_root)
    where = entry if entry is not None else find_entry(flow, project_root)
    with store.batch() as batch:
        stored = put_pins(batch, flow, pins, where, project_root)
        # A tree, so gc, fsck and export follow it to the flow and environment.
        digest = batch.put_entries({"flow": stored.flow, "env": stored.env,
                                    "entry": batch.put_value(where, root="entry")})
        batch.set_ref(flow_ref(flow.name), digest)
    return PinnedFlow(stored.flow, stored.env, where, digest)


def load_pinned(store: Store, name: str) -> PinnedFlow | None:
    """The flow pinned as ``flows/<name>``, or None when it was never pinned."""
    digest = store.get_ref(flow_ref(name))
    if digest is None:
        return None
    kind, _ = store.load(digest)
    entries = store.get_object(digest, Kind.TREE)["entries"] if kind is Kind.TREE else {}
    if set(entries) != {"flow", "env", "entry"}:
        raise CorruptObjectError(digest, None, f"ref {flow_ref(name)} does not name a "
                                 "pinned flow; pin it again: pinrun pin MODULE:FLOW")
    entry = store.get_value(entries["entry"])
    return PinnedFlow(entries["flow"], entries["env"], entry if isinstance(entry, str) else None,
                      digest)


def pinned_flows(store: Store) -> dict[str, PinnedFlow]:
    """Every pinned flow, by name."""
    found = {}
    for ref in store.refs(FLOW_REF_PREFIX):
        pinned = load_pinned(store, ref[len(FLOW_REF_PREFIX):])
        if pinned is not None:
            found[ref[len(FLOW_REF_PREFIX):]] = pinned
    return found


def find_entry(flow: Flow, project_root: Path | None = None) -> str | None:
    """``module:attribute`` of the module-level name bound to ``flow``, if there is one.

    A flow defined in a script (``__main__``) is named by its path in the
    project (``jobs/nightly.py:flow``): replay loads that file under the
    script's identity (:func:`~pinrun.flows.project.module_identity`), with its
    folder on ``sys.path`` as Python runs a script, and never as ``__main__``.
    """
    module_name = flow.steps[0].func.__module__
    module = sys.modules.get(module_name)
    for name, value in vars(module).items() if module is not None else ():
        if value is flow:
            identity = module_identity(module_name, project_root)
            path = script_path(identity, project_root) if module_name == "__main__" else None
            if path is not None:  # replay loads it from that file, its folder on sys.path
                return f"{path}:{name}"
            return f"{identity}:{name}"
    return None
