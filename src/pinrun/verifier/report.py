"""What a replay found: the verdict, each step's result, and why a step diverged."""

from __future__ import annotations

from dataclasses import field
from typing import Any, Literal

from pinrun.data_classes import data_class
from pinrun.safe_text import printable
from pinrun.verifier.diff import Change

__all__ = ["Cause", "ReplayReport", "StepResult", "Verdict"]

Verdict = Literal["reproduced", "diverged", "error"]
StepStatus = Literal["match", "diverged", "not-run"]
#: How a step diverged.
DivergenceKind = Literal["outputs", "effects", "error", "failure-not-reproduced",
                         "failed-differently", "added"]


@data_class(frozen=True)
class Cause:
    """A likely reason for a divergence, with where it comes from when known."""

    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    #: A source diff, for code drift.
    detail: str = ""

    def as_value(self) -> dict[str, Any]:
        """The cause as JSON-ready data."""
        return {"kind": self.kind, "message": self.message, "file": self.file,
                "line": self.line, "detail": self.detail}

    def __str__(self) -> str:
        where = f" ({self.file}:{self.line})" if self.file else ""
        return f"{self.kind}: {self.message}{where}"


@data_class
class StepResult:
    """One step of the replay against its recording."""

    name: str
    attempt: int
    status: StepStatus
    recorded_outputs: str | None = None
    replayed_outputs: str | None = None
    divergence: DivergenceKind | None = None
    #: What differs, in words (an effect asked for otherwise, an error...).
    message: str = ""
    changes: list[Change] = field(default_factory=list)
    changes_left_out: int = 0
    causes: list[Cause] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)
    #: The step pin (hex digest) whose code the replay ran for this step.
    code: str | None = None
    #: Whether that is the code of a later attempt than the run's flow pin names
    #: (the run was resumed after its code changed).
    resumed_code: bool = False

    def as_value(self) -> dict[str, Any]:
        """The step's result as JSON-ready data."""
        return {
            "name": self.name, "attempt": self.attempt, "status": self.status,
            "recorded_outputs": self.recorded_outputs,
            "replayed_outputs": self.replayed_outputs, "divergence": self.divergence,
            "message": self.message, "changes": [c.as_value() for c in self.changes],
            "changes_left_out": self.changes_left_out,
            "causes": [c.as_value() for c in self.causes], "hazards": self.hazards,
            "code": self.code, "resumed_code": self.resumed_code,
        }


@data_class
class ReplayReport:
    """The outcome of replaying one run: ``report.reproduced``, ``report.explain()``."""

    run_id: str
    flow: str
    code: str
    verdict: Verdict
    steps: list[StepResult] = field(default_factory=list)
    #: Why the replay could not run at all (verdict ``error``).
    error: str = ""
    #: Causes that concern the whole run (environment drift).
    causes: list[Cause] = field(default_factory=list)
    #: How many times it was to be replayed in one process, and which time the
    #: steps are from (the first that diverged, else the last).
    repeat: int = 1
    repetition: int = 1
    #: The run pinned no code at all, so its "pinned" replay ran the installed code.
    nothing_pinned: bool = False

    @property
    def reproduced(self) -> bool:
        """Whether every step gave what was recorded (a failure included)."""
        return self.verdict == "reproduced"

    @property
    def code_label(self) -> str:
        """Which code ran: "pinned code", "workdir code", or the installed code when the
        run pinned none (a header never claims pinned code that does not exist)."""
        if self.nothing_pinned:
            return "installed code (none pinned)"
        return f"{self.code} code"

    @property
    def first_divergence(self) -> StepResult | None:
        """The first step that did not reproduce."""
        return next((s for s in self.steps if s.status == "diverged"), None)

    def explain(self) -> str:
        """A plain-text account: the verdict, and where, what and why it diverged.

        Names, messages and values come from stored records (and from code
        that may be hostile), so each goes through :func:`printable`: the
        text never holds a control character, only its visible escape.
        """
        lines = [f"run {printable(self.run_id)} of flow '{printable(self.flow)}', "
                 f"{self.code_label}: {self.verdict}"]
        if self.repeat > 1:
            lines[0] += (f" (replay {self.repetition} of {self.repeat} in one process)"
                         if self.verdict == "diverged" else f" ({self.repeat} times)")
        if self.error:
            lines.append(f"  could not replay: {printable(self.error)}")
        first = self.first_divergence
        if first is not None:
            lines.append(f"  first divergence: step '{printable(first.name)}' "
                         f"({first.divergence})")
            if first.message:
                lines.append(f"    {printable(first.message)}")
            for change in first.changes:  # Change escapes its own path, values and detail
                lines += change.lines("    ")
            if first.changes_left_out:
                lines.append(f"    ... and {first.changes_left_out} more changes")
            lines += [f"    cause: {printable(cause)}" for cause in first.causes]
            lines += [f"    hazard: {printable(hazard)}" for hazard in first.hazards]
        lines += [f"  cause: {printable(cause)}" for cause in self.causes]
        lines += [f"  {line}" for line in self.resumed_lines()]
        for step in self.steps:  # later divergences, and what may not reproduce next time
            if step is not first:
                lines += [f"  cause in {printable(step.name)}: {printable(cause)}"
                          for cause in step.causes]
                lines += [f"  hazard in {printable(step.name)}: {printable(hazard)}"
                          for hazard in step.hazards]
        return "\n".join(lines)

    def resumed_lines(self) -> list[str]:
        """One line per step replayed with the code of a resumed attempt."""
        return [f"step '{printable(step.name)}' ran the code of its attempt {step.attempt} "
                f"(step pin {printable((step.code or '')[:12])}), which the run was resumed "
                "with, not the code it started with" for step in self.steps
                if step.resumed_code]

    def as_value(self) -> dict[str, Any]:
        """The report as JSON-ready data (``pinrun replay --json``)."""
        first = self.first_divergence
        return {
            "run": self.run_id, "flow": self.flow, "code": self.code, "verdict": self.verdict,
            "nothing_pinned": self.nothing_pinned,
            "repeat": self.repeat, "repetition": self.repetition,
            "reproduced": self.reproduced, "error": self.error,
            "first_divergence": first.name if first is not None else None,
            "steps": [s.as_value() for s in self.steps],
            "causes": [c.as_value() for c in self.causes],
            "explanation": self.explain(),
        }
