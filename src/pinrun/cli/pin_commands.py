"""Commands that pin a flow's code and check the code on disk against it: pin, status."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from pinrun.cli._common import console, json_option, print_json, store_option, with_store
from pinrun.cli.run_commands import target_entry
from pinrun.errors import InputError
from pinrun.safe_text import printable

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store

EXIT_CODE_CHANGED = 1


@click.command(name="pin")
@click.argument("target", metavar="MODULE:FLOW")
@json_option
@store_option
@with_store
def pin_command(store: Store, target: str, as_json: bool) -> None:
    """Pin the flow MODULE:FLOW without running it: its code, definition and environment.

    The pin is kept under the ref flows/NAME. Afterwards `pinrun status`
    compares the code on disk with it, and `pinrun run` checks against it
    (see --code-policy there). Pinning again moves the ref to the new code.

    \b
    Example:
      pinrun pin examples.pricing:flow && pinrun status examples.pricing:flow
    """
    from pinrun.flows.entries import import_entry
    from pinrun.flows.pinning import project_root_for
    from pinrun.flows.registry import flow_ref, pin_flow

    entry = target_entry(target)
    flow = import_entry(entry)
    pinned = pin_flow(flow, store, project_root_for(store.path), entry)
    if as_json:
        print_json({"ref": flow_ref(flow.name), "flow": pinned.flow.hex, "env": pinned.env.hex,
                    "entry": pinned.entry, "digest": pinned.digest.hex})
    else:
        click.echo(f"pinned flow '{printable(flow.name)}' ({len(flow.steps)} steps) as "
                   f"{printable(flow_ref(flow.name))}: flow {pinned.flow.short}, "
                   f"environment {pinned.env.short}")


@click.command(name="status")
@click.argument("target", metavar="MODULE:FLOW")
@click.option("--diff/--no-diff", "show_diff", default=True, show_default=True,
              help="Show a unified diff of the changed sources.")
@json_option
@store_option
@with_store
def status_command(store: Store, target: str, show_diff: bool, as_json: bool) -> None:
    """Compare the code of MODULE:FLOW on disk with its pinned code, step by step.

    \b
    Each step is one of:
      same        the code is the pinned code, byte for byte
      formatting  only comments, formatting, docstrings or code it does not
                  use changed: the fingerprint is the same
      same-version  the code changed, but its version= did not (bump it if
                  the behaviour changed): not counted as changed
      changed     the fingerprint (or version=) differs: it may behave otherwise
      added / removed

    Exit code 1 when any step changed (or the flow's shape did), 0 when only
    comments or formatting did: the check a worker runs at start-up.
    """
    from rich.text import Text

    from pinrun.flows.entries import import_entry
    from pinrun.flows.pinning import project_root_for
    from pinrun.flows.registry import flow_ref, load_pinned
    from pinrun.flows.status import compare_code

    flow = import_entry(target_entry(target))
    pinned = load_pinned(store, flow.name)
    if pinned is None:
        raise InputError(f"flow {flow.name!r} has not been pinned in this store ({store.path});"
                         f" pin it first: pinrun pin {target}")
    status = compare_code(store, pinned.flow, flow, project_root_for(store.path))
    if as_json:
        print_json({"flow": flow.name, "ref": flow_ref(flow.name), "changed": status.changed,
                    "structure": list(status.structure),
                    "steps": [{"name": s.name, "state": s.state, "pinned": s.pinned,
                               "current": s.current, "diff": s.diff} for s in status.steps]})
    else:
        out = console()
        styles = {"same": "green", "formatting": "cyan", "same-version": "yellow",
                  "changed": "red", "added": "red", "removed": "red"}
        for item in status.steps:
            out.print(Text.assemble((f"{item.state:<13}", styles[item.state]),
                                    printable(item.name)))
        for line in status.structure:
            out.print(Text(f"flow: {printable(line)}", style="red"))
        shown: set[str] = set()
        for item in status.steps:
            if show_diff and item.diff and item.diff not in shown:
                shown.add(item.diff)  # steps of one module share its diff: show it once
                # The pinned side of the diff is stored text.
                out.print(Text(printable(item.diff.rstrip("\n"), newlines=True)))
        versioned = [s.name for s in status.steps if s.state == "same-version"]
        out.print("the code differs from the pinned code" if status.changed else
                  f"the code of {printable(', '.join(versioned))} differs from the pinned "
                  "code, but its version= did not change: bump it if the behaviour did"
                  if versioned else "the code matches the pinned code")
    if status.changed:
        sys.exit(EXIT_CODE_CHANGED)


COMMANDS = (pin_command, status_command)
