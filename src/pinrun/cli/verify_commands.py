"""The CI gate: pinrun verify replays many runs and fails when one does not reproduce;
pinrun accept records a new baseline after an intended change."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from pinrun.cli._common import (
    check_json_file,
    console,
    json_file_option,
    json_option,
    print_json,
    progress_bar,
    store_option,
    with_store,
)
from pinrun.cli.report_output import ReportFiles, report_file_options
from pinrun.errors import InputError
from pinrun.safe_text import printable

#: Exit code of a verification or acceptance that met a damaged store.
EXIT_STORE_ERROR = 3

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store
    from pinrun.verifier.accept import AcceptPlan
    from pinrun.verifier.replayer import CodeSource
    from pinrun.verifier.verify import Selection
    from pinrun.world.guards import GuardMode


@click.command(name="verify")
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of this flow.")
@click.option("--tag", metavar="NAME", help="Only the runs carrying the tag NAME "
              "(runs replaced by `pinrun accept` left out).")
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
@click.option("--remote", "remote_name", metavar="NAME|URL",
              help="Verify runs of a remote: the selection (and --shard) is made on the "
                   "remote, and only those runs and the records this store lacks are "
                   "pulled first (s3://BUCKET/PREFIX, a folder, or a remote's name).")
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
@report_file_options
@json_file_option("Write every run's result as JSON to FILE, with the shard and selection: "
                  "what `pinrun report merge` reads.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first run that does not reproduce.")
@click.option("--allow-empty", is_flag=True,
              help="Pass (exit 0) when nothing is selected. By default an empty selection "
                   "is an error (exit 2): a gate that checked nothing must not pass unseen.")
@click.option("--allow-unsigned", is_flag=True,
              help="With --code pinned: run the pinned code of runs pulled from a remote "
                   "even though no key this store trusts signed them.")
@store_option
@with_store
def verify_command(store: Store, run_ids: tuple[str, ...], flow_name: str | None,
                   tag: str | None, since: str | None, sample: int | None, code: str,
                   entries: tuple[str, ...], jobs: int, shard: str | None, guards: str,
                   allow_world: bool, junit_xml: str | None, summary: str | None,
                   html: str | None, json_file: str | None, fail_fast: bool,
                   allow_empty: bool, allow_unsigned: bool, remote_name: str | None,
                   dask_address: str | None) -> None:
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
      pinrun verify --dask tcp://scheduler:8786  # on a Dask cluster
    """
    if dask_address is None:  # local workers: their tracker starts beside the work below
        from pinrun.world.processes import start_pool_support

        start_pool_support()
    from pinrun.cli.inspect_commands import since_prefix
    from pinrun.verifier.ci_reports import ResultsWriter
    from pinrun.verifier.moved import check_entries_used
    from pinrun.verifier.verify import (
        Selection,
        parse_shard,
        run_verification,
        select_runs,
        why_empty,
    )

    selection = Selection(
        run_ids=run_ids, flow=flow_name, tag=tag,
        since=since_prefix(since) if since is not None else None, sample=sample,
        shard=parse_shard(shard) if shard is not None else None)
    reports = ReportFiles(junit_xml, summary, html)
    reports.check()
    check_json_file(json_file, store)
    if dask_address is not None and jobs != 1:
        raise InputError(f"--dask {dask_address} replays on the cluster's workers: drop -j "
                         f"{jobs} (the cluster's size decides)")
    if remote_name is not None:
        ids, remote_url = _pull_selection(store, remote_name, selection)
    else:
        ids, remote_url = select_runs(store, selection), None
    if not ids:
        # The (empty) report files are still written, so CI's report step finds them;
        # then the gate fails (exit 2) unless --allow-empty says an empty gate passes.
        empty = (why_empty(store, selection) if remote_url is None else
                 f"no run on {remote_url} matches the selection")
        _report(reports, json_file, selection, code, [], 0, quiet=True)
        if not allow_empty:
            raise InputError(f"nothing to verify: {empty}. A gate that checked nothing "
                             "fails; pass --allow-empty where an empty selection may pass")
        click.echo(f"pinrun: nothing to verify, and --allow-empty lets that pass: "
                   f"{printable(empty)}", err=True)
        return
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    by_flow = _entries(entries, code)
    if ids:  # an empty shard's --entry is not a typo
        check_entries_used(store, ids, by_flow)
    if code == "pinned" and not allow_unsigned:  # one clear refusal before any replay
        from pinrun.remote.origin import check_trusted

        for run_id in ids:
            check_trusted(store, run_id)
    # Only the runs that did not reproduce keep their whole report in memory: the
    # others are a few fields each, so a large corpus verifies in flat memory.
    results: list[Mapping[str, Any]] = []
    with ExitStack() as stack, progress_bar(f"verifying {len(ids)} runs") as update:
        writer = None
        if json_file:
            writer = ResultsWriter(
                sys.stdout if json_file == "-" else stack.enter_context(
                    Path(json_file).open("w", encoding="utf-8")),
                shard=selection.shard, selection=_selection_value(selection), code=code,
                selected=len(ids))
        # Each run's result comes as data, made by the worker that replayed it; a
        # reproduced run's comes without its steps unless the results file wants them.
        for value in run_verification(
                store, ids, code=cast("CodeSource", code), guards=cast("GuardMode", guards),
                jobs=jobs, fail_fast=fail_fast, progress=_now_and_then(update),
                entries=by_flow, allow_world=allow_world, allow_unsigned=allow_unsigned,
                dask=dask_address, brief=writer is None):
            if writer is not None:
                writer.add(value)
            brief = _Reproduced.of(value)
            results.append(brief if brief is not None else value)
        if writer is not None:
            writer.close()
    exit_code = _report(reports, None, selection, code, results, len(ids),
                        json_to_stdout=json_file == "-")
    if not allow_world:  # what the replayed code left behind (atexit, threads) stays refused
        from pinrun.world.refusal import refuse_at_exit

        refuse_at_exit()
    if exit_code:
        sys.exit(exit_code)


