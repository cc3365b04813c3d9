"""The CI gate: pinrun verify replays many runs and fails when one does not reproduce;
pinrun accept records a new baseline after an intended change."""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from xml.etree import ElementTree

import click

from pinrun.cli._common import console, progress_bar, store_option, with_store
from pinrun.safe_text import printable

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store
    from pinrun.verifier.replayer import CodeSource
    from pinrun.world.guards import GuardMode

EXIT_NOT_REPRODUCED = 1
EXIT_STORE_ERROR = 3
#: Runs that did not reproduce are listed up to this many.
SHOWN = 20


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
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Replay on the Dask cluster whose scheduler is at ADDRESS "
              "(tcp://HOST:PORT), in batches, instead of in local workers (-j): the same "
              "report. Needs the extra: pip install 'pinrun[dask]'.")
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
@click.option("--junit-xml", "junit_xml", metavar="FILE",
              help="Write a JUnit XML report (one test case per run).")
@click.option("--json", "json_file", metavar="FILE",
              help="Write every run's replay report as JSON to FILE (- for stdout).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first run that does not reproduce.")
@store_option
@with_store
def verify_command(store: Store, run_ids: tuple[str, ...], flow_name: str | None,
                   tag: str | None, since: str | None, sample: int | None, code: str,
                   entries: tuple[str, ...], jobs: int, shard: str | None, guards: str,
                   allow_world: bool, junit_xml: str | None, json_file: str | None,
                   fail_fast: bool, dask_address: str | None) -> None:
    """Replay recorded runs against the code and check that every one reproduces.

    By default every run in the store is replayed with the code on disk: the
    check to run in CI before a deploy. Exit 0 when all reproduced, 1 when
    any diverged or could not be replayed, 3 on a store error.

    \b
    Examples:
      pinrun verify                              # every run, the code on disk
      pinrun verify --flow pricing -j 4 --junit-xml pinrun.xml
      pinrun verify --shard 2/4 --since 30d      # one machine of a 4-way CI matrix
      pinrun verify --entry orders.pipeline:flow # after orders/flow.py moved
      pinrun verify --dask tcp://scheduler:8786  # on a Dask cluster
    """
    from pinrun.cli.inspect_commands import since_prefix
    from pinrun.errors import InputError
    from pinrun.verifier.moved import check_entries_used
    from pinrun.verifier.verify import Selection, parse_shard, run_verification, select_runs

    selection = Selection(
        run_ids=run_ids, flow=flow_name, tag=tag,
        since=since_prefix(since) if since is not None else None, sample=sample,
        shard=parse_shard(shard) if shard is not None else None)
    if junit_xml and not Path(junit_xml).resolve().parent.is_dir():
        raise InputError(f"--junit-xml {junit_xml}: its folder does not exist; create it first")
    if json_file and json_file != "-" and not Path(json_file).resolve().parent.is_dir():
        raise InputError(f"--json {json_file}: its folder does not exist; create it first")
    if dask_address is not None and jobs != 1:
        raise InputError(f"--dask {dask_address} replays on the cluster's workers: drop -j "
                         f"{jobs} (the cluster's size decides)")
    ids = select_runs(store, selection)
    if not ids:
        click.echo("no runs to verify: record some with `pinrun run MODULE:FLOW`"
                   if not (run_ids or flow_name or tag or since or shard)
                   else "no runs match", err=True)
        return
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    by_flow = _entries(entries, code)
    check_entries_used(store, ids, by_flow)
    # Only the runs that did not reproduce keep their whole report in memory: the
    # others are three fields each, so a large corpus verifies in flat memory.
    results: list[dict[str, Any]] = []
    with ExitStack() as stack, progress_bar(f"verifying {len(ids)} runs") as update:
        stream = None
        if json_file:
            stream = sys.stdout if json_file == "-" else stack.enter_context(
                Path(json_file).open("w", encoding="utf-8"))
            stream.write("[")
        for index, result in enumerate(run_verification(
                store, ids, code=cast("CodeSource", code), guards=cast("GuardMode", guards),
                jobs=jobs, fail_fast=fail_fast, progress=update, entries=by_flow,
                allow_world=allow_world, dask=dask_address)):
            if stream is not None:
                stream.write(("," if index else "") + "\n" +
                             json.dumps(result, indent=2, sort_keys=True))
            results.append(result if result["verdict"] != "reproduced" else
                           {key: result.get(key) for key in ("run", "flow", "verdict")})
        if stream is not None:
            stream.write("\n]\n")
    if junit_xml:
        _write_junit(Path(junit_xml), results)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        _annotate(results)
    if json_file != "-":
        _summary(results, len(ids))
    if not allow_world:  # what the replayed code left behind (atexit, threads) stays refused
        from pinrun.world.refusal import refuse_at_exit

        refuse_at_exit()
    if any(r.get("store_error") for r in results):
        sys.exit(EXIT_STORE_ERROR)
    if any(r["verdict"] != "reproduced" for r in results) or len(results) < len(ids):
        sys.exit(EXIT_NOT_REPRODUCED)


