"""The one walk over a flow's levels, shared by recording, resuming, accepting and replay.

Recording and replaying must run the same logic, or a replay would prove
nothing about the recorded run. So there is one loop over levels, one check
of the flow's output policies and one state merge, here; what differs
between the modes is behind a small protocol (:class:`Mode`):

- where a step's context answers come from (:meth:`Mode.log_for`: the world
  while recording, the recording while replaying, both while accepting);
- which of a level's steps run (:meth:`Mode.select`: resume skips the
  finished ones, replay runs the recorded ones);
- what happens to each outcome (:meth:`Mode.settle`: recorded and committed,
  or judged against its record) and which outputs go on into the state;
- what ends a level (:meth:`Mode.end_level`: a recording stops at a failure,
  a replay reads back what it judged and goes on).

Where code comes from is settled before the walk: the flow given is the code
that runs (installed, on disk, or loaded from the pins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from pinrun.data_classes import data_class
from pinrun.engine.execution import (
    HiddenState,
    LogFor,
    Outcome,
    StepGuard,
    check_outputs,
    run_level,
)
from pinrun.flows.flow import Flow
from pinrun.flows.step import Step
from pinrun.world import World

if TYPE_CHECKING:
    from pinrun.artifacts.seen import Seen, Wide
    from pinrun.artifacts.trees import Entry
    from pinrun.engine.context import RecordingLog, ReplayLog

__all__ = ["LevelBase", "Mode", "RunState", "Settled", "walk"]


@data_class
class RunState:
    """The state as the walk goes: every value, beside its canonical encoding."""

    values: dict[str, Any]
    encoded: dict[str, bytes]
    #: A large value's :class:`~pinrun.artifacts.seen.Seen`, made with its encoding (by
    #: the step that wrote it): a step reading it is given it as it is once it is told
    #: to be still the same (see execution._as_read).
    seen: dict[str, Seen] = field(default_factory=dict)
    #: The :class:`~pinrun.artifacts.seen.Wide` records of the newest steps' wide outputs
    #: (made with their encodings): a step reading the whole state is handed it as it is
    #: once each value is told to be still the same (see execution._state_as_read).
    wide: tuple[Wide, ...] = ()


@data_class
class LevelBase:
    """The state as a level began: what all of its steps read (kept for resume).

    A level of one step reads the walk's own state (its call takes what it reads
    before the step's outputs are merged); a level of several steps reads copies.
    """

    state: dict[str, Any]
    encoded: dict[str, bytes]
    #: The stored entry of each of its values (recording fills it; replay stores nothing).
    entries: dict[str, Entry] = field(default_factory=dict)
    #: Keys the level's finished steps wrote (a sibling may not write them too).
    written: set[str] = field(default_factory=set)
    #: The Seens of its values (see :attr:`RunState.seen`; a resumed level has none).
    seen: dict[str, Seen] = field(default_factory=dict)


class Settled(NamedTuple):
    """What goes on into the state from one step: its outputs and their encodings, and
    the Seens and Wide made with them (see :attr:`RunState.seen`, :attr:`RunState.wide`).

    (Immutable, and made for every step: a named tuple, the cheapest to make.)
    """

    outputs: Mapping[str, Any]
    encoded: Mapping[str, bytes]
    seen: Mapping[str, Seen] | None = None
    wide: Wide | None = None


class Mode(Protocol):
    """What makes a walk a recording, a resume, an accept or a replay."""

    @property
    def run_id(self) -> str:
        """The run the walk records or replays."""

    @property
    def world(self) -> World | None:
        """Stamps each step's start and end (None: replay, which never reads the clock)."""

    @property
    def guard(self) -> StepGuard | None:
        """Watches each step while it runs (None: nothing watched)."""

    @property
    def debug_step(self) -> str | None:
        """The step to stop in under the debugger (None: none)."""

    @property
    def hidden_state(self) -> HiddenState | None:
        """Per step, the module-level state to watch for changes."""

    def select(self, level: Sequence[Step]) -> list[Step]:
        """The steps of ``level`` to run, in declaration order."""

    def log_for(self, item: Step) -> RecordingLog | ReplayLog:
        """The log that answers ``item``'s context."""

    def begin_level(self, base: LevelBase, *, fresh: bool, siblings: bool) -> None:
        """A level starts from ``base`` (``fresh``: made now, not a resumed level's)."""

    def settle(self, outcome: Outcome, base: LevelBase, *, final: bool) -> Settled | None:
        """Deal with one outcome (after the output policies); what to merge, if anything.

        ``final``: the last step of the walk, and nothing failed.
        """

    def end_level(self, level: Sequence[Step], failure: Outcome | None) -> None:
        """The level is done; ``failure`` is its first failed step, if any (may raise)."""


