"""pinrun show: tracebacks, values, effect arguments and results, bounded and escaped."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pinrun.cli.step_values import collapsed_names, traceback_lines
from pinrun.engine.call_values import describe_call as call_text
from tests.cli.conftest import invoke
from tests.helpers import Project

ORDERS = """
import datetime as dt
import decimal

import pinrun


def fetch(i):
    return {"i": i, "price": decimal.Decimal("1.10")}


@pinrun.step
def load(order_id: str, ctx: pinrun.Context) -> dict:
    items = [ctx.effect("fetch", fetch, i) for i in range(300)]
    rate = ctx.effect("fx_rate", lambda currency: decimal.Decimal("1.25"), "EUR")
    return {"items": items, "rate": rate, "when": ctx.now(),
            "big": list(range(300_000)), "table": {str(i): "x" * 40 for i in range(3000)}}


@pinrun.step
def price(items: list, order_id: str) -> dict:
    if order_id == "bad":
        def ping(n):  # two functions in turn: Python cannot fold the frames
            if n == 0:
                raise ValueError("no price for \\x1b[31m" + order_id)
            return pong(n - 1)
        def pong(n):
            return ping(n)
        ping(30)
    return {"total": sum(item["price"] for item in items)}


flow = pinrun.Flow("orders", [load, price])
"""


@pytest.fixture
def runner(project: Project, project_cli: CliRunner) -> CliRunner:
    """A CLI runner in the project folder, with a store and the orders flow."""
    project.write("orders", ORDERS)
    return project_cli


def _record(runner: CliRunner, project: Project, order_id: str, code: int = 0) -> str:
    invoke(runner, "run", project.entry("orders"), "--set", f'order_id="{order_id}"', code=code)
    listed = json.loads(invoke(runner, "runs", "--json").stdout)
    return str(listed[0]["id"])


def test_show_prints_the_failed_steps_traceback_bounded_and_escaped(
        runner: CliRunner, project: Project) -> None:
    """A failed step is shown with the last lines of its recorded traceback, escaped."""
    run_id = _record(runner, project, "bad", code=1)
    out = invoke(runner, "show", run_id).stdout
    assert "price failed: ValueError: no price for \\x1b[31mbad" in out
    assert "earlier lines left out" in out
    assert "raise ValueError(" in out  # the failing frame is kept: the last lines are
    assert "\x1b" not in out
    shown = json.loads(invoke(runner, "show", run_id, "--json").stdout)
    failed = shown["steps"][1]["error"]
    assert failed["type"] == "ValueError"
    assert failed["traceback"].startswith("Traceback (most recent call last)")


def test_show_collapses_repeated_effects(runner: CliRunner, project: Project) -> None:
    """300 calls of one effect are one table cell, `fetch x300`, not 300 names."""
    run_id = _record(runner, project, "A1")
    out = invoke(runner, "show", run_id).stdout
    assert "fetch x300, fx_rate" in out
    assert len(out.splitlines()) < 30


def test_show_values_renders_inputs_outputs_and_effects_readably(
        runner: CliRunner, project: Project) -> None:
    """--values shows values as Python spells them, collapses repeats and never dumps a
    large value."""
    run_id = _record(runner, project, "A1")
    out = invoke(runner, "show", run_id, "--values").stdout
    assert "order_id = 'A1'" in out
    assert "rate = Decimal('1.25')" in out
    assert "when = datetime.datetime(" in out
    assert "total = Decimal('330.00')" in out
    assert "fetch x300:" in out
    assert "... and 297 more calls of fetch" in out
    assert "-> {'i': 0, 'price': Decimal('1.10')}" in out
    assert "fetch(0) -> {'i': 0, 'price': Decimal('1.10')}" in out  # the arguments sent
    assert "fx_rate('EUR') -> Decimal('1.25')" in out
    assert "ctx.now() -> datetime.datetime(" in out
    # The 300,000-item list and the 3,000-key mapping are named, never printed whole.
    assert "big = (a large value (" in out
    assert "table = (a large value (" in out
    assert "as a tree" in out
    assert "cut: pinrun cat" in out  # the 300 items: cut, with where to read them whole
    assert len(out) < 8000


def test_show_values_json_has_the_same_data_structured(runner: CliRunner,
                                                       project: Project) -> None:
    """--values --json gives each key's digest and rendering, and every context call."""
    run_id = _record(runner, project, "A1")
    shown = json.loads(invoke(runner, "show", run_id, "--values", "--json").stdout)
    load = shown["steps"][0]["values"]
    assert load["inputs"]["entries"]["order_id"]["value"] == "'A1'"
    assert load["outputs"]["entries"]["rate"]["value"] == "Decimal('1.25')"
    assert load["outputs"]["entries"]["big"]["value"] is None
    events = load["events"]
    assert [e["name"] for e in events] == ["fetch"] * 300 + ["fx_rate", "now"]
    assert events[299]["result"] == "{'i': 299, 'price': Decimal('1.10')}"
    assert events[300]["error"] is None
    assert len(events[300]["arguments"]) == 64  # the digest effects are matched on
    assert events[300]["call"] == "fx_rate('EUR')"
    assert events[301]["arguments"] is None


