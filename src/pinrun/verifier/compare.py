"""Where two runs differ: inputs, code, environment, and each step's outputs.

``pinrun diff RUN_A RUN_B`` answers "what changed between yesterday's run
and today's?" without running anything: both records are compared digest by
digest, and only what differs is opened and diffed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import Store
from pinrun.engine.records import RunRecord, StepRecord, load_env, load_run
from pinrun.flows.environment import environment_changes
from pinrun.flows.status import source_diff
from pinrun.verifier.diff import Change, diff_states

__all__ = ["RunDiff", "StepDiff", "diff_runs"]


@dataclass
class StepDiff:
    """One step in both runs (or in one of them)."""

    name: str
    #: "same", "outputs", "status", "only-a", "only-b"
    difference: str
    status: tuple[str | None, str | None]
    code_changed: bool = False
    changes: list[Change] = field(default_factory=list)
    changes_left_out: int = 0
    code_diff: str = ""

    def as_value(self) -> dict[str, Any]:
        """The step's comparison as JSON-ready data."""
        return {"name": self.name, "difference": self.difference, "status": list(self.status),
                "code_changed": self.code_changed, "code_diff": self.code_diff,
                "changes": [c.as_value() for c in self.changes],
                "changes_left_out": self.changes_left_out}


@dataclass
class RunDiff:
    """How run ``b`` differs from run ``a``."""

    a: str
    b: str
    flows: tuple[str, str]
    inputs: list[Change] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    steps: list[StepDiff] = field(default_factory=list)

    @property
    def same(self) -> bool:
        """Whether the runs agree on inputs, code and every step's outcome."""
        return (self.flows[0] == self.flows[1] and not self.inputs
                and all(s.difference == "same" and not s.code_changed for s in self.steps))

    def as_value(self) -> dict[str, Any]:
        """The comparison as JSON-ready data (``pinrun diff --json``)."""
        return {"a": self.a, "b": self.b, "flows": list(self.flows), "same": self.same,
                "inputs": [c.as_value() for c in self.inputs],
                "environment": self.environment, "steps": [s.as_value() for s in self.steps]}


def _final(run: RunRecord) -> dict[str, StepRecord]:
    return {record.name: record for record in run.steps}


def _sources(store: Store, step: Digest | None) -> tuple[Any, dict[str, dict[str, str]]]:
    if step is None:
        return None, {}
    value = store.get_object(step, Kind.STEP)
    codes = (store.get_object(d, Kind.CODE) for d in value["code"])
    return value.get("fingerprint"), {code["module"]: code for code in codes}


def _environment(store: Store, a: RunRecord, b: RunRecord) -> list[str]:
    if a.env is None or b.env is None or a.env == b.env:
        return []
    return environment_changes(load_env(store, a), load_env(store, b))


def diff_runs(store: Store, a_id: str, b_id: str) -> RunDiff:
    """Compare run ``b_id`` with run ``a_id`` (ids or unique prefixes)."""
    a, b = load_run(store, a_id), load_run(store, b_id)
    result = RunDiff(a.id, b.id, (a.flow, b.flow))
    if a.inputs != b.inputs:
        result.inputs, _ = diff_states(store.get_snapshot(a.inputs),
                                       store.get_snapshot(b.inputs))
    result.environment = _environment(store, a, b)
    steps_a, steps_b = _final(a), _final(b)
    for name in [*steps_a, *(n for n in steps_b if n not in steps_a)]:
        left, right = steps_a.get(name), steps_b.get(name)
        if left is None or right is None:
            result.steps.append(StepDiff(name, "only-a" if right is None else "only-b",
                                         (left.status if left else None,
                                          right.status if right else None)))
            continue
        step = StepDiff(name, "same", (left.status, right.status))
        if left.code != right.code:
            (print_a, code_a), (print_b, code_b) = (_sources(store, left.code),
                                                    _sources(store, right.code))
            step.code_changed = print_a != print_b
            step.code_diff = source_diff(code_a, code_b, ("a", "b")) if step.code_changed else ""
        if left.status != right.status:
            step.difference = "status"
        elif left.outputs != right.outputs:
            step.difference = "outputs"
            step.changes, step.changes_left_out = diff_states(
                store.get_snapshot(left.outputs) if left.outputs else {},
                store.get_snapshot(right.outputs) if right.outputs else {})
        result.steps.append(step)
    return result
