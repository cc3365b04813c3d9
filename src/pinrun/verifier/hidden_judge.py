"""When a replay looks at the project's hidden state, and whom it names for a change.

:class:`~pinrun.world.hidden_state.Watch` is how hidden state is looked at;
this decides when, and who made a change (see that module for what it names).

**At the run's edges.** A plain replay looks once as its first level starts
and once after its last step. A look costs the same however many steps ran
between, so a run whose hidden state ends as it began (nearly every run)
pays two looks, not one per step. What a run leaves as it found it is not
carried into the next run, so a step that changes a global and a later step
that puts it back are not named.

**Step by step, to name the step.** When the two looks differ, the run is
replayed once more with a look after every step (a replay touches nothing
outside the process: its effects answer from the record), and each change
the edges found is named on the step that made it again, exactly as a
replay watched step by step from the start would name it. A change a step
makes only once (a flag set to the value it already holds, a client made on
first use) is not made again: it is named as made by a step of this run,
on the run's last step. The second replay's verdicts are not used: it ran
on the state the first one left.

``replay --repeat N`` and ``--debug-step`` look step by step from the start:
a repetition names what each step found changed since the first one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pinrun.world.hidden_state import Change, Look, Watch, carried

__all__ = ["HiddenStateJudge", "MadeChange"]


@dataclass(frozen=True)
class MadeChange:
    """A change of hidden state a step made, as named on it."""

    change: Change
    #: Who made it: ``step 'tag'``, or ``one of steps 'a', 'b', which ran concurrently,``.
    by: str
    #: The hazard on the step.
    hazard: str


class HiddenStateJudge:
    """The hidden-state looks of one replay (one repetition) and what they name."""

    __slots__ = ("found", "group", "group_changes", "group_since", "made", "repetition",
                 "step_by_step", "watch")

    def __init__(self, watch: Watch, repetition: int, *, step_by_step: bool) -> None:
        self.watch = watch
        self.repetition = repetition
        #: Look after every step (True), or at the run's edges only.
        self.step_by_step = step_by_step
        #: The hidden state as the last look saw it (None: not looked at yet).
        self.found: Look | None = None
        #: The steps that ran last (several when concurrent), what they found and changed.
        self.group: tuple[str, ...] = ()
        self.group_since: dict[str, list[Change]] = {}
        self.group_changes: list[Change] = []
        #: Per step, the changes it made (looking step by step).
        self.made: dict[str, list[MadeChange]] = {}

    def begin(self) -> None:
        """The run starts: the first look. Then, looking step by step, the look after one
        step is the look before the next (nothing of the project's runs between a level's
        last step and the next level)."""
        self.found = self.watch.look()

    def after_step(self, name: str, running: Iterable[str]) -> tuple[list[str], list[Change]]:
        """The hazards of the hidden state step ``name`` changed, and its causes should it
        diverge (what it changed, and what it found changed since the first repetition).
        ``running``: the steps whose outcomes are being handed over now (several when
        they ran concurrently). Looking step by step only.

        Steps that ran one after another are looked at after each (the look after one
        is the look before the next); steps that ran concurrently once, after all of
        them: the engine starts them all before handing over the first outcome.
        """
        watch = self.watch
        if name not in self.group:
            found = self.found if self.found is not None else watch.look()
            after = self.found = watch.look()
            self.group = (name, *(other for other in running if other != name))
            self.group_changes = watch.changes(found, after)
            # What each found changed, named by who changed it before they ran.
            self.group_since = {step: watch.since_first(step, found, self.repetition)
                                for step in self.group}
            if self.group_changes:
                watch.note(self.group_changes, self.group, self.repetition)
        since = self.group_since[name]
        if not since and not self.group_changes:  # nearly always: nothing to name
            return [], []
        by = f"step {name!r}" if len(self.group) == 1 else \
            f"one of steps {', '.join(map(repr, self.group))}, which ran concurrently,"
        also = "" if len(self.group) == 1 else f" by {by.rstrip(',')}"
        made = [MadeChange(change, by, carried(f"{change}{also}"))
                for change in self.group_changes if change.hazard]
        self.made[name] = made
        named = {change.owner for change in since}
        causes = [*since, *(self.cause(item) for item in made
                            if item.change.owner not in named)]
        return [item.hazard for item in made], causes

    def cause(self, made: MadeChange) -> Change:
        """A change a step made, as a cause of its divergence."""
        change = made.change
        return Change(change.kind, change.owner,
                      f"{change.what} by {made.by} in repetition {self.repetition}")

    def run_changes(self) -> list[Change]:
        """After the last step, looking at the edges only: what the run changed that a
        worker would carry into its next run (a cache filling up is not)."""
        if self.step_by_step or self.found is None:
            return []
        return [change for change in self.watch.changes(self.found, self.watch.look())
                if change.hazard]


def unnamed(change: Change) -> str:
    """The hazard of a change no step made again when the run was replayed step by step."""
    return carried(f"{change} by a step of this run (replayed again with a look after "
                   "every step, none changed it again: a change made once)")
