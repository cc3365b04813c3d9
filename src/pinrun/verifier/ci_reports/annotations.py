"""GitHub Actions annotations: one ``::error`` workflow command per run that did not
reproduce, at the file and line of its first divergence's first located cause (for code
drift, the first line on disk that differs from the pinned code)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pinrun.safe_text import printable
from pinrun.verifier.ci_reports.results import (
    Result,
    first_problem,
    first_step,
    located_cause,
    ordered,
)

__all__ = ["annotation_lines", "escape_command"]


def escape_command(text: str, *, in_property: bool = False) -> str:
    """Escape a GitHub Actions workflow-command message (or a property: ``:`` and ``,`` too)."""
    escaped = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.replace(":", "%3A").replace(",", "%2C") if in_property else escaped


def annotation_lines(results: Sequence[Result], cwd: Path) -> list[str]:
    """The ``::error`` lines, paths relative to ``cwd`` (GitHub wants repository paths)."""
    lines = []
    for result in ordered(results):
        if result["verdict"] == "reproduced":
            continue
        where = ""
        # The place of the first divergence, the step the message describes: a later
        # step's cause would point at one line and describe another.
        step = first_step(result)
        found = located_cause(step) if step is not None else None
        if found is not None:
            location = found[1]
            file = Path(location.file)
            if file.is_absolute() and file.is_relative_to(cwd):
                file = file.relative_to(cwd)
            where = f" file={escape_command(printable(file.as_posix()), in_property=True)}"
            if location.line is not None:
                where += f",line={location.line}"
        message = f"pinrun: run {result['run']} {result['verdict']}: {first_problem(result)}"
        lines.append(f"::error{where}::{escape_command(printable(message))}")
    return lines
