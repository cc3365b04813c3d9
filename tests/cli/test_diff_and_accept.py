"""pinrun diff (two runs compared) and pinrun accept (a new baseline after a change)."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from tests.cli.conftest import invoke
from tests.helpers import Project

FLOW = """
import pinrun

CALLS = []


def quote(sku):
    CALLS.append(sku)
    return 9.5


@pinrun.step
def price(sku: str, qty: int, ctx: pinrun.Context) -> dict:
    unit = ctx.effect("quote", quote, sku)
    return {"total": unit * qty, "version": 1}


flow = pinrun.Flow("quotes", [price])
"""


@pytest.fixture
def runner(project: Project, project_cli: CliRunner) -> CliRunner:
    """The CLI in the project folder, with a store and the quotes flow."""
    project.write("quotes", FLOW)
    return project_cli



def _run(runner: CliRunner, project: Project, sku: str, qty: int) -> str:
    return invoke(runner, "run", project.entry("quotes"), "--set", f'sku="{sku}"', "--set",
                  f"qty={qty}").stdout.strip()


def test_diff_names_inputs_code_and_outputs(runner: CliRunner, project: Project) -> None:
    """Same inputs and code: the same (exit 0). Otherwise each difference, exit 1."""
    # CALLS is a value the step's code reads: appending to it would change the code's
    # fingerprint from one run to the next, so this test leaves it alone.
    project.edit("quotes", "CALLS.append(sku)", "pass")
    first = _run(runner, project, "A", 2)
    again = _run(runner, project, "A", 2)
    assert "the same" in " ".join(invoke(runner, "diff", first, again).output.split())
    project.edit("quotes", '"version": 1', '"version": 2')
    changed = _run(runner, project, "B", 2)
    data = json.loads(invoke(runner, "diff", first, changed, "--json", code=1).stdout)
    assert data["same"] is False
    assert data["inputs"] == [{"path": "sku", "kind": "changed", "recorded": "'A'",
                               "replayed": "'B'", "detail": []}]
    (step,) = data["steps"]
    assert step["code_changed"] is True
    assert '+    return {"total": unit * qty, "version": 2}' in step["code_diff"]
    assert {c["path"] for c in step["changes"]} == {"version"}
    text = " ".join(invoke(runner, "diff", first, changed, code=1).output.split())
    assert "step price: outputs differ, code changed" in text


def test_accept_makes_a_new_baseline_without_calling_effects_again(
        runner: CliRunner, project: Project) -> None:
    """After an intended change verify fails; accept re-records; verify passes."""
    old_id = _run(runner, project, "A", 2)
    calls = sys.modules[f"{project.package}.quotes"].CALLS
    assert calls == ["A"]
    with Store.open(project.root / ".pinrun") as store:
        old_record = load_run(store, old_id)
    project.edit("quotes", '"version": 1', '"version": 2')
    invoke(runner, "verify", code=1)
    out = invoke(runner, "accept", "--flow", "quotes").output
    assert f"{old_id} -> " in out
    assert project.load("quotes", "CALLS") == []  # the edited module: the effect not called
    invoke(runner, "verify")
    with Store.open(project.root / ".pinrun") as store:
        assert load_run(store, old_id) == old_record  # the old run is untouched
        new_id = out.split(" -> ")[1].split(" ")[0]
        new = load_run(store, new_id)
        assert new.replaces == old_id
        assert store.get_snapshot(new.state)["version"] == 2
    assert "name the runs" in invoke(runner, "accept", code=2).stderr
