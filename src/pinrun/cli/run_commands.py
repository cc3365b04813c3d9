"""Commands that record and inspect runs: run, runs, show."""

from __future__ import annotations

import importlib
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pinrun.cli._common import console, json_option, print_json, store_option, with_store
from pinrun.errors import InputError

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store
    from pinrun.engine.records import RunRecord
    from pinrun.flows.flow import Flow

EXIT_RUN_FAILED = 1


def load_flow(target: str) -> Flow:
    """The flow named by ``MODULE:FLOW`` or ``path/to/file.py:FLOW``."""
    from pinrun.flows.flow import Flow

    module_name, sep, attribute = target.rpartition(":")
    if not sep or not module_name or not attribute:
        raise InputError(f"{target!r} does not name a flow: write MODULE:FLOW "
                         "(e.g. examples.pricing:flow) or path/to/file.py:FLOW.")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise InputError(f"no such file: {module_name}")
        sys.path.insert(0, str(path.parent))
        module_name = path.stem
    elif str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: the project is importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InputError(f"cannot import {module_name!r} ({exc}). Run pinrun from your "
                         "project folder, or give the file path: path/to/file.py:FLOW.") from exc
    flow = getattr(module, attribute, None)
    if not isinstance(flow, Flow):
        found = type(flow).__name__ if flow is not None else "nothing"
        raise InputError(f"{module_name}:{attribute} is {found}, not a pinrun.Flow")
    return flow


def parse_inputs(input_file: str | None, assignments: tuple[str, ...]) -> dict[str, Any]:
    """Inputs from a JSON file (``-`` for stdin), then each ``KEY=JSON`` over them."""
    inputs: dict[str, Any] = {}
    if input_file is not None:
        try:
            text = sys.stdin.read() if input_file == "-" else Path(input_file).read_text()
            loaded = json.loads(text)
        except OSError as exc:
            raise InputError(f"cannot read --input {input_file}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise InputError(f"--input {input_file} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InputError(f"--input {input_file} must hold a JSON object of state keys")
        inputs.update(loaded)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise InputError(f"--set {assignment!r}: write KEY=JSON, e.g. --set order_id='\"A1\"'")
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"--set {key}: {raw!r} is not JSON ({exc.msg}). Quote strings: "
                             f"--set {key}='\"{raw}\"'") from exc
    return inputs


@click.command(name="run")
@click.argument("target", metavar="MODULE:FLOW")
@click.option("--input", "input_file", metavar="FILE",
              help="A JSON object of inputs (state keys); - reads it from stdin.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=JSON",
              help="Set one input (repeatable); the value is JSON: --set n=3 --set id='\"A1\"'.")
@click.option("--tag", metavar="NAME", help="Also name the run tags/NAME.")
@json_option
@store_option
@with_store
def run_command(store: Store, target: str, input_file: str | None,
                assignments: tuple[str, ...], tag: str | None, as_json: bool) -> None:
    """Run the flow MODULE:FLOW and record it; prints the run id.

    \b
    Examples:
      pinrun run examples.pricing:flow --set order_id='"A-1001"'
      pinrun run pipelines/daily.py:flow --input inputs.json --tag nightly

    Exit code 1 when a step fails (the failure is recorded too).
    """
    from pinrun.engine.records import RunFailedError, run_ref
    from pinrun.engine.run import record

    flow = load_flow(target)
    inputs = parse_inputs(input_file, assignments)
    try:
        run = record(flow, inputs, store=store)
    except RunFailedError as failure:
        run = failure.run
        if as_json:
            print_json(_run_summary(run))
        click.echo(f"pinrun: {failure}", err=True)
        sys.exit(EXIT_RUN_FAILED)
    if tag:
        store.set_ref(f"tags/{tag}", store.ref(run_ref(run.id)))
    if as_json:
        print_json(_run_summary(run))
    else:
        click.echo(run.id)


def _run_summary(run: RunRecord) -> dict[str, Any]:
    return {"id": run.id, "flow": run.flow, "status": run.status,
            "steps": [s.name for s in run.steps],
            "failed_step": run.failed_step.name if run.failed_step else None}