def test_show_step_shows_that_step_only(runner: CliRunner, project: Project) -> None:
    """`show RUN STEP` gives one step's values; an unknown step is bad input (exit 2)."""
    run_id = _record(runner, project, "A1")
    out = invoke(runner, "show", run_id, "price").stdout
    assert "step price (succeeded" in out
    assert "step load (" not in out
    shown = json.loads(invoke(runner, "show", run_id, "price", "--json").stdout)
    assert [step["name"] for step in shown["steps"]] == ["price"]
    assert shown["steps"][0]["values"]["outputs"]["entries"]["total"]["value"] == \
        "Decimal('330.00')"
    failed = invoke(runner, "show", run_id, "nope", code=2)
    assert "no recorded step 'nope'" in failed.stderr
    assert "load, price" in failed.stderr


def test_call_text_renders_the_recorded_call_shapes() -> None:
    """An effect's recorded arguments read as a call; a preview names its size; an older
    record names its digest."""
    assert call_text("fetch", {"args": ["A1", 3], "kwargs": {"retries": 2}}, "ab" * 32) == \
        "fetch('A1', 3, retries=2)"
    assert call_text("upload", {"preview": "[b'\\x00...", "size": 5_000_000}, None) == \
        "upload(<arguments of 5,000,000 bytes, kept as a preview: [b'\\x00...>)"
    assert call_text("fetch", None, "abcdef0123456789") == \
        "fetch(<arguments not recorded; digest abcdef012345>)"


def test_collapsed_names_and_traceback_lines_are_bounded() -> None:
    """Names collapse with counts, at most three kinds; a traceback keeps its last lines."""
    assert collapsed_names(["a", "b", "a", "c", "d", "a"]) == "a x3, b, c, +1 more"
    lines = traceback_lines("\n".join(f"line {i}\x1b" for i in range(100)))
    assert lines[0] == "... (60 earlier lines left out)"
    assert lines[-1] == "line 99\\x1b"
    assert len(lines) == 41


def test_show_counts_every_call_and_bounds_what_it_reads(
        runner: CliRunner, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """--values counts each effect over all the calls, not the ones listed; events larger
    than the limit are named by size and digest, never read."""
    run_id = _record(runner, project, "A1")
    out = invoke(runner, "show", run_id, "--values").stdout
    assert "context: 302 calls (fetch x300, fx_rate, ctx.now())" in out
    monkeypatch.setattr("pinrun.cli.step_values.EVENTS_SHOWN_LIMIT", 1000)
    out = invoke(runner, "show", run_id, "--values").stdout
    assert "bytes of events, too many to show here (pinrun cat" in " ".join(out.split())
    plain = invoke(runner, "show", run_id).stdout
    assert "(not read:" in plain


def test_kept_arguments_must_match_the_digest() -> None:
    """Kept arguments that do not encode to the call's digest are flagged, not shown as
    if they were what was sent."""
    from pinrun.cli.step_values import kept_call_matches
    from pinrun.engine.events import Event, argument_digest

    digest = argument_digest("fx", ("EUR",), {})
    honest = Event("effect", 1.25, "fx", digest, call={"args": ["EUR"], "kwargs": {}})
    forged = Event("effect", 1.25, "fx", digest, call={"args": ["USD"], "kwargs": {}})
    assert kept_call_matches(honest)
    assert not kept_call_matches(forged)
    assert kept_call_matches(Event("effect", 1, "fx", digest))  # an older record
