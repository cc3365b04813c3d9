"""pin, status, run under a code policy, resume, runs --since, export of a run, hash seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.cli.inspect_commands import since_prefix
from pinrun.engine.records import load_run
from tests.cli.conftest import invoke
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
def runner(project: Project, project_cli: CliRunner) -> CliRunner:
    """A CLI runner working in the project folder, with its store initialised."""
    project.write("shop", SHOP)
    return project_cli



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


LIB = """
import pinrun

FACTOR = 10


@pinrun.step
def calc(x: int) -> dict:
    return {"y": x * FACTOR}
"""

WF = """
import pinrun
from {package}.lib import calc

flow = pinrun.Flow("wf", [calc])
"""


def test_artifact_runs_pinned_code_defined_across_modules(runner: CliRunner,
                                                          project: Project) -> None:
    """The flow's own module and packages are pinned; nothing is taken from disk."""
    project.write("lib", LIB)
    project.write("wf", WF.format(package=project.package))
    target = project.entry("wf")
    invoke(runner, "pin", target)
    project.edit("lib", "FACTOR = 10", "FACTOR = 99")
    run_id = invoke(runner, "run", target, "--set", "x=1", "--code-policy", "artifact").stdout
    with Store.open(project.root / ".pinrun") as store:
        assert store.get_snapshot(load_run(store, run_id.strip()).state)["y"] == 10
    assert f"{project.package}.wf" not in sys.modules  # the pinned modules left with the run
    assert project.load("lib", "FACTOR") == 99


def test_gc_keeps_what_pin_stored(runner: CliRunner, project: Project) -> None:
    """flows/NAME reaches the flow, its steps, their code and the environment."""
    target = project.entry("shop")
    invoke(runner, "pin", target)
    assert "deleted 0" in invoke(runner, "gc").output
    assert "the code matches" in invoke(runner, "status", target).output
    assert json.loads(invoke(runner, "fsck", "--json").stdout)["ok"] is True


def test_a_syntax_error_on_disk(runner: CliRunner, project: Project) -> None:
    """status names the file and line (exit 2); artifact runs the pinned code anyway."""
    target = project.entry("shop")
    invoke(runner, "pin", target)
    project.edit("shop", "def second(", "def second(:")
    result = invoke(runner, "status", target, code=2)
    assert "shop.py, line" in result.stderr
    invoke(runner, "run", target, "--set", "n=1", "--code-policy", "artifact")


VERSIONED = """
import pinrun


@pinrun.step(version="1")
def scaled(x: int) -> dict:
    return {"y": x * 2}


flow = pinrun.Flow("versioned", [scaled])
"""


def test_status_of_a_versioned_step(runner: CliRunner, project: Project) -> None:
    """version= decides: a code change under the same version is flagged, not counted."""
    project.write("versioned", VERSIONED)
    target = project.entry("versioned")
    invoke(runner, "pin", target)
    project.edit("versioned", "x * 2", "x * 3")
    data = json.loads(invoke(runner, "status", target, "--json").stdout)
    assert [s["state"] for s in data["steps"]] == ["same-version"]
    project.edit("versioned", 'version="1"', 'version="2"')
    data = json.loads(invoke(runner, "status", target, "--json", code=1).stdout)
    assert [s["state"] for s in data["steps"]] == ["changed"]


def test_a_file_target_is_recorded_by_its_project_path(runner: CliRunner, project: Project,
                                                       tmp_path: Path) -> None:
    """pipelines/json.py:flow is recorded by its path, imports as pipelines.json (no clash
    with the json module), and resumes."""
    folder = project.root / "pipelines"
    folder.mkdir()
    (folder / "json.py").write_text(SHOP)
    (project.root / "pipelines" / "FAIL").touch()
    failed = invoke(runner, "run", "pipelines/json.py:flow", "--set", "n=2", "--json", code=1)
    run_id = json.loads(failed.stdout)["id"]
    shown = json.loads(invoke(runner, "show", run_id, "--json").stdout)
    assert shown["entry"] == "pipelines/json.py:flow"
    assert sys.modules["json"].__file__ != str(folder / "json.py")
    (project.root / "pipelines" / "FAIL").unlink()
    assert json.loads(invoke(runner, "resume", run_id, "--json").stdout)["status"] == \
        "succeeded"
    for name in ("pipelines", "pipelines.json"):
        sys.modules.pop(name, None)


PORTABLE = """
import os
import pinrun


@pinrun.step
def first(n: int) -> dict:
    return {"doubled": n * 2}


@pinrun.step
def second(doubled: int) -> dict:
    if os.environ.get("PINRUN_TEST_FAIL"):
        raise RuntimeError("asked to fail")
    return {"done": doubled + 1}


flow = pinrun.Flow("portable", [first, second])
"""


def test_an_imported_run_resumes_with_its_pinned_code_alone(
        runner: CliRunner, project: Project, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Export a failed run, import it in an empty project, resume it with artifact."""
    project.write("portable", PORTABLE)
    monkeypatch.setenv("PINRUN_TEST_FAIL", "1")
    failed = invoke(runner, "run", project.entry("portable"), "--set", "n=5", "--json",
                    code=1)
    run_id = json.loads(failed.stdout)["id"]
    bundle = tmp_path / "run.pinrun"
    invoke(runner, "export", run_id, "-o", str(bundle))
    project.close()  # the package is gone from sys.path and sys.modules
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    monkeypatch.chdir(laptop)
    invoke(runner, "init")
    invoke(runner, "import", str(bundle))
    monkeypatch.delenv("PINRUN_TEST_FAIL")
    resumed = invoke(runner, "resume", run_id, "--code-policy", "artifact", "--json")
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    with Store.open(laptop / ".pinrun") as store:
        assert store.get_snapshot(load_run(store, run_id).state)["done"] == 11
    assert not (laptop / project.package).exists()  # no file of the code was written


def test_pythonhashseed_random_still_gets_a_recorded_seed(project: Project) -> None:
    """PYTHONHASHSEED=random asks for no particular seed: pinrun picks one and records it."""
    project.write("shop", SHOP)
    assert _cli(project, "init", seed=None).returncode == 0
    result = _cli(project, "run", project.entry("shop"), "--set", "n=1", seed="random")
    assert result.returncode == 0, result.stderr
    with Store.open(project.root / ".pinrun") as store:
        run = load_run(store, result.stdout.strip())
        assert run.env is not None
        assert store.get_object(run.env, Kind.ENV)["hash_seed"].isdigit()
