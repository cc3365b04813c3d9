"""The CI gate: pinrun verify replays many runs and fails when one does not reproduce;
pinrun accept records a new baseline after an intended change."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from pinrun.cli._common import console, progress_bar, store_option, with_store
from pinrun.cli.report_output import ReportFiles, check_folder, report_file_options
from pinrun.safe_text import printable

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store
    from pinrun.verifier.replayer import CodeSource
    from pinrun.verifier.verify import Selection
    from pinrun.world.guards import GuardMode


@click.command(name="verify")
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of this flow.")
@click.option("--tag", metavar="NAME", help="Only the run tagged NAME.")
@click.option("--since", metavar="TIME", help="Only runs started since TIME: 2h, 3d, 1w, "
              "or a UTC date/time.")
@click.option("--sample", type=click.IntRange(min=1), metavar="N",
              help="At most N runs, always the same ones for the same corpus.")
@click.option("--code", type=click.Choice(["workdir", "pinned"]), default="workdir",
              show_default=True, help="workdir: the code on disk (the pre-deploy check); "
              "pinned: the code each run pinned.")
@click.option("--entry", "entries", multiple=True, metavar="MODULE:FLOW",
              help="Where a flow lives now, after a move or rename (repeatable): the runs of "
              "the flow found there replay it. With --code workdir only.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes.")
@click.option("--shard", metavar="I/N", help="Verify only shard I of N (1-based): a CI "
              "matrix of N machines splits the runs without overlap.")
@click.option("--guards", type=click.Choice(["warn", "strict", "off"]), default="warn",
              show_default=True,
              help="Watch the steps for calls that read the world around their context: "
                   "warn names them, strict fails the step, off does not watch (see "
                   "pinrun replay --help).")
@click.option("--allow-world", is_flag=True,
              help="Let the steps' network connections (localhost too) and subprocesses "
                   "through, only noting them. By default a replay refuses them.")
@report_file_options
@click.option("--json", "json_file", metavar="FILE",
              help="Write every run's result as JSON to FILE (- for stdout), with the "
              "shard and selection: what `pinrun report merge` reads.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first run that does not reproduce.")
@store_option
@with_store
def verify_command(store: Store, run_ids: tuple[str, ...], flow_name: str | None,
                   tag: str | None, since: str | None, sample: int | None, code: str,
                   entries: tuple[str, ...], jobs: int, shard: str | None, guards: str,
                   allow_world: bool, junit_xml: str | None, summary: str | None,
                   html: str | None, json_file: str | None, fail_fast: bool) -> None:
    """Replay recorded runs against the code and check that every one reproduces.

    By default every run in the store is replayed with the code on disk: the
    check to run in CI before a deploy. Exit 0 when all reproduced, 1 when
    any diverged or could not be replayed, 3 on a store error.

    \b
    Examples:
      pinrun verify                              # every run, the code on disk
      pinrun verify --flow pricing -j 4 --junit-xml pinrun.xml
      pinrun verify --shard 2/4 --since 30d      # one machine of a 4-way CI matrix
      pinrun verify --shard 2/4 --json shard-2.json   # then: pinrun report merge shard-*.json
      pinrun verify --entry orders.pipeline:flow # after orders/flow.py moved
    """
    from pinrun.cli.inspect_commands import since_prefix
    from pinrun.verifier.ci_reports import ResultsWriter
    from pinrun.verifier.ci_reports.results import KEPT_WHEN_REPRODUCED
    from pinrun.verifier.moved import check_entries_used
    from pinrun.verifier.verify import Selection, parse_shard, run_verification, select_runs

    selection = Selection(
        run_ids=run_ids, flow=flow_name, tag=tag,
        since=since_prefix(since) if since is not None else None, sample=sample,
        shard=parse_shard(shard) if shard is not None else None)
    reports = ReportFiles(junit_xml, summary, html)
    reports.check()
    check_folder("--json", json_file)
    ids = select_runs(store, selection)
    if not ids:
        click.echo("no runs to verify: record some with `pinrun run MODULE:FLOW`"
                   if not (run_ids or flow_name or tag or since or shard)
                   else "no runs match", err=True)
        _report(reports, json_file, selection, code, [], 0)
        return
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    by_flow = _entries(entries, code)
    check_entries_used(store, ids, by_flow)
    # Only the runs that did not reproduce keep their whole report in memory: the
    # others are three fields each, so a large corpus verifies in flat memory.
    results: list[dict[str, Any]] = []
    with ExitStack() as stack, progress_bar(f"verifying {len(ids)} runs") as update:
        writer = None
        if json_file:
            writer = ResultsWriter(
                sys.stdout if json_file == "-" else stack.enter_context(
                    Path(json_file).open("w", encoding="utf-8")),
                shard=selection.shard, selection=_selection_value(selection), code=code,
                selected=len(ids))
        for result in run_verification(
                store, ids, code=cast("CodeSource", code), guards=cast("GuardMode", guards),
                jobs=jobs, fail_fast=fail_fast, progress=update, entries=by_flow,
                allow_world=allow_world):
            if writer is not None:
                writer.add(result)
            results.append(result if result["verdict"] != "reproduced" else
                           {key: result.get(key) for key in KEPT_WHEN_REPRODUCED})
        if writer is not None:
            writer.close()
    exit_code = _report(reports, None, selection, code, results, len(ids),
                        json_to_stdout=json_file == "-")
    if not allow_world:  # what the replayed code left behind (atexit, threads) stays refused
        from pinrun.world.refusal import refuse_at_exit

        refuse_at_exit()
    if exit_code:
        sys.exit(exit_code)


def _selection_value(selection: Selection) -> dict[str, Any]:
    """The selection as the results file records it (the shard is recorded apart)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(selection).items() if key != "shard"}