class _Reproduced(Mapping[str, Any]):
    """A reproduced run's result as the reports read it (the fields of
    ``KEPT_WHEN_REPRODUCED``), in a fifth of a dict's memory: a corpus of many
    runs keeps one per run until the reports are written."""

    __slots__ = ("flow", "run", "seconds")

    def __init__(self, run: str, flow: str, seconds: float) -> None:
        self.run = run
        self.flow = sys.intern(flow)  # the same few names, run after run
        self.seconds = seconds

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> _Reproduced | None:
        """A run's result (:meth:`RunResult.as_value` data) in brief, or None when it
        did not reproduce."""
        if value["verdict"] != "reproduced":
            return None
        return cls(value["run"], value["flow"], value["seconds"])

    def __getitem__(self, key: str) -> Any:
        if key == "verdict":
            return "reproduced"
        if key in self.__slots__:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        from pinrun.verifier.ci_reports.results import KEPT_WHEN_REPRODUCED

        return iter(KEPT_WHEN_REPRODUCED)

    def __len__(self) -> int:
        return 4


#: Seconds between two redraws of the progress bar (a redraw costs ~20 us).
_PROGRESS_EVERY = 0.1


def _now_and_then(update: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """``update``, called at most every :data:`_PROGRESS_EVERY` seconds, and at the end."""
    last = -_PROGRESS_EVERY

    def throttled(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done >= total or now - last >= _PROGRESS_EVERY:
            last = now
            update(done, total)

    return throttled


def _pull_selection(store: Store, remote_name: str,
                    selection: Selection) -> tuple[list[str], str]:
    """Select on a remote, pull what the selected runs need; their ids and the remote's URL."""
    from pinrun.remote.remotes import open_remote
    from pinrun.remote.selection import RemoteSelection, select_remote_runs
    from pinrun.remote.transfer import pull_runs

    remote = open_remote(store.path, remote_name)
    catalog = remote.catalog()
    runs = select_remote_runs(catalog, RemoteSelection(
        selection.run_ids, selection.flow, selection.tag, selection.since, selection.shard,
        everything=True))
    if selection.sample is not None:
        runs = runs[: selection.sample]
    with progress_bar(f"pulling {len(runs)} runs") as update:
        report = pull_runs(store, remote, runs, update, catalog)
    for run_id in report.kept_local:
        click.echo(f"pinrun: warning: run {run_id} differs here from the remote's; the "
                   "record here is verified", err=True)
    if report.runs:
        click.echo(f"pulled {len(report.runs)} runs ({report.objects} records) from "
                   f"{printable(remote.url)}", err=True)
    return [run.id for run in runs], remote.url


def _selection_value(selection: Selection) -> dict[str, Any]:
    """The selection as the results file records it (the shard is recorded apart)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(selection).items() if key != "shard"}


def _report(reports: ReportFiles, json_file: str | None, selection: Selection, code: str,
            results: list[Mapping[str, Any]], selected: int, *,
            json_to_stdout: bool = False, quiet: bool = False) -> int:
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
    if not (json_to_stdout or quiet) and json_file != "-":
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
@click.option("--flow", "flow_name", metavar="NAME",
              help="The current runs of this flow that do not reproduce with the code on "
                   "disk (every one with --all).")
@click.option("--all", "everything", is_flag=True,
              help="Re-record every selected run, even those that reproduce; alone, every "
                   "current run in the store.")
@click.option("--dry-run", is_flag=True,
              help="Say what accepting would do with each run, and change nothing.")
@click.option("--entry", "entries", multiple=True, metavar="MODULE:FLOW",
              help="Where a flow lives now, after a move or rename (repeatable): the runs of "
              "the flow found there are recorded again from it.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes for the replays that find what does not reproduce.")
@json_option
@store_option
@with_store
def accept_command(store: Store, run_ids: tuple[str, ...], flow_name: str | None,
                   everything: bool, dry_run: bool, entries: tuple[str, ...], jobs: int,
                   as_json: bool) -> None:
    """Accept an intended change: re-record runs with the code on disk as the new baseline.

    Each run's pinned inputs are recorded again with the workdir code, as a
    new run that names the one it replaces; old runs are never changed, and
    `pinrun verify` checks the new ones from then on. Effects, clock and
    randomness are reused from the old run where a step asks for the same
    ones, so the outside world is not called again for answers already
    recorded. The new run carries the old one's tags.

    Accepting is idempotent: a run accepted before is not recorded again
    ("already accepted"). Runs named by id are recorded again; --flow first
    replays its runs and records only those that do not reproduce (--all:
    every one). --dry-run prints the plan and writes nothing.

    \b
    Examples:
      pinrun accept 20261123T0130
      pinrun accept --flow pricing --dry-run  # what an intended change to pricing needs
      pinrun accept --flow pricing -j 4       # re-record the runs that diverge
      pinrun accept --flow pricing --all      # re-record every run of pricing
      pinrun accept 20261123T0130 --entry orders.pipeline:flow   # it moved
    """
    from rich.text import Text

    from pinrun.verifier.accept import accept, plan_accept
    from pinrun.verifier.moved import check_entries_used
    from pinrun.verifier.verify import Selection, select_runs

    if not run_ids and flow_name is None and not everything:
        raise click.UsageError("name the runs to accept, or --flow NAME for a flow's runs "
                               "that do not reproduce, or --all for every run")
    ids = select_runs(store, Selection(run_ids=run_ids, flow=flow_name))
    if not ids:
        raise InputError("nothing to accept: the store holds no current runs"
                         if not run_ids and flow_name is None else
                         f"nothing to accept: no current run is of flow {flow_name!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    by_flow = _entries(entries, "workdir")
    check_entries_used(store, ids, by_flow)
    # Named runs are what the user asked for; a flow's runs only where they diverge.
    check = not run_ids and not everything
    with progress_bar(f"replaying {len(ids)} runs") if check else nullcontext():
        plans = plan_accept(store, ids, check=check, jobs=jobs, entries=by_flow)
    to_record = [plan.run for plan in plans if plan.action == "record"]
    rows = {plan.run: _plan_row(plan) for plan in plans}
    out = console()
    if not dry_run:
        for accepted in accept(store, to_record, entries=by_flow):  # each shown when recorded
            rows[accepted.old].update(new=accepted.new.id, status=accepted.new.status)
            if not as_json:
                out.print(Text(f"{printable(accepted.old)} -> {printable(accepted.new.id)} "
                               f"({printable(accepted.new.status)})"))
    unreadable = [plan for plan in plans if plan.action == "unreadable"]
    if as_json:
        print_json(list(rows.values()))
    else:
        _print_plan(plans, dry_run)
        if dry_run:
            out.print(f"would accept {len(to_record)} run(s) as the new baseline; nothing "
                      "changed (--dry-run)")
        else:
            out.print(f"accepted {len(to_record)} run(s) as the new baseline")
    if unreadable:
        sys.exit(EXIT_STORE_ERROR)


def _plan_row(plan: AcceptPlan) -> dict[str, Any]:
    """One run's line in ``accept --json``."""
    return {"run": plan.run, "action": plan.action, "reason": plan.reason,
            "baseline": plan.baseline, "new": None, "status": None}


def _print_plan(plans: list[AcceptPlan], dry_run: bool) -> None:
    """The runs left as they are, and why (with --dry-run, the ones to record too)."""
    for plan in plans:
        run = printable(plan.run)
        if plan.action == "accepted":
            line = f"{run} already accepted (baseline {printable(plan.baseline or '?')})"
        elif plan.action == "reproduces":
            line = f"{run} reproduces with the code on disk: kept"
        elif plan.action == "unreadable":
            line = f"{run} cannot be read, not accepted: {printable(plan.reason)}"
        elif dry_run:
            line = f"{run} would be recorded again ({printable(plan.reason)})"
        else:
            continue  # shown as it was recorded
        click.echo(line)  # one line per run, never wrapped: scripts grep it


COMMANDS = (verify_command, accept_command)
