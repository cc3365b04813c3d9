"""Commands that look at recorded runs: runs, show."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import click

from pinrun.cli._common import console, json_option, print_json, store_option, with_store
from pinrun.errors import CorruptObjectError, InputError, StoreError
from pinrun.safe_text import for_rich, printable

if TYPE_CHECKING:
    from pinrun.artifacts.digest import Digest
    from pinrun.artifacts.store import Store
    from pinrun.engine.records import RunRecord

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: The status ``runs --json`` gives a run whose record cannot be read.
UNREADABLE: Final = "unreadable"
#: ``runs`` exits with this (a store error) when it met a damaged run record.
EXIT_UNREADABLE: Final = 3


def since_prefix(text: str, now: dt.datetime | None = None) -> str:
    """``--since`` as the run-id prefix it starts at: ``2h``, ``3d``, a date or a time (UTC)."""
    match = _RELATIVE.match(text.strip())
    if match:
        current = now if now is not None else dt.datetime.now(dt.UTC)
        moment = current - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            moment = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise InputError(f"--since {text!r}: give a time like 2h, 3d, 1w, 2026-11-20 or "
                             "2026-11-20T08:30 (UTC)") from None
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC)
    # Run ids start with their UTC start time, so this compares as text.
    return f"{moment.strftime('%Y%m%dT%H%M%S')}{moment.microsecond // 1000:03d}"


def run_summary(store: Store, run: RunRecord) -> dict[str, Any]:
    """What ``runs`` and ``run --json`` print about a run."""
    from pinrun.engine.records import display_status

    failed = run.failed_step
    return {"id": run.id, "flow": run.flow, "status": display_status(store, run),
            "steps": [s.name for s in run.steps],
            "failed_step": failed.name if failed else None,
            "error": (f"{failed.error.type}: {failed.error.message}"
                      if failed and failed.error else None)}


@dataclass(frozen=True)
class Unreadable:
    """A run whose record cannot be read: its id as its ref names it, and why."""

    run_id: str
    error: StoreError

    def summary(self) -> dict[str, Any]:
        """Its entry in ``runs --json``: status ``unreadable``, with the error."""
        return {"id": self.run_id, "flow": None, "status": UNREADABLE, "steps": [],
                "failed_step": None, "error": str(self.error)}


def _runs_newest_first(store: Store, since: str | None,
                       only: set[str] | None = None) -> Iterator[RunRecord | Unreadable]:
    """Each run (of ``only``, when given), newest first; a damaged one is named, not fatal.

    Lazy: refs are read from the newest down and records loaded one at a
    time, so a caller that stops after ``--limit`` matches costs the same
    whatever the number of runs in the store.
    """
    from pinrun.engine.records import RUN_REF_PREFIX, load_run_ref

    for name, target in _run_refs_newest_first(store, only):
        run_id = name[len(RUN_REF_PREFIX):]
        if since is not None and run_id < since:
            return
        try:
            yield load_run_ref(store, name, target)
        except StoreError as exc:
            yield Unreadable(run_id, exc)


def _run_refs_newest_first(store: Store, only: set[str] | None) -> Iterator[tuple[str, Digest]]:
    """The ``runs/<id>`` refs (of the runs in ``only``, when given), newest first.

    Ids sort by time, so name order reversed is newest first. With ``only``
    (the runs carrying a tag), each of those is looked up, rather than every
    run ref scanned for them; one without a run ref is left out, as before.
    """
    from pinrun.engine.records import RUN_REF_PREFIX

    if only is None:
        yield from store.iter_refs(RUN_REF_PREFIX, reverse=True)
        return
    # Sorted as the ref names are: runs/<id> orders as <id> does.
    for run_id in sorted(only, reverse=True):
        name = f"{RUN_REF_PREFIX}{run_id}"
        target = store.get_ref(name)
        if target is not None:
            yield name, target


@click.command(name="runs")
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of this flow.")
@click.option("--status", type=click.Choice(["running", "interrupted", "succeeded", "failed"]),
              help="Only runs with this status (interrupted: killed before it finished).")
@click.option("--since", metavar="TIME",
              help="Only runs started since TIME: 2h, 3d, 1w, or a UTC date/time "
                   "(2026-11-20, 2026-11-20T08:30).")
@click.option("--tag", metavar="NAME", help="Only runs carrying the tag NAME.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many runs.")
@json_option
@store_option
@with_store
def runs_command(store: Store, flow_name: str | None, status: str | None, since: str | None,
                 tag: str | None, limit: int, as_json: bool) -> None:
    """List recorded runs, newest first.

    A run whose record is damaged is named on stderr (and in --json with
    status "unreadable") while the others are listed; the exit code is then
    3, as for any store damage.

    \b
    Examples:
      pinrun runs --flow pricing --status failed
      pinrun runs --since 1d --json
      pinrun runs --tag nightly
    """
    from rich.table import Column, Table

    from pinrun.artifacts.tags import run_tags, tagged_runs

    start = since_prefix(since) if since is not None else None
    only = set(tagged_runs(store, tag)) if tag is not None else None
    labels = run_tags(store)
    unreadable: list[Unreadable] = []

    def readable() -> Iterator[RunRecord]:
        for item in _runs_newest_first(store, start, only):
            if isinstance(item, Unreadable):
                unreadable.append(item)
            else:
                yield item

    summaries = ({**run_summary(store, run), "tags": labels.get(run.id, [])}
                 for run in readable() if flow_name is None or run.flow == flow_name)
    matching = (s for s in summaries if status is None or s["status"] == status)
    selected = list(itertools.islice(matching, limit))  # loads only what it shows
    for bad in unreadable:
        click.echo(f"pinrun: warning: run {printable(bad.run_id)} cannot be read: "
                   f"{printable(bad.error)}", err=True)
    if as_json:
        print_json([*selected, *(bad.summary() for bad in unreadable)])
    elif not selected:
        if not unreadable:
            click.echo("no runs match" if since or flow_name or status or tag else
                       "no runs recorded yet: `pinrun run MODULE:FLOW` records one")
    else:
        # A run id is never cut: at 80 columns a long flow name folds instead.
        tagged = any(summary["tags"] for summary in selected)
        table = Table(Column("run", no_wrap=True), Column("flow", overflow="fold"), "status",
                      "steps", *([Column("tags", overflow="fold")] if tagged else []),
                      box=None, pad_edge=False)
        for summary in selected:
            table.add_row(for_rich(summary["id"]), for_rich(summary["flow"]),
                          summary["status"], str(len(summary["steps"])),
                          *([for_rich(", ".join(summary["tags"]))] if tagged else []))
        console().print(table)
    if unreadable:
        sys.exit(EXIT_UNREADABLE)


@click.command(name="show")
@click.argument("run_id", metavar="RUN")
@click.argument("step_name", metavar="[STEP]", required=False)
@click.option("--values", "with_values", is_flag=True,
              help="Also show each step's inputs, outputs, effect arguments and results "
                   "as values (bounded: long values are cut, large ones named by digest).")
@json_option
@store_option
@with_store
def show_command(store: Store, run_id: str, step_name: str | None, with_values: bool,
                 as_json: bool) -> None:
    """One run: its steps in order, their digests, status, effects, hazards and errors.

    RUN is a run id or a unique prefix of one. A failed step is shown with its
    recorded traceback. With --values, or with a STEP name (that step only),
    each step's inputs, outputs and context calls (effects with their
    arguments and results, the clock, seeds, uuids) are shown as values.

    \b
    Examples:
      pinrun show 20261123T0130
      pinrun show 20261123T0130 --values
      pinrun show 20261123T0130 price --json
    """
    from rich.table import Column, Table
    from rich.text import Text

    from pinrun.artifacts.digest import Kind
    from pinrun.cli.step_values import (
        collapsed_names,
        file_inputs,
        step_lines,
        step_values,
    )
    from pinrun.engine.records import display_status, load_env, load_run

    run = load_run(store, run_id)
    if step_name is not None and step_name not in {item.name for item in run.steps}:
        names = ", ".join(dict.fromkeys(printable(item.name) for item in run.steps))
        raise InputError(f"run {run.id} has no recorded step {printable(step_name)!r} "
                         f"(its steps: {names or 'none'}); name one of them, or leave STEP out")
    env = load_env(store, run)
    status = display_status(store, run)
    times = _step_times(store, run)
    # A step pin the run's flow pin does not name ran in a resume after a change.
    started_with: set[Digest] = set()
    if run.flow_pin is not None:
        # A damaged pin does not hide the run: fsck and replay name it.
        with contextlib.suppress(StoreError):
            started_with = set(store.get_object(run.flow_pin, Kind.FLOW)["steps"])
    steps: list[dict[str, Any]] = []
    for index, item in enumerate(run.steps):
        steps.append({
            "name": item.name, "status": item.status, "attempt": item.attempt,
            "inputs": item.inputs.hex, "code": item.code.hex if item.code else None,
            "resumed_code": bool(started_with) and item.code is not None
            and item.code not in started_with,
            "outputs": item.outputs.hex if item.outputs else None,
            **_events_summary(store, item.events),
            "hazards": list(item.hazards),
            "input_files": file_inputs(store, item),
            "seconds": times[index] if index < len(times) else None,
            "error": ({"type": item.error.type, "message": item.error.message,
                       "traceback": item.error.traceback} if item.error else None),
        })
        if item.name == step_name or (with_values and step_name is None):
            steps[-1]["values"] = step_values(store, item)
    pinned = _pinned_code(store, run, started_with)
    if as_json:
        print_json({"id": run.id, "flow": run.flow, "status": status, "entry": run.entry,
                    "pinned_code": pinned,
                    "replaces": run.replaces, "replaced_by": _successor(store, run),
                    "digest": run.digest.hex if run.digest else None,
                    "flow_pin": run.flow_pin.hex if run.flow_pin else None,
                    "env": run.env.hex if run.env else None, "environment": env or None,
                    "inputs": run.inputs.hex, "state": run.state.hex,
                    "steps": [row for row in steps
                              if step_name is None or row["name"] == step_name]})
        return
    # Names, effects, hazards and errors are stored text: printable() on every one.
    out = console()
    out.print(Text.assemble("run ", (run.id, "bold"), f"  flow {printable(run.flow)}  status ",
                            (status, "bold")))
    # (A running run's state may be rebuilt from its steps: its tree is then not stored
    # until the run's next commit that stores it.)
    out.print(f"inputs {run.inputs.short}  final state {run.state.short}"
              f"{'  (rebuilt, not stored yet)' if run.rebuilt_state is not None else ''}")
    if run.replaces:
        out.print(Text(f"a new baseline for run {printable(run.replaces)} (pinrun accept)"))
    successor = _successor(store, run)
    if successor is not None:
        out.print(Text(f"replaced by a new baseline, run {printable(successor)}: "
                       "pinrun verify skips it"))
    if run.flow_pin and run.env:
        out.print(f"pinned flow {run.flow_pin.short}  environment {run.env.short}")
    out.print(_pinned_summary(pinned))
    for line in environment_lines(env):
        out.print(Text(line))
    # Eight hex characters per digest keep the table within 80 columns; --json has them whole.
    # Long names fold onto a second line rather than losing their end.
    table = Table(Column("step", overflow="fold"), "status", "code", "outputs",
                  Column("effects", overflow="fold"), "time", box=None, pad_edge=False)
    for item, row in zip(run.steps, steps, strict=True):
        table.add_row(for_rich(_label(row)), item.status,
                      item.code.hex[:8] if item.code else "-",
                      item.outputs.hex[:8] if item.outputs else "-",
                      for_rich(collapsed_names(row["effects"]) or "-"),
                      f"{row['seconds'] * 1000:.1f} ms" if row["seconds"] is not None else "")
    out.print(table)
    for row in steps:
        _print_notes(out, row)
    for row in steps:
        if "values" in row:  # plain lines, left to the terminal to wrap: values stay whole
            click.echo()
            for line in step_lines(_label(row), row, row["values"]):
                click.echo(line)
    if status in ("interrupted", "failed"):
        out.print(Text(f"continue it with: pinrun resume {run.id}"))


def _print_notes(out: Any, row: dict[str, Any]) -> None:
    """What ``show`` says under its table about one step: its file inputs, hazards, error
    (with its traceback) and resumed code; every stored text through printable()."""
    from rich.text import Text

    from pinrun.cli.step_values import file_input_lines, traceback_lines

    for line in file_input_lines(row["input_files"]):
        out.print(Text(f"{printable(_label(row))} {line}", style="dim"))
    for hazard in row["hazards"]:
        out.print(Text(f"hazard in {printable(_label(row))}: {printable(hazard)}",
                       style="yellow"))
    if row["error"] and "values" not in row:  # with values, it is shown there
        out.print(Text(f"{printable(_label(row))} failed: {printable(row['error']['type'])}"
                       f": {printable(row['error']['message'])}", style="red"))
        for line in traceback_lines(row["error"]["traceback"]):
            out.print(Text(f"  {line}", style="dim"), soft_wrap=True)  # lines kept whole
    if row["resumed_code"]:
        out.print(Text(f"{printable(_label(row))} ran the code the run was resumed with "
                       f"(step pin {row['code'][:8]}), not the code it started with; "
                       "pinned replay runs that code for it", style="dim"))


def _successor(store: Store, run: RunRecord) -> str | None:
    """The id of the run that replaced ``run`` as a baseline (``pinrun accept``), if any.

    The ref names the new run's record by digest; a record that cannot be read
    is named by that digest instead, so ``show`` still says the run was replaced.
    """
    from pinrun.engine.records import load_run_object
    from pinrun.engine.run import replaced_ref

    digest = store.get_ref(replaced_ref(run.id))
    if digest is None:
        return None
    try:
        return load_run_object(store, digest).id
    except StoreError:
        return f"(unreadable record {digest.short})"


def environment_lines(env: dict[str, Any]) -> list[str]:
    """A recorded environment as a few lines of text (stored text: escaped).

    Fields an older pinrun did not record are left out.
    """
    if not env:
        return []
    seed = env.get("hash_seed")
    head = [f"python {env['python']} ({env['implementation']})", f"on {env['platform']}",
            f"hash seed {seed if seed is not None else 'unknown'}"]
    if env.get("timezone") is not None:
        head.append(f"TZ {env['timezone']}")
    lines = [printable(f"environment: {', '.join(head)}")]
    if env.get("locale"):
        lines.append(printable("  locale: " + ", ".join(
            f"{name} {value}" for name, value in sorted(env["locale"].items()))))
    place = [f"{label} {env[key]}" for key, label in (
        ("hostname", "host"), ("home", "home"), ("cwd", "cwd"), ("umask", "umask"))
        if env.get(key) is not None]
    if place:
        lines.append(printable("  place: " + ", ".join(place)))
    if env.get("linalg"):
        lines.append(printable("  linalg: " + ", ".join(
            f"{name.upper()} {value}" for name, value in sorted(env["linalg"].items()))))
    project = set(env.get("project") or ())
    if project:
        lines.append(printable("  project: " + ", ".join(
            f"{name} {env['distributions'].get(name, '?')}" for name in sorted(project))))
    others = {name: version for name, version in env["distributions"].items()
              if name not in project}
    if others:
        lines.append(printable("  distributions: " + ", ".join(
            f"{name} {version}" for name, version in sorted(others.items()))))
    return lines


def _label(row: dict[str, Any]) -> str:
    return row["name"] if row["attempt"] == 1 else f"{row['name']} (attempt {row['attempt']})"


def _step_times(store: Store, run: RunRecord) -> list[float | None]:
    """Each step record's duration in seconds, from the run's timing value (kept beside it).

    Timing is outside what replay compares: a value of another shape only
    leaves the times blank.
    """
    from pinrun.engine.records import load_timing

    entries = load_timing(store, run).get("steps")
    if not isinstance(entries, list):
        return []
    return [seconds if isinstance(entry, dict) and
            type(seconds := entry.get("seconds")) in (int, float) else None
            for entry in entries]


def _pinned_code(store: Store, run: RunRecord,
                 started_with: set[Digest]) -> list[dict[str, str | None]]:
    """The modules the run pinned (its flow's and its steps'), as ``show`` lists them;
    ``started_with`` are the flow pin's steps, whose code that already covers."""
    from pinrun.artifacts.digest import Kind
    from pinrun.flows.loader import pinned_sources

    if run.flow_pin is None:
        return []
    found = dict(pinned_sources(store, run.flow_pin))
    resumed = {item.code for item in run.steps if item.code is not None} - started_with
    for step in sorted(resumed, key=lambda digest: digest.hex):  # code a resume ran with
        for digest in store.get_object(step, Kind.STEP)["code"]:
            code = store.get_object(digest, Kind.CODE)
            found.setdefault(code["module"], code)
    return [{"module": code["module"], "path": code["path"],
             "distribution": code.get("distribution")} for _, code in sorted(found.items())]


