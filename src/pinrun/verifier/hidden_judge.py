"""When a replay looks at the project's hidden state, and whom it names for a change.

:class:`~pinrun.world.hidden_state.Watch` is how hidden state is looked at;
this decides when, and who made a change (see that module for what it names).

**At the run's edges.** A replay looks once as the run starts and once after
its last step. A look costs the same however many steps ran between, so a
run whose hidden state ends as it began (nearly every run) pays two looks,
not one per step. What a run leaves as it found it is not carried into the
next run, so a step that changes a global and a later step that puts it
back are not named.

**When the edges differ,** each change is named by its owner, as made during
the run by one of its steps, on the run's last step: the project's code is
never run again to find out which (a second run would act on the state the
first left: take from a queue that is empty now, write a file twice, take
another branch). From then on the process looks after every step at those
modules (shared by every watch of the same module objects): a verify worker
or a service replaying the same code names the step exactly from its next
run. So does a cache that gained entries whose results can change in place:
a later step changing one shows only to a look after every step.

**Step by step.** ``replay --repeat N``, ``--debug-step`` and every replay
after a change was seen look after every step: the look after one step is
the look before the next, and a repetition names what each step found
changed since the first one.
"""

from __future__ import annotations

from collections.abc import Iterable

from pinrun.world.hidden_state import Change, Look, Watch, carried

__all__ = ["HiddenStateJudge"]


class HiddenStateJudge:
    """The hidden-state looks of one replay (one repetition) and what they name."""

    __slots__ = ("found", "group", "group_changes", "group_since", "repetition",
                 "step_by_step", "watch")

    def __init__(self, watch: Watch, repetition: int, *, step_by_step: bool) -> None:
        self.watch = watch
        self.repetition = repetition
        #: Look after every step (True), or at the run's edges only.
        self.step_by_step = step_by_step
        #: The hidden state as the last look saw it (None: the run has not begun).
        self.found: Look | None = None
        #: The steps that ran last (several when concurrent), what they found and changed.
        self.group: tuple[str, ...] = ()
        self.group_since: dict[str, list[Change]] = {}
        self.group_changes: list[Change] = []

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
        watch, found = self.watch, self.found
        assert found is not None, "begin() looks first"
        if name not in self.group:
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
        made = [change for change in self.group_changes if change.hazard]
        named = {change.owner for change in since}
        by = f"step {name!r}" if len(self.group) == 1 else \
            f"one of steps {', '.join(map(repr, self.group))}, which ran concurrently,"
        causes = [*since, *(
            Change(change.kind, change.owner, f"{change.what} by {by} in repetition "
                   f"{self.repetition}") for change in made if change.owner not in named)]
        also = "" if len(self.group) == 1 else f" by {by.rstrip(',')}"
        return [carried(f"{change}{also}") for change in made], causes

    def run_changes(self, steps: list[str]) -> list[Change]:
        """After the last step, looking at the edges only: what the run changed that a
        worker would carry into its next run (a cache filling up is not), each as made
        by one of ``steps`` (those that ran). Looks after every step from then on,
        should anything have changed."""
        if self.step_by_step or self.found is None:
            return []
        changes = self.watch.changes(self.found, self.watch.look())
        if any(change.hazard or change.mutable for change in changes):
            self.watch.saw_changing()
        by = f"step {steps[0]!r}" if len(steps) == 1 else \
            f"one of its steps ({', '.join(map(repr, steps))})"
        return [Change(change.kind, change.owner, f"{change.what} during this run, by {by}; "
                       "a replay with --repeat 2 names the step")
                for change in changes if change.hazard]
