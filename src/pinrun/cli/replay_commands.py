"""Commands that replay or compare recorded runs: replay, diff."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

import click

from pinrun.cli._common import console, json_option, print_json, store_option, with_store
from pinrun.safe_text import printable

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store
    from pinrun.verifier.perturb import Perturbation
    from pinrun.verifier.replayer import CodeSource
    from pinrun.verifier.report import ReplayReport
    from pinrun.world.guards import GuardMode

EXIT_DIVERGED = 1


@click.command(name="replay")
@click.argument("run_id", metavar="RUN")
@click.option("--code", type=click.Choice(["pinned", "workdir"]), default="pinned",
              show_default=True,
              help="pinned: the code the run pinned, from the store (never from disk); "
                   "workdir: the code on disk now (the pre-deploy check).")
@click.option("--entry", metavar="MODULE:FLOW",
              help="With --code workdir: where the recorded flow lives now, after a move or "
                   "rename (MODULE:FLOW or path/to/file.py:FLOW). It must have the steps the "
                   "run recorded. Pinned code needs none (it holds the old module).")
@click.option("--guards", type=click.Choice(["warn", "strict", "off"]), default="warn",
              show_default=True,
              help="Watch the steps for calls that read the world around their context "
                   "(the clock, randomness and unseeded generators, uuids, the process's "
                   "identity, the working folder and temp names, os.environ, files read "
                   "and folders listed): warn names them with the project's line, strict "
                   "fails the step there, off does not watch (the network and "
                   "subprocesses are still refused: --allow-world).")
@click.option("--allow-world", is_flag=True,
              help="Let the steps' network connections (localhost too) and subprocesses "
                   "through, only noting them. By default a replay refuses them inside the "
                   "step and names the call as the cause.")
@click.option("--allow-unsigned", is_flag=True,
              help="Run the pinned code of a run pulled from a remote even though no key "
                   "this store trusts signed it (this command only).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, metavar="N",
              help="Replay N times in this process with the code loaded once, as a "
                   "long-running worker would: state a run leaves behind shows.")
@click.option("--perturb", metavar="KINDS",
              help="Also replay in fresh processes, each with one condition changed, and "
                   "say which variation changed the outcome: hashseed, tz, locale, home "
                   "(an empty HOME), umask, cwd (another working folder), fileorder "
                   "(directory listings reversed), hostname; comma-separated, or all.")
@click.option("--step", "debug_step", metavar="NAME",
              help="With --pdb: the step to stop in.")
@click.option("--pdb", "use_pdb", is_flag=True,
              help="Stop in the debugger at the start of --step NAME, with the run's "
                   "code and that step's exact recorded inputs.")
@json_option
@store_option
@with_store
def replay_command(store: Store, run_id: str, code: str, entry: str | None, guards: str,
                   allow_world: bool, allow_unsigned: bool, repeat: int, perturb: str | None,
                   debug_step: str | None, use_pdb: bool, as_json: bool) -> None:
    """Replay RUN and check that every step gives what was recorded.

    Inputs, clock, randomness and effects come from the recording (effect
    functions are not called). Each step's outputs are compared by digest;
    the first divergent step is shown with a diff of its outputs and the
    likely causes: a call around the context (time.time(), random.random(),
    os.environ...) with its file and line, code drift, environment drift,
    input mutation, changed module state, an error with its file and line.
    A failed run reproduces when the same step fails with the same error.
    Runs under the hash seed the run recorded. A network connection or a
    subprocess a step starts is refused (the step fails, the call is named
    with its file and line) unless --allow-world.

    \b
    Examples:
      pinrun replay 20261123T0130                 # the pinned code
      pinrun replay 20261123T0130 --code workdir  # does the new code still agree?
      pinrun replay 20261123T0130 --code workdir --entry orders.pipeline:flow  # moved
      pinrun replay 20261123T0130 --perturb hashseed,tz,locale --repeat 3
      pinrun replay 20261123T0130 --step price --pdb   # forensics, after an incident

    Exit code 0 reproduced, 1 diverged (or could not replay), 2 bad input (an
    --entry that does not import or whose flow has other steps), 3 store error.
    """
    from pinrun.cli.run_commands import load_flow
    from pinrun.engine.records import load_run, recorded_hash_seed
    from pinrun.errors import InputError
    from pinrun.verifier.moved import check_same_steps
    from pinrun.verifier.perturb import check_kinds
    from pinrun.verifier.perturb import perturb as run_perturbations
    from pinrun.verifier.replayer import replay

    if use_pdb != (debug_step is not None):
        raise InputError("--pdb and --step NAME go together: pinrun replay RUN --step NAME --pdb")
    kinds = [kind.strip() for kind in perturb.split(",") if kind.strip()] if perturb else []
    check_kinds(kinds)  # before the replay, not after it
    if entry is not None and kinds:
        raise InputError("--perturb replays in fresh processes from the run's recorded entry; "
                         "it does not take --entry yet")
    if entry is not None and code == "pinned":
        raise InputError("--entry says where the flow lives on disk now, for --code workdir; "
                         "pinned replay loads the flow from the run's pinned code, where it "
                         "was recorded: drop --entry, or add --code workdir")
    # The run's record and its recorded hash seed are checked before anything
    # re-executes: a damaged one is one line and exit 3, not a dying interpreter.
    run = load_run(store, run_id)
    recorded_hash_seed(store, run)
    flow = None
    if entry is not None:
        flow = load_flow(entry)
        check_same_steps(store, run, flow, f"--entry {entry}")
    report = replay(run_id, store=store, code=cast("CodeSource", code), flow=flow,
                    guards=cast("GuardMode", guards), repeat=repeat, debug_step=debug_step,
                    allow_world=allow_world, allow_unsigned=allow_unsigned)
    variations = run_perturbations(store, report.run_id, kinds, code=code, guards=guards,
                                   allow_world=allow_world,
                                   allow_unsigned=allow_unsigned) if kinds else []
    if as_json:
        print_json({**report.as_value(),
                    "perturbations": [v.as_value() for v in variations]})
    else:
        _print(report)
        _print_perturbations(variations, report.verdict)
    if not allow_world:  # what the replayed code left behind (atexit, threads) stays refused
        from pinrun.world.refusal import refuse_at_exit

        refuse_at_exit()
    if not report.reproduced or any(v.verdict != report.verdict for v in variations):
        sys.exit(EXIT_DIVERGED)


def _print_perturbations(variations: list[Perturbation], plain: str) -> None:
    if not variations:
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("perturbation", "verdict", "first divergence", box=None, pad_edge=False)
    for variation in variations:
        table.add_row(Text(printable(variation.change)), Text(variation.verdict, style=(
            "green" if variation.verdict == "reproduced" else "red")),
            Text(printable(variation.first_divergence or "-")))
    out = console()
    out.print(table)
    # What a variation changed is measured against the plain replay's outcome.
    changed = [v for v in variations if v.verdict != plain]
    for variation in changed:  # which one diverged, and its diff
        where = f" at step '{printable(variation.first_divergence)}'" \
            if variation.first_divergence else ""
        out.print(Text(f"\nunder {printable(variation.change)} ({variation.kind}): "
                       f"{variation.verdict}{where}", style="bold"))
        for line in _explanation_lines(variation.explanation):
            out.print(Text(line), soft_wrap=True)  # long values: the terminal wraps
    if changed:
        out.print(Text(f"the outcome depends on: {', '.join(v.kind for v in changed)} (a "
                       "hidden input the recording does not pin)", style="bold red"))


#: A variation's explanation is shown in at most this many lines.
EXPLANATION_LINES = 60


def _explanation_lines(explanation: str) -> list[str]:
    """A variation's report (from its own process) below its heading: escaped, bounded,
    without its first line (the run and verdict, said already)."""
    lines = [printable(line) for line in explanation.splitlines()[1:]]
    if len(lines) > EXPLANATION_LINES:
        left = len(lines) - EXPLANATION_LINES
        lines = [*lines[:EXPLANATION_LINES], f"  ... and {left} more lines (--json has them)"]
    return lines


def _print(report: ReplayReport) -> None:
    from rich.table import Column, Table
    from rich.text import Text

    out = console()
    style = {"reproduced": "bold green", "diverged": "bold red", "error": "bold red"}
    # Every name, message and value here may come from a stored record: printable().
    out.print(Text.assemble(f"run {printable(report.run_id)}  flow {printable(report.flow)}  "
                            f"{report.code_label}: ", (report.verdict, style[report.verdict]),
                            _repetitions(report)), soft_wrap=True)
    if report.error:
        out.print(Text(f"could not replay: {printable(report.error)}", style="red"))
        return
    table = Table(Column("step", overflow="fold"), "attempt", Column("result", overflow="fold"),
                  "outputs (recorded)", "outputs (replayed)", box=None, pad_edge=False)
    for step in report.steps:
        result = step.status if step.divergence is None else f"diverged ({step.divergence})"
        table.add_row(Text(printable(step.name)), str(step.attempt or "-"),
                      Text(result, style="green" if step.status == "match" else
                           "red" if step.status == "diverged" else "dim"),
                      Text(printable((step.recorded_outputs or "-")[:8])),
                      Text(printable((step.replayed_outputs or "-")[:8])))
    out.print(table)
    for line in report.resumed_lines():
        out.print(Text(line, style="dim"))
    first = report.first_divergence
    # Cause and hazard lines are one line each however long (soft_wrap): a CI log must
    # not cut a path in two, and grep finds them whole.
    for step in report.steps:
        if step is not first:
            for cause in step.causes:  # a later step that diverged too, and why
                out.print(Text(f"cause in {printable(step.name)}: {printable(cause)}",
                               style="yellow"), soft_wrap=True)
            for hazard in step.hazards:
                out.print(Text(f"hazard in {printable(step.name)}: {printable(hazard)}",
                               style="yellow"), soft_wrap=True)
    if first is None:
        return
    if report.repeat > 1:  # the table and the diff below are that repetition's
        out.print(Text(f"\nreplay {report.repetition} of {report.repeat} diverged; "
                       + (f"the {_earlier(report.repetition - 1)} in this process reproduced: "
                          "state a replay leaves behind (module globals, caches) changed the "
                          "outcome" if report.repetition > 1 else "it was the first"),
                       style="yellow"))
    out.print(Text(f"\nfirst divergence: step '{printable(first.name)}': "
                   f"{printable(first.message)}", style="bold"))
    for change in first.changes:
        for line in change.lines("  "):  # Change escapes its own path, values and detail
            out.print(Text(line), soft_wrap=True)  # long values: the terminal wraps
    if first.changes_left_out:
        out.print(f"  ... and {first.changes_left_out} more changes")
    for cause in [*first.causes, *report.causes]:
        out.print(Text(f"cause: {printable(cause)}", style="yellow"), soft_wrap=True)
        if cause.detail:  # a source diff: each line as it is, the terminal wraps it
            out.print(Text(printable(cause.detail.rstrip("\n"), newlines=True)),
                      soft_wrap=True)
    for hazard in first.hazards:
        out.print(Text(f"hazard: {printable(hazard)}", style="yellow"), soft_wrap=True)


def _earlier(count: int) -> str:
    return "first" if count == 1 else f"first {count}"


def _repetitions(report: ReplayReport) -> str:
    """How often it was replayed in one process, and which time the verdict is from."""
    if report.repeat == 1 or report.verdict == "error":
        return ""
    if report.verdict == "diverged":
        return f" (replay {report.repetition} of {report.repeat} in one process)"
    return f" ({report.repeat} times in one process)"


@click.command(name="diff")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@json_option
@store_option
@with_store
def diff_command(store: Store, run_a: str, run_b: str, as_json: bool) -> None:
    """Where RUN_B differs from RUN_A: inputs, code, environment, each step's outputs.

    Nothing runs: the two records are compared digest by digest, and only
    what differs is opened and diffed. Exit 0 when they agree, 1 otherwise.

    \b
    Example:
      pinrun diff 20261122T0930 20261123T0930
    """
    from rich.text import Text

    from pinrun.verifier.compare import diff_runs

    result = diff_runs(store, run_a, run_b)
    if as_json:
        print_json(result.as_value())
    else:
        out = console()
        # Run ids, flow and step names, keys and code come from stored records.
        out.print(Text(f"{printable(result.a)} ({printable(result.flows[0])}) -> "
                       f"{printable(result.b)} ({printable(result.flows[1])}): "
                       + ("they differ" if not result.same else
                          "the same (only the environment differs)" if result.environment
                          else "the same"), style="bold"))
        if result.inputs:
            out.print(Text("inputs:", style="bold"))
            for change in result.inputs:
                for line in change.lines("  "):
                    out.print(Text(line), soft_wrap=True)  # long values: the terminal wraps
        for line in result.environment:
            out.print(Text(f"environment: {printable(line)}", style="yellow"))
        for step in result.steps:
            if step.difference == "same" and not step.code_changed:
                continue
            what = {"outputs": "outputs differ",
                    "status": f"status {printable(step.status[0])} -> "
                              f"{printable(step.status[1])}",
                    "only-a": "only in RUN_A", "only-b": "only in RUN_B",
                    "same": "same outputs"}[step.difference]
            code = ", code changed" if step.code_changed else ""
            out.print(Text(f"step {printable(step.name)}: {what}{code}", style="bold"))
            for change in step.changes:
                for line in change.lines("  "):
                    out.print(Text(line), soft_wrap=True)  # long values: the terminal wraps
            if step.code_diff:
                out.print(Text(printable(step.code_diff.rstrip("\n"), newlines=True)))
    if not result.same:
        sys.exit(EXIT_DIVERGED)


COMMANDS = (replay_command, diff_command)
