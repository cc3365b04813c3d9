"""pin, status, run under a code policy, resume, runs --since, export of a run, hash seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.cli.inspect_commands import since_prefix
from pinrun.cli.main import cli
from pinrun.engine.records import load_run
from tests.helpers import SRC, Project

SHOP = """
import os
import pinrun

HERE = os.path.dirname(__file__)


@pinrun.step
def first(n: int) -> dict:
    return {"doubled": n * 2, "hash": hash("pinrun")}


@pinrun.step
def second(doubled: int) -> dict:
    if os.path.exists(os.path.join(HERE, "FAIL")):
        raise RuntimeError("asked to fail")
    return {"done": doubled + 1, "code": "v1", "hash_again": hash("pinrun")}


flow = pinrun.Flow("shop", [first, second])
"""


@pytest.fixture
def runner(project: Project, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner working in the project folder, with its store initialised."""
    project.write("shop", SHOP)
    monkeypatch.chdir(project.root)
    monkeypatch.delenv("PINRUN_STORE", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    return runner


def invoke(runner: CliRunner, *args: str, code: int = 0) -> Result:
    """Invoke pinrun and check its exit code."""
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr)
    return result


def test_pin_then_status_reports_each_step(runner: CliRunner, project: Project) -> None:
    """status: 0 when the code matches or only formatting changed, 1 with a diff otherwise."""
    target = project.entry("shop")
    assert "as flows/shop" in invoke(runner, "pin", target).output
    assert "the code matches" in invoke(runner, "status", target).output
    project.edit("shop", "return {\"doubled\": n * 2,", "return {\"doubled\": n*2,  # twice\n")
    out = invoke(runner, "status", target).output
    assert "formatting first" in " ".join(out.split())
    project.edit("shop", '"code": "v1"', '"code": "v2"')
    result = invoke(runner, "status", target, "--json", code=1)
    data = json.loads(result.stdout)
    assert data["changed"] is True
    states = {step["name"]: step["state"] for step in data["steps"]}
    assert states == {"first": "formatting", "second": "changed"}
    assert '+    return {"done": doubled + 1, "code": "v2"' in data["steps"][1]["diff"]


def test_status_of_a_flow_never_pinned_says_how(runner: CliRunner, project: Project) -> None:
    """An unpinned flow is a usage error that names `pinrun pin`."""
    result = invoke(runner, "status", project.entry("shop"), code=2)
    assert "pinrun pin" in result.stderr


def test_run_applies_the_code_policy_of_a_pinned_flow(runner: CliRunner,
                                                      project: Project) -> None:
    """warn runs the new code and says so; strict refuses; artifact runs the pinned code."""
    target = project.entry("shop")
    invoke(runner, "pin", target)
    project.edit("shop", '"code": "v1"', '"code": "v2"')
    warned = invoke(runner, "run", target, "--set", "n=1")
    assert "pinrun: warning:" in warned.stderr
    assert "step 'second' changed" in warned.stderr
    refused = invoke(runner, "run", target, "--set", "n=1", "--code-policy", "strict", code=1)
    assert "Refusing to run" in refused.stderr
    project.forget()
    pinned_run = invoke(runner, "run", target, "--set", "n=1", "--code-policy", "artifact")
    with Store.open(project.root / ".pinrun") as store:
        state = store.get_snapshot(load_run(store, warned.stdout.strip()).state)
        assert state["code"] == "v2"
        state = store.get_snapshot(load_run(store, pinned_run.stdout.strip()).state)
        assert state["code"] == "v1"
        assert len(store.refs("runs/")) == 2  # the refused run wrote nothing


def test_artifact_policy_needs_a_pin(runner: CliRunner, project: Project) -> None:
    """There is no pinned code to run before `pinrun pin`."""
    result = invoke(runner, "run", project.entry("shop"), "--set", "n=1", "--code-policy",
                    "artifact", code=2)
    assert "never pinned" in result.stderr


