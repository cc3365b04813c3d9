"""Commands that replay recorded runs: replay."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

import click

from pinrun.cli._common import console, json_option, print_json, store_option, with_store

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store
    from pinrun.guards import GuardMode
    from pinrun.verifier.replayer import CodeSource
    from pinrun.verifier.report import ReplayReport

EXIT_DIVERGED = 1


@click.command(name="replay")
@click.argument("run_id", metavar="RUN")
@click.option("--code", type=click.Choice(["pinned", "workdir"]), default="pinned",
              show_default=True,
              help="pinned: the code the run pinned, from the store (never from disk); "
                   "workdir: the code on disk now (the pre-deploy check).")
@click.option("--guards", type=click.Choice(["warn", "strict", "off"]), default="warn",
              show_default=True,
              help="Watch the steps for calls around their context (time, random, uuid, "
                   "os.environ, sockets, subprocesses): warn names them, strict fails the "
                   "step, off does not watch.")
@json_option
@store_option
@with_store
def replay_command(store: Store, run_id: str, code: str, guards: str, as_json: bool) -> None:
    """Replay RUN and check that every step gives what was recorded.

    Inputs, clock, randomness and effects come from the recording (effect
    functions are not called). Each step's outputs are compared by digest;
    the first divergent step is shown with a diff of its outputs and the
    likely causes: a call around the context (time.time(), random.random(),
    os.environ...) with its file and line, code drift, environment drift,
    input mutation, changed module state, an error with its file and line.
    A failed run reproduces when the same step fails with the same error.
    Runs under the hash seed the run recorded.

    \b
    Examples:
      pinrun replay 20261123T0130                 # the pinned code
      pinrun replay 20261123T0130 --code workdir  # does the new code still agree?

    Exit code 0 reproduced, 1 diverged (or could not replay), 3 store error.
    """
    from pinrun.verifier.replayer import replay

    report = replay(run_id, store=store, code=cast("CodeSource", code),
                    guards=cast("GuardMode", guards))
    if as_json:
        print_json(report.as_value())
    else:
        _print(report)
    if not report.reproduced:
        sys.exit(EXIT_DIVERGED)


def _print(report: ReplayReport) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    style = {"reproduced": "bold green", "diverged": "bold red", "error": "bold red"}
    out.print(Text.assemble(f"run {report.run_id}  flow {report.flow}  {report.code} code: ",
                            (report.verdict, style[report.verdict])))
    if report.error:
        out.print(Text(f"could not replay: {report.error}", style="red"))
        return
    table = Table("step", "attempt", "result", "outputs (recorded)", "outputs (replayed)",
                  box=None, pad_edge=False)
    for step in report.steps:
        result = step.status if step.divergence is None else f"diverged ({step.divergence})"
        table.add_row(Text(step.name), str(step.attempt or "-"),
                      Text(result, style="green" if step.status == "match" else
                           "red" if step.status == "diverged" else "dim"),
                      (step.recorded_outputs or "-")[:8], (step.replayed_outputs or "-")[:8])
    out.print(table)
    first = report.first_divergence
    if first is None:
        return
    out.print(Text(f"\nfirst divergence: step {first.name!r}: {first.message}", style="bold"))
    for change in first.changes:
        out.print(Text(f"  {change}"))
    if first.changes_left_out:
        out.print(f"  ... and {first.changes_left_out} more changes")
    for cause in [*first.causes, *report.causes]:
        out.print(Text(f"cause: {cause}", style="yellow"))
        if cause.detail:
            out.print(Text(cause.detail.rstrip("\n")))
    for hazard in first.hazards:
        out.print(Text(f"hazard: {hazard}", style="yellow"))


COMMANDS = (replay_command,)
