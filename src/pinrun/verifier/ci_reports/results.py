"""Reading verify results for a report: counts, the first divergence, its causes and code.

A result is what ``pinrun verify --json`` writes for one run (the value of
:meth:`pinrun.verifier.worker.RunResult.as_value`); a run that reproduced may
be kept as a few fields only (``run``, ``flow``, ``verdict``, ``seconds``).
Results read back from a shard file were checked by
:mod:`pinrun.verifier.ci_reports.shard_file` first, so every field read here has
the type it should; what is missing reads as empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["KEPT_WHEN_REPRODUCED", "Location", "Totals", "code_diffs", "code_location", "failing",
           "first_cause", "first_problem", "first_step", "located_cause", "ordered", "seconds"]

#: The fields a reproduced run keeps in memory (and in a report).
KEPT_WHEN_REPRODUCED = ("run", "flow", "verdict", "seconds")

Result = Mapping[str, Any]
_R = TypeVar("_R", bound=Mapping[str, Any])


@dataclass(frozen=True)
class Totals:
    """How many runs were selected, and how each verified one ended."""

    selected: int
    reproduced: int = 0
    diverged: int = 0
    error: int = 0
    #: Errors that are the store's (damaged or missing objects).
    store_errors: int = 0

    @classmethod
    def of(cls, results: Iterable[Result], selected: int) -> Totals:
        """Count ``results`` (of ``selected`` runs; fewer after ``--fail-fast``)."""
        counts = {"reproduced": 0, "diverged": 0, "error": 0}
        store_errors = 0
        for result in results:
            counts[result["verdict"]] += 1
            store_errors += bool(result.get("store_error"))
        return cls(selected, counts["reproduced"], counts["diverged"], counts["error"],
                   store_errors)

    @property
    def verified(self) -> int:
        """Runs with a result."""
        return self.reproduced + self.diverged + self.error

    @property
    def skipped(self) -> int:
        """Selected runs never replayed (``--fail-fast`` stopped first)."""
        return max(self.selected - self.verified, 0)

    @property
    def exit_code(self) -> int:
        """3 on a store error, 1 when a run did not reproduce or was not run, else 0."""
        if self.store_errors:
            return 3
        return 1 if self.diverged or self.error or self.skipped else 0

    def line(self) -> str:
        """``verified 3 runs: 2 reproduced, 1 diverged, 0 could not replay``."""
        runs = "run" if self.verified == 1 else "runs"
        text = (f"verified {self.verified} {runs}: {self.reproduced} reproduced, "
                f"{self.diverged} diverged, {self.error} could not replay")
        if self.skipped:
            text += f" ({self.skipped} not run after --fail-fast)"
        return text


def ordered(results: Iterable[_R]) -> list[_R]:
    """Results in the order every report lists them: by run id (so one machine's report
    and a merge of shards list the same runs in the same order)."""
    return sorted(results, key=lambda result: str(result["run"]))


def seconds(result: Result) -> float:
    """How long the run's replay took (0 when not measured)."""
    value = result.get("seconds", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def first_step(result: Result) -> Mapping[str, Any] | None:
    """The first step that diverged, or None."""
    return next((step for step in result.get("steps") or [] if step["status"] == "diverged"),
                None)


def first_cause(result: Result) -> Mapping[str, Any] | None:
    """The first step's first cause; else the run's (environment drift, a random seed)."""
    step = first_step(result)
    return next(iter([*(step["causes"] if step else []), *(result.get("causes") or [])]), None)


def first_problem(result: Result) -> str:
    """One line: the error, or the first divergent step, its message and first cause."""
    if result.get("error"):
        return str(result["error"])
    step = first_step(result)
    if step is None:
        return ""
    cause = first_cause(result)
    text = f"{step['name']}: {step['message']}"
    return f"{text} ({cause['kind']}: {cause['message']})" if cause else text


def code_diffs(result: Result) -> list[tuple[str, str]]:
    """(step name, source diff) for each code-drift cause of a diverged step, the first
    divergent step first; a diff shared by several steps is given once."""
    seen: set[str] = set()
    found = []
    for step in result.get("steps") or []:
        if step["status"] != "diverged":
            continue
        for cause in step["causes"]:
            detail = cause.get("detail") or ""
            if cause["kind"] == "code drift" and detail and detail not in seen:
                seen.add(detail)
                found.append((str(step["name"]), detail))
    return found


@dataclass(frozen=True)
class Location:
    """A file (as the cause gives it) and a line."""

    file: str
    line: int | None


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def code_location(diff: str) -> Location | None:
    """The first changed line of the code on disk in a unified source diff (the path the
    diff names after its ``disk/`` label, relative to the project); None when none."""
    path: str | None = None
    line = 0
    in_hunk = False
    for text in diff.splitlines():
        if text.startswith("+++ "):
            path = text[4:].strip()
            path = path.split("/", 1)[1] if "/" in path else path  # "disk/pkg/a.py"
            in_hunk = False
            continue
        match = _HUNK.match(text)
        if match:
            line, in_hunk = int(match.group(1)), True
            continue
        if not in_hunk or path is None:
            continue
        if text.startswith(("+", "-")):
            # A line only removed on disk: the line now where it was.
            return Location(path, max(line, 1))
        line += 1
    return None


def located_cause(step: Mapping[str, Any]) -> tuple[Mapping[str, Any], Location] | None:
    """The step's first cause with a place: its own file and line, or, for code drift,
    the first line of the code on disk that differs from the pinned code."""
    for cause in step["causes"]:
        if cause.get("file"):
            line = cause.get("line")
            return cause, Location(str(cause["file"]), line if isinstance(line, int) else None)
        if cause["kind"] == "code drift" and cause.get("detail"):
            where = code_location(cause["detail"])
            if where is not None:
                return cause, where
    return None


def failing(results: Sequence[_R]) -> list[_R]:
    """The results of runs that did not reproduce."""
    return [result for result in results if result["verdict"] != "reproduced"]