def _report(reports: ReportFiles, json_file: str | None, selection: Selection, code: str,
            results: list[dict[str, Any]], selected: int, *,
            json_to_stdout: bool = False) -> int:
    """Write the reports of a verification and print its summary; its exit code.
    ``json_file``: a results file to write here too (when nothing was verified)."""
    from pinrun.cli.report_output import print_summary
    from pinrun.verifier.ci_reports import ResultsWriter, Totals
    from pinrun.verifier.ci_reports.results import ordered

    if json_file:
        with ExitStack() as stack:
            writer = ResultsWriter(
                sys.stdout if json_file == "-" else stack.enter_context(
                    Path(json_file).open("w", encoding="utf-8")),
                shard=selection.shard, selection=_selection_value(selection), code=code,
                selected=selected)
            writer.close()
    totals = Totals.of(results, selected)
    results = ordered(results)
    reports.write(results, totals, to_stderr=json_to_stdout or json_file == "-")
    if not json_to_stdout and json_file != "-":
        print_summary(results, totals)
    return totals.exit_code


def _entries(entries: tuple[str, ...], code: str) -> dict[str, str]:
    """Flow name -> where it lives now, from the --entry options (imported here)."""
    from pinrun.cli.run_commands import target_entry
    from pinrun.errors import InputError
    from pinrun.verifier.moved import flows_by_name

    if entries and code == "pinned":
        raise InputError("--entry says where a flow lives on disk now, for --code workdir; "
                         "pinned code loads each flow where its run recorded it: drop --entry")
    return flows_by_name(target_entry(entry) for entry in entries)


@click.command(name="accept")
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--flow", "flow_name", metavar="NAME", help="Every current run of this flow.")
@click.option("--entry", "entries", multiple=True, metavar="MODULE:FLOW",
              help="Where a flow lives now, after a move or rename (repeatable): the runs of "
              "the flow found there are recorded again from it.")
@store_option
@with_store
def accept_command(store: Store, run_ids: tuple[str, ...], flow_name: str | None,
                   entries: tuple[str, ...]) -> None:
    """Accept an intended change: re-record runs with the code on disk as the new baseline.

    Each run's pinned inputs are recorded again with the workdir code, as a
    new run that names the one it replaces; old runs are never changed, and
    `pinrun verify` checks the new ones from then on. Effects, clock and
    randomness are reused from the old run where a step asks for the same
    ones, so the outside world is not called again for answers already
    recorded.

    \b
    Examples:
      pinrun accept 20261123T0130
      pinrun accept --flow pricing        # after an intended change to pricing
      pinrun accept 20261123T0130 --entry orders.pipeline:flow   # it moved
    """
    from rich.text import Text

    from pinrun.verifier.accept import accept
    from pinrun.verifier.moved import check_entries_used
    from pinrun.verifier.verify import Selection, select_runs

    if not run_ids and flow_name is None:
        raise click.UsageError("name the runs to accept, or --flow NAME for all of a flow's")
    ids = select_runs(store, Selection(run_ids=run_ids, flow=flow_name))
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    by_flow = _entries(entries, "workdir")
    check_entries_used(store, ids, by_flow)
    out = console()
    count = 0
    for accepted in accept(store, ids, entries=by_flow):  # each printed as soon as it is recorded
        out.print(Text(f"{printable(accepted.old)} -> {printable(accepted.new.id)} "
                       f"({printable(accepted.new.status)})"))
        count += 1
    out.print(f"accepted {count} run(s) as the new baseline")


COMMANDS = (verify_command, accept_command)
