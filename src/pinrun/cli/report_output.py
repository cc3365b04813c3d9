"""Writing a verification's reports: the terminal summary, JUnit XML, the Markdown and
HTML reports, and, on GitHub Actions, annotations and the step summary.

``pinrun verify`` and ``pinrun report merge`` share it, so a merge of shards
reports exactly as one machine verifying everything would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pinrun.cli._common import console
from pinrun.safe_text import printable

if TYPE_CHECKING:
    from pinrun.verifier.ci_reports.results import Totals

__all__ = ["ReportFiles", "check_folder", "print_summary", "report_file_options"]

F = TypeVar("F", bound=Callable[..., Any])
#: Runs that did not reproduce are listed on the terminal up to this many.
SHOWN = 20


def report_file_options(func: F) -> F:
    """Add ``--junit-xml FILE``, ``--summary FILE`` and ``--html FILE``."""
    for option in reversed([
        click.option("--junit-xml", "junit_xml", metavar="FILE",
                     help="Write a JUnit XML report (one test case per run, with times)."),
        click.option("--summary", "summary", metavar="FILE",
                     help="Write a Markdown summary (counts, failed runs, their diffs), "
                          "under 1 MiB; also appended to $GITHUB_STEP_SUMMARY when set."),
        click.option("--html", "html", metavar="FILE",
                     help="Write one self-contained HTML report (no server needed)."),
    ]):
        func = option(func)
    return func


def check_folder(option: str, path: str | None) -> None:
    """Refuse an output file whose folder does not exist, before any work is done."""
    from pinrun.errors import InputError

    if path and path != "-" and not Path(path).resolve().parent.is_dir():
        raise InputError(f"{option} {path}: its folder does not exist; create it first")


@dataclass(frozen=True)
class ReportFiles:
    """The report files asked for on the command line."""

    junit_xml: str | None = None
    summary: str | None = None
    html: str | None = None

    def check(self) -> None:
        """Refuse a file whose folder does not exist."""
        for option, path in (("--junit-xml", self.junit_xml), ("--summary", self.summary),
                             ("--html", self.html)):
            check_folder(option, path)

    def write(self, results: Sequence[Mapping[str, Any]], totals: Totals, *,
              environ: Mapping[str, str] | None = None, to_stderr: bool = False) -> None:
        """Write every report asked for; on GitHub Actions also annotate and summarise
        (``to_stderr``: stdout holds JSON, so annotations go to stderr)."""
        from pinrun.verifier.ci_reports import (
            annotation_lines,
            html_report,
            junit_xml,
            markdown_summary,
        )
        from pinrun.verifier.ci_reports.markdown import GITHUB_LIMIT

        environ = os.environ if environ is None else environ
        if self.junit_xml:
            Path(self.junit_xml).write_bytes(junit_xml(results))
        if self.summary:
            Path(self.summary).write_text(markdown_summary(results, totals), encoding="utf-8")
        if self.html:
            Path(self.html).write_text(html_report(results, totals), encoding="utf-8")
        if environ.get("GITHUB_ACTIONS") == "true":
            for line in annotation_lines(results, Path.cwd()):
                click.echo(line, err=to_stderr)
        step_summary = environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            target = Path(step_summary)
            # The limit is the whole step's: what earlier commands of the step wrote counts.
            used = target.stat().st_size if target.is_file() else 0
            room = GITHUB_LIMIT - used - 1024
            if room > 1024:
                with target.open("a", encoding="utf-8") as stream:
                    stream.write(markdown_summary(results, totals, limit=room))


def print_summary(results: Sequence[Mapping[str, Any]], totals: Totals) -> None:
    """The terminal's account: store errors, a table of the runs that did not reproduce
    (the first :data:`SHOWN`), and the counts."""
    from rich.table import Column, Table
    from rich.text import Text

    from pinrun.verifier.ci_reports.results import failing, first_problem

    out = console()
    for result in results:
        if result.get("store_error"):  # a damaged store is the one-line error it always is
            click.echo(f"pinrun: error: run {printable(result['run'])}: "
                       f"{printable(result.get('error', ''))}", err=True)
    shown = [r for r in failing(results) if not r.get("store_error")]
    if shown:
        # A run id is never cut: at 80 columns the other columns wrap instead.
        table = Table(Column("run", no_wrap=True), Column("flow", overflow="fold"),
                      Column("verdict", no_wrap=True),
                      Column("first divergence", overflow="fold"), box=None, pad_edge=False)
        for result in shown[:SHOWN]:  # ids, names and messages are stored text
            table.add_row(Text(printable(result["run"])),
                          Text(printable(result.get("flow") or "-")),
                          Text(printable(result["verdict"])),
                          Text(printable(first_problem(result))))
        out.print(table)
        if len(shown) > SHOWN:
            out.print(f"... and {len(shown) - SHOWN} more; --json FILE has them all")
    ok = totals.reproduced == totals.verified and not totals.skipped
    out.print(Text(totals.line(), style="bold green" if ok else "bold red"))
