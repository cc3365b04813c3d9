"""Flows: an ordered list of steps, or a DAG of them, with a deterministic order.

Steps run in levels. A step without ``after=`` runs after the step before it
(so a plain list is sequential); a step with ``after=[...]`` runs after
exactly those, which lets independent steps share a level. Within a level,
results are merged in declaration order, so the outcome never depends on
timing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from pinrun.errors import FlowDefinitionError, MissingInputError
from pinrun.flows.step import Step

__all__ = ["CollisionPolicy", "Flow", "FlowDefinitionError", "MissingInputError"]

#: What happens when a step overwrites a key an earlier step wrote.
CollisionPolicy = Literal["overwrite", "warn", "error"]
_POLICIES: frozenset[str] = frozenset(("overwrite", "warn", "error"))
#: At most this many sets of input keys are remembered as checked, per flow.
_CHECKED_KEPT = 64


class Flow:
    """A named, immutable set of steps and the order they run in."""

    name: str
    steps: tuple[Step, ...]
    on_collision: CollisionPolicy
    max_concurrency: int
    #: The steps grouped in the levels they run in, each level in declaration order.
    levels: tuple[tuple[Step, ...], ...]
    _depends: dict[str, tuple[str, ...]]
    #: Sets of input keys check_inputs passed (a flow is immutable: so is its answer).
    _inputs_checked: set[frozenset[str]]

    def __init__(self, name: str, steps: Sequence[Step], *,
                 on_collision: CollisionPolicy = "warn", max_concurrency: int = 1) -> None:
        if not isinstance(name, str) or not name.strip():
            raise FlowDefinitionError(repr(name), "a flow needs a non-empty name")
        steps = tuple(steps)
        if not steps:
            raise FlowDefinitionError(name, "it has no steps")
        for item in steps:
            if not isinstance(item, Step):
                raise FlowDefinitionError(name, f"{item!r} is not a step; decorate the "
                                          "function with @pinrun.step")
        if on_collision not in _POLICIES:
            raise FlowDefinitionError(name, f"on_collision must be one of {sorted(_POLICIES)}")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise FlowDefinitionError(name, "max_concurrency must be a whole number >= 1")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "on_collision", on_collision)
        object.__setattr__(self, "max_concurrency", max_concurrency)
        depends = _dependencies(name, steps)
        object.__setattr__(self, "_depends", depends)
        object.__setattr__(self, "levels", _levels(name, steps, depends))
        object.__setattr__(self, "_inputs_checked", set())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Flow is immutable; build a new one")

    def dependencies(self, item: Step) -> tuple[str, ...]:
        """The names of the steps ``item`` runs after."""
        return self._depends[item.name]

    def check_inputs(self, inputs: Iterable[str]) -> None:
        """Raise :class:`MissingInputError` if a step will lack a key it requires.

        Keys a step writes are known when declared or read off its ``return
        {...}`` literals; a step whose writes are unknown is assumed to provide
        whatever later steps need, so it never causes a false alarm.
        """
        keys = frozenset(inputs)
        if keys in self._inputs_checked:  # (each record asks: ~20k instructions for 5 steps)
            return
        available = set(keys)
        unknown_writer = False
        for level in self.levels:
            for item in level:
                missing = [key for key in item.requires if key not in available]
                if missing and not unknown_writer:
                    raise MissingInputError(self.name, item.name, missing[0], available)
            for item in level:
                if item.writes is None:
                    unknown_writer = True
                else:
                    available |= item.writes
        if len(self._inputs_checked) < _CHECKED_KEPT:
            self._inputs_checked.add(keys)

    def __repr__(self) -> str:
        return f"<pinrun flow {self.name!r}: {' -> '.join(s.name for s in self.steps)}>"


def _dependencies(flow: str, steps: tuple[Step, ...]) -> dict[str, tuple[str, ...]]:
    """Each step's name -> the names it runs after (the step before it, unless `after=`).

    Linear in the steps and their ``after=`` names: a flow of thousands of steps is built
    as fast per step as one of ten.
    """
    names = [item.name for item in steps]
    known = set(names)
    if len(known) != len(names):
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        raise FlowDefinitionError(flow, f"step names must be unique; {duplicates[0]!r} is "
                                  "used twice (pass name= to @pinrun.step)")
    depends: dict[str, tuple[str, ...]] = {}
    for index, item in enumerate(steps):
        if item.after is None:
            depends[item.name] = (names[index - 1],) if index else ()
            continue
        for other in item.after:
            if other not in known:
                raise FlowDefinitionError(flow, f"step {item.name!r} runs after {other!r}, "
                                          "which is not a step of this flow")
        depends[item.name] = item.after
    return depends


def _levels(flow: str, steps: tuple[Step, ...],
            depends: dict[str, tuple[str, ...]]) -> tuple[tuple[Step, ...], ...]:
    """The steps grouped by level (one more than the deepest step they run after), each
    level in declaration order; a cycle is named by a step on it.

    Iterative (no recursion limit on a long chain) and linear in steps plus dependencies.
    """
    level_of: dict[str, int] = {}
    visiting: set[str] = set()
    for root, first in depends.items():
        if root in level_of:
            continue
        # Depth-first, with an explicit stack of (name, its dependencies still to look at).
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(first))]
        visiting.add(root)
        while stack:
            name, pending = stack[-1]
            dep = next(pending, None)
            if dep is None:
                stack.pop()
                visiting.discard(name)
                level_of[name] = 1 + max((level_of[d] for d in depends[name]), default=-1)
            elif dep in visiting:
                raise FlowDefinitionError(flow, f"its dependencies form a cycle through "
                                          f"{dep!r}")
            elif dep not in level_of:
                visiting.add(dep)
                stack.append((dep, iter(depends[dep])))
    grouped: list[list[Step]] = [[] for _ in range(max(level_of.values()) + 1)]
    for item in steps:
        grouped[level_of[item.name]].append(item)
    return tuple(tuple(level) for level in grouped)