def _runs_newest_first(store: Store) -> Iterator[RunRecord]:
    from pinrun.engine.records import RUN_REF_PREFIX, load_run

    names = sorted(store.refs(RUN_REF_PREFIX), reverse=True)  # ids sort by time: newest first
    for name in names:
        yield load_run(store, name[len(RUN_REF_PREFIX):])


@click.command(name="runs")
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of this flow.")
@click.option("--status", type=click.Choice(["running", "succeeded", "failed"]),
              help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many runs.")
@json_option
@store_option
@with_store
def runs_command(store: Store, flow_name: str | None, status: str | None, limit: int,
                 as_json: bool) -> None:
    """List recorded runs, newest first."""
    from rich.table import Table
    from rich.text import Text

    matching = (run for run in _runs_newest_first(store)
                if (flow_name is None or run.flow == flow_name)
                and (status is None or run.status == status))
    selected = list(itertools.islice(matching, limit))  # loads only what it shows
    if as_json:
        print_json([_run_summary(run) for run in selected])
        return
    if not selected:
        click.echo("no runs recorded yet: `pinrun run MODULE:FLOW` records one")
        return
    table = Table("run", "flow", "status", "steps", box=None, pad_edge=False)
    for run in selected:
        table.add_row(run.id, Text(run.flow), run.status, str(len(run.steps)))
    console().print(table)


@click.command(name="show")
@click.argument("run_id", metavar="RUN")
@json_option
@store_option
@with_store
def show_command(store: Store, run_id: str, as_json: bool) -> None:
    """One run: its steps in order, their digests, status, effects and errors.

    RUN is a run id or a unique prefix of one.
    """
    from rich.table import Table
    from rich.text import Text

    from pinrun.engine.records import load_run

    run = load_run(store, run_id)
    timing = store.get_value(run.timing) if run.timing else {"steps": {}}
    steps: list[dict[str, Any]] = []
    for item in run.steps:
        events = store.get_value(item.events)
        times = timing["steps"].get(item.name, {})
        seconds = ((times["finished"] - times["started"]).total_seconds()
                   if "finished" in times else None)
        steps.append({
            "name": item.name, "status": item.status, "inputs": item.inputs.hex,
            "code": item.code.hex if item.code else None,
            "outputs": item.outputs.hex if item.outputs else None,
            "effects": [e["name"] for e in events if e["kind"] == "effect"],
            "context_calls": len(events), "hazards": list(item.hazards), "seconds": seconds,
            "error": ({"type": item.error.type, "message": item.error.message}
                      if item.error else None),
        })
    if as_json:
        print_json({"id": run.id, "flow": run.flow, "status": run.status,
                    "digest": run.digest.hex if run.digest else None,
                    "flow_pin": run.flow_pin.hex if run.flow_pin else None,
                    "env": run.env.hex if run.env else None,
                    "inputs": run.inputs.hex, "state": run.state.hex, "steps": steps})
        return
    out = console()
    out.print(Text.assemble("run ", (run.id, "bold"), f"  flow {run.flow}  status ",
                            (run.status, "bold")))
    out.print(f"inputs {run.inputs.short}  final state {run.state.short}")
    if run.flow_pin and run.env:
        out.print(f"pinned flow {run.flow_pin.short}  environment {run.env.short}")
    # Eight hex characters per digest keep the table within 80 columns; --json has them whole.
    table = Table("step", "status", "code", "outputs", "effects", "time", box=None,
                  pad_edge=False)
    for item, row in zip(run.steps, steps, strict=True):
        table.add_row(Text(item.name), item.status, item.code.hex[:8] if item.code else "-",
                      item.outputs.hex[:8] if item.outputs else "-",
                      ", ".join(row["effects"]) or "-",
                      f"{row['seconds'] * 1000:.1f} ms" if row["seconds"] is not None else "")
    out.print(table)
    for row in steps:
        for hazard in row["hazards"]:
            out.print(Text(f"hazard in {row['name']}: {hazard}"))
        if row["error"]:
            out.print(Text(f"{row['name']} failed: {row['error']['type']}: "
                           f"{row['error']['message']}", style="red"))


COMMANDS = (run_command, runs_command, show_command)