def _entries(entries: tuple[str, ...], code: str) -> dict[str, str]:
    """Flow name -> where it lives now, from the --entry options (imported here)."""
    from pinrun.cli.run_commands import target_entry
    from pinrun.errors import InputError
    from pinrun.verifier.moved import flows_by_name

    if entries and code == "pinned":
        raise InputError("--entry says where a flow lives on disk now, for --code workdir; "
                         "pinned code loads each flow where its run recorded it: drop --entry")
    return flows_by_name(target_entry(entry) for entry in entries)


def _summary(results: list[dict[str, Any]], selected: int) -> None:
    from rich.table import Column, Table
    from rich.text import Text

    out = console()
    counts = Counter(r["verdict"] for r in results)
    for result in results:
        if result.get("store_error"):  # a damaged store is the one-line error it always is
            click.echo(f"pinrun: error: run {printable(result['run'])}: "
                       f"{printable(result.get('error', ''))}", err=True)
    failing = [r for r in results if r["verdict"] != "reproduced" and not r.get("store_error")]
    if failing:
        # A run id is never cut: at 80 columns the other columns wrap instead.
        table = Table(Column("run", no_wrap=True), Column("flow", overflow="fold"),
                      Column("verdict", no_wrap=True),
                      Column("first divergence", overflow="fold"), box=None, pad_edge=False)
        for result in failing[:SHOWN]:  # ids, names and messages are stored text
            table.add_row(Text(printable(result["run"])),
                          Text(printable(result.get("flow", "-"))),
                          Text(printable(result["verdict"])),
                          Text(printable(_first_problem(result))))
        out.print(table)
        if len(failing) > SHOWN:
            out.print(f"... and {len(failing) - SHOWN} more; --json FILE has them all")
    skipped = selected - len(results)
    runs = "run" if len(results) == 1 else "runs"
    line = (f"verified {len(results)} {runs}: {counts['reproduced']} reproduced, "
            f"{counts['diverged']} diverged, {counts['error']} could not replay")
    if skipped:
        line += f" ({skipped} not run after --fail-fast)"
    ok = counts["reproduced"] == len(results)
    out.print(Text(line, style="bold green" if ok else "bold red"))


def _first_problem(result: dict[str, Any]) -> str:
    if result.get("error"):
        return str(result["error"])
    step = next((s for s in result.get("steps", []) if s["status"] == "diverged"), None)
    if step is None:
        return ""
    # The step's own causes first; else the run's (environment drift, a random seed).
    cause = next((c for c in [*step["causes"], *result.get("causes", [])]), None)
    text = f"{step['name']}: {step['message']}"
    return f"{text} ({cause['kind']}: {cause['message']})" if cause else text


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: object, *, newlines: bool = True) -> str:
    """Text XML 1.0 can hold, and a CI page can show: control characters are escaped.

    :func:`printable` writes escape codes and NUL as ``\\x1b``; what it leaves
    that XML still forbids (nothing, today) becomes '?'.
    """
    return _NOT_XML.sub("?", printable(text, newlines=newlines))


def _write_junit(path: Path, results: list[dict[str, Any]]) -> None:
    """One test case per run, named by flow and run; a failure holds the explanation."""
    failures = sum(r["verdict"] == "diverged" for r in results)
    errors = sum(r["verdict"] == "error" for r in results)
    suite = ElementTree.Element("testsuite", name="pinrun verify", tests=str(len(results)),
                                failures=str(failures), errors=str(errors))
    for result in results:
        case = ElementTree.SubElement(
            suite, "testcase", classname=_xml_text(result.get("flow", ""), newlines=False),
            name=_xml_text(result["run"], newlines=False))
        if result["verdict"] == "diverged":
            failure = ElementTree.SubElement(
                case, "failure", message=_xml_text(_first_problem(result)[:500], newlines=False))
            failure.text = _xml_text(result.get("explanation", ""))
        elif result["verdict"] == "error":
            error = ElementTree.SubElement(
                case, "error", message=_xml_text(str(result["error"])[:500], newlines=False))
            error.text = _xml_text(result.get("explanation", result["error"]))
    path.write_bytes(ElementTree.tostring(suite, encoding="utf-8", xml_declaration=True))


def _annotate(results: list[dict[str, Any]]) -> None:
    """GitHub Actions annotations: one ``::error`` line per run that did not reproduce."""
    for result in results:
        if result["verdict"] == "reproduced":
            continue
        where = ""
        # The place of the first divergence, the step the message describes: a later
        # step's cause would point at one line and describe another.
        step = next((s for s in result.get("steps", []) if s["status"] == "diverged"), None)
        cause = next((c for c in step["causes"] if c.get("file")), None) if step else None
        if cause is not None:
            file = Path(cause["file"])
            if file.is_absolute() and file.is_relative_to(Path.cwd()):
                file = file.relative_to(Path.cwd())  # GitHub wants repository paths
            where = (f" file={_escape(printable(file.as_posix()), in_property=True)},"
                     f"line={_escape(printable(cause['line']), in_property=True)}")
        message = f"pinrun: run {result['run']} {result['verdict']}: {_first_problem(result)}"
        click.echo(f"::error{where}::{_escape(printable(message))}")


def _escape(text: str, *, in_property: bool = False) -> str:
    """Escape a GitHub Actions workflow-command message (or a property: ``:`` and ``,`` too)."""
    escaped = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.replace(":", "%3A").replace(",", "%2C") if in_property else escaped


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
