"""The Markdown summary (``--summary FILE``, ``$GITHUB_STEP_SUMMARY``): counts, a table of
the runs that did not reproduce, and a collapsed section per run with its causes and diffs.

Stored text (run ids, names, messages, diffs) is escaped where it is inline
(every ASCII punctuation character backslash-escaped, so no ``|``, backtick,
``<`` or ``*`` in it can end a cell, open HTML or change the formatting) and
put in code fences longer than any run of backticks inside it. The whole text
stays under a byte budget (GitHub refuses a step summary over 1 MiB): what does
not fit is left out and a closing line says how many runs were.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from pinrun.safe_text import printable
from pinrun.verifier.ci_reports.results import (
    Result,
    Totals,
    code_diffs,
    failing,
    first_cause,
    first_step,
    ordered,
)

__all__ = ["GITHUB_LIMIT", "LIMIT", "markdown_summary", "md_fenced", "md_inline"]

#: GitHub's limit on one step's summary, in bytes.
GITHUB_LIMIT = 1024 * 1024
#: The budget of a summary: under GitHub's limit with room for the closing line.
LIMIT = GITHUB_LIMIT - 8 * 1024
#: One text in a run's section (a diff, an explanation) is cut to this many characters.
SECTION_TEXT = 32 * 1024

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md_inline(text: object, *, limit: int = 300) -> str:
    """Stored text as inline Markdown that shows as itself, on one line."""
    return _PUNCTUATION.sub(r"\\\1", printable(text, limit=limit))


def md_fenced(text: str, language: str = "") -> str:
    """A fenced code block holding ``text`` verbatim (control characters escaped)."""
    body = printable(text, newlines=True)
    if len(body) > SECTION_TEXT:
        body = body[:SECTION_TEXT] + f"\n... ({len(body) - SECTION_TEXT} characters cut)"
    longest = max((len(run) for run in re.findall("`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{body.rstrip(chr(10))}\n{fence}\n"


def _row(result: Result) -> str:
    step = first_step(result)
    cause = first_cause(result)
    cells = [
        md_inline(result["run"]), md_inline(result.get("flow") or "-"),
        md_inline(result["verdict"]),
        md_inline(step["name"]) if step is not None else "-",
        md_inline(f"{cause['kind']}: {cause['message']}") if cause is not None
        else md_inline(result.get("error") or "-"),
    ]
    return "| " + " | ".join(cells) + " |\n"


def _section(result: Result) -> str:
    """A collapsed ``<details>`` block: summary line in HTML, body in Markdown."""
    step = first_step(result)
    where = f" at step {printable(step['name'], limit=200)}" if step is not None else ""
    title = html.escape(f"{printable(result['run'], limit=200)} "
                        f"({printable(result.get('flow') or '-', limit=200)}): "
                        f"{result['verdict']}{where}")
    parts = [f"<details><summary>{title}</summary>\n\n"]
    if result.get("error"):
        parts.append(f"Could not replay: {md_inline(result['error'], limit=2000)}\n\n")
    if step is not None:
        parts.append(f"First divergence: step {md_inline(step['name'])} "
                     f"({md_inline(step.get('divergence') or '-')}): "
                     f"{md_inline(step.get('message') or '', limit=2000)}\n\n")
    causes = [*(step["causes"] if step is not None else []), *(result.get("causes") or [])]
    for cause in causes:
        place = f" ({md_inline(cause['file'])}:{cause.get('line')})" if cause.get("file") else ""
        parts.append(f"- cause: {md_inline(cause['kind'])}: "
                     f"{md_inline(cause['message'], limit=2000)}{place}\n")
    if causes:
        parts.append("\n")
    for name, diff in code_diffs(result):
        parts.append(f"Code diff of step {md_inline(name)} (pinned -> disk):\n\n")
        parts.append(md_fenced(diff, "diff") + "\n")
    if result.get("explanation"):
        parts.append(md_fenced(str(result["explanation"])) + "\n")
    parts.append("</details>\n\n")
    return "".join(parts)


def markdown_summary(results: Sequence[Result], totals: Totals, *, limit: int = LIMIT,
                     title: str = "pinrun verify") -> str:
    """The summary, at most ``limit`` bytes of UTF-8 (with its closing line)."""
    bad = totals.verified - totals.reproduced
    if totals.verified == 0:
        verdict = "no runs verified"
    elif bad == 0 and not totals.skipped:
        verdict = f"all {totals.verified} runs reproduced"
    else:
        verdict = f"{bad} of {totals.verified} runs did not reproduce"
    head = [f"## {md_inline(title)}: {verdict}\n\n",
            "| selected | reproduced | diverged | could not replay | not run |\n",
            "| ---: | ---: | ---: | ---: | ---: |\n",
            f"| {totals.selected} | {totals.reproduced} | {totals.diverged} | "
            f"{totals.error} | {totals.skipped} |\n\n"]
    text = "".join(head)
    used = len(text.encode())
    runs = failing(ordered(results))
    if not runs:
        return text
    # Room kept for the closing line, whatever is left out.
    budget = limit - 200
    table = ["### Runs that did not reproduce\n\n",
             "| run | flow | verdict | first divergent step | first cause |\n",
             "| --- | --- | --- | --- | --- |\n"]
    used += sum(len(part.encode()) for part in table)
    shown = 0
    for result in runs:
        row = _row(result)
        if used + len(row.encode()) > budget:
            break
        table.append(row)
        used += len(row.encode())
        shown += 1
    table.append("\n")
    sections = []
    detailed = 0
    for result in runs[:shown]:
        section = _section(result)
        if used + len(section.encode()) > budget:
            break
        sections.append(section)
        used += len(section.encode())
        detailed += 1
    text += "".join(table) + "".join(sections)
    if shown < len(runs) or detailed < len(runs):
        text += (f"*{len(runs) - detailed} of {len(runs)} runs that did not reproduce were "
                 f"left out of this summary ({len(runs) - shown} of them from the table) to "
                 f"keep it under GitHub's 1 MiB limit: the JUnit, HTML or JSON report has "
                 f"them all.*\n")
    return text
