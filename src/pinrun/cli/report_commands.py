"""pinrun report: reports of verifications made elsewhere (the shards of a CI matrix)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import click

from pinrun.cli.report_output import ReportFiles, check_folder, report_file_options


@click.group(name="report")
def report_group() -> None:
    """Reports of verifications: merge the results files of a CI matrix's shards."""


@report_group.command(name="merge")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@report_file_options
@click.option("--json", "json_file", metavar="FILE",
              help="Write the merged results file (- for stdout), as one `pinrun verify "
              "--json` over every run would.")
def merge_command(files: tuple[str, ...], junit_xml: str | None, summary: str | None,
                  html: str | None, json_file: str | None) -> None:
    """Merge the results files of `pinrun verify --shard I/N --json FILE` into one report.

    The reports and the exit code are those one machine verifying every run
    would give: 0 when all reproduced, 1 when any diverged, could not replay or
    was not run (--fail-fast), 3 when a shard met a store error; 2 when the
    files cannot be read or are not the shards of one verification (another
    split, a shard missing or given twice, a run in two shards).

    \b
    Examples:
      pinrun verify --shard 1/3 --json shard-1.json      # on each machine of the matrix
      pinrun report merge shard-*.json --junit-xml pinrun.xml --summary summary.md \\
          --html pinrun.html
    """
    from pinrun.cli.report_output import print_summary
    from pinrun.verifier.ci_reports import ResultsWriter, merge, read_results_file

    reports = ReportFiles(junit_xml, summary, html)
    reports.check()
    check_folder("--json", json_file)
    shards = [read_results_file(file) for file in files]
    merged = merge(shards)
    if json_file:
        with ExitStack() as stack:
            writer = ResultsWriter(
                sys.stdout if json_file == "-" else stack.enter_context(
                    Path(json_file).open("w", encoding="utf-8")),
                shard=None, selection=dict(shards[0].selection), code=shards[0].code,
                selected=merged.totals.selected)
            for result in merged.results:
                writer.add(result)
            writer.close()
    reports.write(merged.results, merged.totals, to_stderr=json_file == "-")
    if json_file != "-":
        print_summary(merged.results, merged.totals)
    if merged.totals.exit_code:
        sys.exit(merged.totals.exit_code)


COMMANDS = (report_group,)
