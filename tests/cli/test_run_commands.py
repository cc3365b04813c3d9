"""run, runs and show through click's runner, on the example flows."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pinrun.cli.main import cli
from tests.helpers import SRC, Project
from tests.helpers import project_cli as in_project

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A project folder holding the examples and an empty store."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PINRUN_STORE", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    yield runner
    for name in [n for n in sys.modules if n == "examples" or n.startswith("examples.")]:
        del sys.modules[name]  # each test imports the examples from its own folder


def run(runner: CliRunner, *args: str, code: int = 0) -> Result:
    """Invoke pinrun and check its exit code."""
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr)
    return result


def test_run_records_and_prints_the_id(runner: CliRunner) -> None:
    """`pinrun run MODULE:FLOW --set` records a run and prints its id; show lists its steps."""
    run_id = run(runner, "run", "examples.pricing:flow", "--set", 'order_id="A-1001"').stdout
    run_id = run_id.strip()
    shown = json.loads(run(runner, "show", run_id, "--json").output)
    assert shown["status"] == "succeeded"
    assert [s["name"] for s in shown["steps"]] == ["load_order", "price_order",
                                                   "apply_discount"]
    assert shown["steps"][1]["effects"] == ["exchange_rate"]
    human = run(runner, "show", run_id[:20]).output
    assert "price_order" in human
    assert "exchange_rate" in human


def test_failed_run_exits_1_with_one_line(runner: CliRunner) -> None:
    """A failing step exits 1, names the step and error in one line, and is recorded."""
    result = run(runner, "run", "examples.pricing:flow", "--set", 'order_id="Z-9"', code=1)
    assert "failed at step 'load_order': KeyError" in result.stderr
    listed = json.loads(run(runner, "runs", "--json").output)
    assert listed[0]["status"] == "failed"
    assert listed[0]["failed_step"] == "load_order"


def test_runs_lists_newest_first_with_filters(runner: CliRunner) -> None:
    """runs lists newest first and filters by flow and status."""
    first = run(runner, "run", "examples.pricing:flow", "--set", 'order_id="A-1001"').stdout
    second = run(runner, "run", "examples.pipeline:flow", "--set", 'day="2026-11-20"').stdout
    listed = json.loads(run(runner, "runs", "--json").output)
    assert [r["id"] for r in listed] == [second.strip(), first.strip()]
    only = json.loads(run(runner, "runs", "--flow", "daily-sales", "--json").output)
    assert [r["flow"] for r in only] == ["daily-sales"]
    assert json.loads(run(runner, "runs", "--status", "failed", "--json").output) == []
    assert "daily-sales" in run(runner, "runs").output


def test_inputs_from_a_file_and_a_file_path_target(runner: CliRunner, tmp_path: Path) -> None:
    """--input FILE supplies inputs, and a flow can be named by its file path; --tag names it."""
    (tmp_path / "inputs.json").write_text('{"day": "2026-11-21"}')
    out = run(runner, "run", "examples/pipeline.py:flow", "--input", "inputs.json",
              "--tag", "nightly", "--json").output
    summary = json.loads(out)
    assert summary["flow"] == "daily-sales"
    tag_ref = f"tags/nightly/{summary['id']}"  # a label: one ref per tagged run
    assert json.loads(run(runner, "cat", tag_ref, "--json").output)["kind"] == "run"


def test_bad_targets_and_inputs_exit_2(runner: CliRunner) -> None:
    """Unknown modules, non-flows, bad JSON and missing inputs are input errors (exit 2)."""
    assert "cannot import" in run(runner, "run", "nope:flow", code=2).stderr
    assert "not a pinrun.Flow" in run(runner, "run", "examples.pricing:ORDERS", code=2).stderr
    assert "MODULE:FLOW" in run(runner, "run", "examples.pricing", code=2).stderr
    assert "Quote strings" in run(runner, "run", "examples.pricing:flow", "--set",
                                  "order_id=A1", code=2).stderr
    assert "reads 'order_id'" in run(runner, "run", "examples.pricing:flow", code=2).stderr


def test_runs_on_an_empty_store_says_how_to_record(runner: CliRunner) -> None:
    """With nothing recorded, runs says so and names the command that records."""
    assert "pinrun run MODULE:FLOW" in run(runner, "runs").output
    assert json.loads(run(runner, "runs", "--json").output) == []


def test_a_step_warning_is_shown_once(project: Project) -> None:
    """A warning a step raises is printed once as Python prints it, and the run goes on
    (showing it used to re-record it into the list being shown, for ever)."""

    project.write("warns", """
        import warnings
        import pinrun

        @pinrun.step
        def careful(n: int) -> dict:
            warnings.warn("heads up")
            return {"m": n}

        flow = pinrun.Flow("warns", [careful])
    """)
    assert in_project(project, "init").returncode == 0
    done = in_project(project, "run", project.entry("warns"), "--set", "n=1")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("UserWarning: heads up") == 1


def test_a_reader_that_leaves_early_is_not_an_error(project: Project) -> None:
    """`pinrun show RUN --values | head -1`: output into a pipe whose reader has gone ends
    quietly, with no misleading "pinrun: error" line."""
    import subprocess

    steps = "".join(f"""
@pinrun.step
def wide{i}(n: int) -> dict:
    return {{f"k{i}_{{j}}": "x" * 300 for j in range(n)}}
""" for i in range(10))
    project.write("many", "import pinrun\n" + steps +
                  f"flow = pinrun.Flow('many', [{', '.join(f'wide{i}' for i in range(10))}])\n")
    assert in_project(project, "init").returncode == 0
    run_id = in_project(project, "run", project.entry("many"), "--set", "n=50").stdout.strip()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(project.root)])}
    env.pop("PINRUN_STORE", None)
    shown = subprocess.Popen([sys.executable, "-m", "pinrun", "show", run_id, "--values"],
                             cwd=project.root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert shown.stdout is not None
    for _ in range(30):  # as `| head -30` does, then it leaves while pinrun still writes
        shown.stdout.readline()
    shown.stdout.close()
    _, errors = shown.communicate(timeout=60)
    assert b"pinrun: error" not in errors, errors