def test_resume_continues_a_failed_run(runner: CliRunner, project: Project) -> None:
    """A failed run is listed as failed, resumes, and shows both attempts."""
    marker = project.root / project.package / "FAIL"
    marker.touch()
    failed = invoke(runner, "run", project.entry("shop"), "--set", "n=4", "--json", code=1)
    run_id = json.loads(failed.stdout)["id"]
    listed = json.loads(invoke(runner, "runs", "--status", "failed", "--json").stdout)
    assert [r["id"] for r in listed] == [run_id]
    assert listed[0]["error"] == "RuntimeError: asked to fail"
    assert f"pinrun resume {run_id}" in invoke(runner, "show", run_id).output
    marker.unlink()
    resumed = json.loads(invoke(runner, "resume", run_id, "--json").stdout)
    assert resumed["status"] == "succeeded"
    shown = json.loads(invoke(runner, "show", run_id, "--json").stdout)
    assert [(s["name"], s["attempt"]) for s in shown["steps"]] == [
        ("first", 1), ("second", 1), ("second", 2)]
    again = invoke(runner, "resume", run_id, code=2)
    assert "already succeeded" in again.stderr


def test_runs_since(runner: CliRunner, project: Project) -> None:
    """--since keeps the runs started since a time; a bad time is a clear error."""
    invoke(runner, "run", project.entry("shop"), "--set", "n=1")
    assert len(json.loads(invoke(runner, "runs", "--since", "1h", "--json").stdout)) == 1
    assert json.loads(invoke(runner, "runs", "--since", "2999-01-01", "--json").stdout) == []
    assert "no runs match" in invoke(runner, "runs", "--since", "2999-01-01").output
    bad = invoke(runner, "runs", "--since", "yesterday", code=2)
    assert "2h, 3d" in bad.stderr


def test_since_prefix_forms() -> None:
    """Relative times count back from now; dates and times are UTC run-id prefixes."""
    import datetime as dt

    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    assert since_prefix("2h", now) == "20261123T100000000"
    assert since_prefix("1w", now) == "20261116T120000000"
    assert since_prefix("2026-11-20") == "20261120T000000000"
    assert since_prefix("2026-11-20T08:30+01:00") == "20261120T073000000"


def test_export_a_run_carries_its_code(runner: CliRunner, project: Project,
                                       tmp_path: Path) -> None:
    """`pinrun export RUN` writes the run with its pinned code; another store can show it."""
    run_id = invoke(runner, "run", project.entry("shop"), "--set", "n=1").stdout.strip()
    bundle = tmp_path / "run.pinrun"
    invoke(runner, "export", run_id[:18], "-o", str(bundle))
    other = tmp_path / "elsewhere"
    invoke(runner, "--store", str(other), "init")
    invoke(runner, "--store", str(other), "import", str(bundle))
    assert run_id in invoke(runner, "--store", str(other), "show", run_id).output
    with Store.open(other) as store:
        run = load_run(store, run_id)
        step_value = store.get_object(run.steps[0].code, Kind.STEP)  # type: ignore[arg-type]
        code = store.get_object(step_value["code"][0], Kind.CODE)
        assert "def first(n: int)" in code["source"]


def _cli(project: Project, *args: str, seed: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONHASHSEED", "PINRUN_HASH_SEED_SET", "PINRUN_STORE")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    if seed is not None:
        env["PYTHONHASHSEED"] = seed
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_runs_get_a_hash_seed_and_resume_reuses_it(project: Project) -> None:
    """Without PYTHONHASHSEED, `pinrun run` picks and records one; resume runs under it."""
    project.write("shop", SHOP)
    assert _cli(project, "init", seed=None).returncode == 0
    marker = project.root / project.package / "FAIL"
    marker.touch()
    failed = _cli(project, "run", project.entry("shop"), "--set", "n=1", "--json", seed=None)
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stdout)["id"]
    marker.unlink()
    resumed = _cli(project, "resume", run_id, seed=None)
    assert resumed.returncode == 0, resumed.stderr
    kept = _cli(project, "run", project.entry("shop"), "--set", "n=1", seed="123")
    with Store.open(project.root / ".pinrun") as store:
        run = load_run(store, run_id)
        assert run.env is not None
        seed = store.get_object(run.env, Kind.ENV)["hash_seed"]
        assert seed is not None
        assert seed.isdigit()
        state = store.get_snapshot(run.state)
        assert state["hash"] == state["hash_again"]  # the resumed step hashed alike
        other = load_run(store, kept.stdout.strip())
        assert other.env is not None
        assert store.get_object(other.env, Kind.ENV)["hash_seed"] == "123"