def _pinned_summary(pinned: list[dict[str, str | None]]) -> str:
    if not pinned:
        return ("pinned code: none (the run pinned no code; a replay runs the code "
                "installed then)")
    dists = sorted({item["distribution"] for item in pinned if item["distribution"]})
    where = f", from {', '.join(printable(d) for d in dists)}" if dists else ""
    return f"pinned code: {len(pinned)} module{'s' if len(pinned) != 1 else ''}{where}"


def _events_summary(store: Store, digest: Digest) -> dict[str, Any]:
    """The effects a step consumed, by name, and how many context calls it made."""
    from pinrun.cli.step_values import events_too_large

    too_large = events_too_large(store, digest)
    if too_large is not None:
        return {"effects": [f"(not read: {too_large:,} bytes of events)"],
                "context_calls": None}
    events = store.get_value(digest)
    if not isinstance(events, list) or not all(
            isinstance(event, dict) and isinstance(event.get("kind"), str) for event in events):
        raise CorruptObjectError(digest, None, "it is a step's context events, but not a list "
                                 "of events")
    effects = [event.get("name") for event in events if event["kind"] == "effect"]
    return {"effects": [name if isinstance(name, str) else "?" for name in effects],
            "context_calls": len(events)}


COMMANDS = (runs_command, show_command)