def walk(flow: Flow, state: RunState, mode: Mode, *,
         resumed_level: LevelBase | None = None) -> None:
    """Run ``flow`` level by level through ``mode``, merging what it settles into ``state``.

    Each level's steps read the state as it was when the level began. Every
    outcome is checked against the flow's output policies (a second writer of
    a key in one level, ``on_collision``) before the mode settles it; what the
    mode keeps is merged at once, in declaration order. A resumed run whose
    last level was half done passes that level's base as ``resumed_level``.
    """
    plan = [(level, mode.select(level)) for level in flow.levels]
    last = max((index for index, (_, todo) in enumerate(plan) if todo), default=-1)
    log_for: LogFor = mode.log_for
    for index, (level, todo) in enumerate(plan):
        failure: Outcome | None = None
        if todo:
            resumed = resumed_level is not None and len(todo) < len(level)
            if resumed and resumed_level is not None:
                base = resumed_level
            elif len(level) == 1:
                # One step reads the state before anything is merged into it (its call is
                # made first) and nothing reads the base after it: no copy, whatever the
                # state's size.
                base = LevelBase(state.values, state.encoded, seen=state.seen)
            else:
                base = LevelBase(dict(state.values), dict(state.encoded),
                                 seen=dict(state.seen))
            mode.begin_level(base, fresh=not resumed, siblings=len(level) > 1)
            # (The Wides as the level began: a merge replaces the tuple, never changes it.)
            for outcome in run_level(flow, todo, base.state, base.encoded, seen=base.seen,
                                     wide=state.wide, log_for=log_for,
                                     world=mode.world, run_id=mode.run_id, guard=mode.guard,
                                     debug_step=mode.debug_step,
                                     hidden_state=mode.hidden_state):
                if outcome.error is None:
                    check_outputs(flow, state.values, outcome, base.written)
                failed = failure is not None or outcome.error is not None
                settled = mode.settle(outcome, base, final=index == last and not failed
                                      and outcome.step is todo[-1])
                if outcome.error is not None and failure is None:
                    # Concurrent siblings have all run: each is settled before the
                    # first failure (in declaration order) can end the level.
                    failure = outcome
                if settled is not None:
                    state.values.update(settled.outputs)
                    state.encoded.update(settled.encoded)
                    if state.seen or settled.seen:
                        _merge_seen(state.seen, settled)
                    if settled.wide is not None:
                        # The newest few (an older one may vouch for keys since written
                        # again: it vouches for none of those, and holds its values).
                        state.wide = (*state.wide[-(_MOST_WIDE - 1):], settled.wide)
                    if len(level) > 1:  # (only a sibling's outputs are checked against it)
                        base.written.update(settled.outputs)
        mode.end_level(level, failure)


#: The most Wides a state keeps (the newest).
_MOST_WIDE = 4


def _merge_seen(seen: dict[str, Seen], settled: Settled) -> None:
    """Each key a step wrote keeps the Seen made with its new encoding, or none: one made
    before is of a value the state no longer holds (it would keep that value alive)."""
    if seen:
        for key in seen.keys() & settled.encoded.keys():  # (goes over the fewer keys)
            del seen[key]
    if settled.seen:
        seen.update(settled.seen)
