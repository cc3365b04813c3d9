"""--perturb home, umask, cwd, fileorder and hostname, and the environment drift a replay
names: through the CLI, in a throwaway project, each variation naming itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SRC, Project, project_cli

#: Each step's result depends on one condition of the world.
FRAGILE = """
import os
import socket
import stat
from pathlib import Path

import pinrun


@pinrun.step
def listing(listed: str) -> dict:
    return {"names": os.listdir(listed)}


@pinrun.step
def home(listed: str) -> dict:
    return {"home": str(Path.home())}


@pinrun.step
def where(listed: str) -> dict:
    return {"cwd": os.getcwd()}


@pinrun.step
def mode(scratch: str) -> dict:
    path = Path(scratch, "made.txt")
    path.unlink(missing_ok=True)
    path.write_text("made")
    return {"mode": oct(stat.S_IMODE(path.stat().st_mode))}


@pinrun.step
def host(listed: str) -> dict:
    return {"host": socket.gethostname()}


flow = pinrun.Flow("fragile", [listing, home, where, mode, host])
"""

#: The same reads, made so that the condition cannot change the result.
STEADY = """
import os
import socket
import stat
from pathlib import Path

import pinrun


@pinrun.step
def sorted_listing(listed: str) -> dict:
    return {"sorted": sorted(os.listdir(listed))}


@pinrun.step
def explicit_path(listed: str) -> dict:
    return {"settings": Path(listed, "b.txt").expanduser().read_text()}


@pinrun.step
def absolute(listed: str) -> dict:
    return {"absolute": os.path.isabs(os.getcwd())}


@pinrun.step
def chmodded(scratch: str) -> dict:
    path = Path(scratch, "set.txt")
    path.unlink(missing_ok=True)
    path.write_text("set")
    os.chmod(path, 0o640)
    return {"set_mode": oct(stat.S_IMODE(path.stat().st_mode))}


@pinrun.step
def named(listed: str) -> dict:
    return {"named": bool(socket.gethostname())}


flow = pinrun.Flow("steady", [sorted_listing, explicit_path, absolute, chmodded, named])
"""

#: The step of FRAGILE each new variation makes diverge.
DIVERGES_AT = {"home": "home", "umask": "mode", "cwd": "where", "fileorder": "listing",
               "hostname": "host"}
#: What each one's replay names as environment drift.
DRIFT = {"home": "environment drift: home: ", "umask": "environment drift: umask: 0022 -> 0077",
         "cwd": "environment drift: cwd: ", "hostname": "environment drift: hostname: "}


def _pinrun(project: Project, *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None,
            umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun ARGS`` as project_cli runs it, under ``umask``, with ``env``
    added and from ``cwd`` (the project folder unless given)."""
    base = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    base.update(PYTHONPATH=os.pathsep.join([str(SRC), str(project.root)]), **(env or {}))
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=cwd or project.root,
                          env=base, capture_output=True, text=True, timeout=300, check=False,
                          umask=umask)


def _record(project: Project, module: str, source: str, tmp_path: Path) -> str:
    """Record ``module``'s flow over a folder of five files, under umask 0022."""
    listed, scratch = tmp_path / "listed", tmp_path / "scratch"
    for folder in (listed, scratch):
        folder.mkdir(exist_ok=True)
    for name in ("d.txt", "b.txt", "e.txt", "a.txt", "c.txt"):
        (listed / name).write_text(name)
    project.write(module, source)
    if not (project.root / ".pinrun").exists():
        assert project_cli(project, "init").returncode == 0
    done = _pinrun(project, "run", project.entry(module), "--set",
                   f"listed={json.dumps(str(listed))}", "--set",
                   f"scratch={json.dumps(str(scratch))}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _replay(project: Project, run_id: str, *args: str, code: int,
            **where: Any) -> dict[str, Any]:
    result = _pinrun(project, "replay", run_id, *args, "--json", **where)
    assert result.returncode == code, result.stdout + result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


@pytest.mark.slow
def test_each_variation_names_itself_at_the_step_it_changes(project: Project,
                                                           tmp_path: Path) -> None:
    """--perturb all: home, umask, cwd, fileorder and hostname each diverge at the step
    that reads their condition, naming their drift; hashseed, tz and locale reproduce."""
    run_id = _record(project, "fragile", FRAGILE, tmp_path)
    report = _replay(project, run_id, "--perturb", "all", code=1)
    assert report["verdict"] == "reproduced"  # in the recording's own conditions
    by_kind = {item["kind"]: item for item in report["perturbations"]}
    assert list(by_kind) == ["hashseed", "tz", "locale", *DIVERGES_AT]
    for kind in ("hashseed", "tz", "locale"):
        assert by_kind[kind]["verdict"] == "reproduced", by_kind[kind]
    for kind, step in DIVERGES_AT.items():
        item = by_kind[kind]
        assert (item["verdict"], item["first_divergence"]) == ("diverged", step), item
        assert f"first divergence: step '{step}'" in item["explanation"]
        if kind in DRIFT:
            assert DRIFT[kind] in item["explanation"], item["explanation"]
    assert by_kind["umask"]["change"] == "umask 0077 (recorded: 0022)"
    assert by_kind["hostname"]["change"].startswith("host name pinrun-perturbed-host")
    assert by_kind["fileorder"]["change"] == "directory listings in reverse order"


@pytest.mark.slow
def test_the_deterministic_counterparts_reproduce_under_every_variation(
        project: Project, tmp_path: Path) -> None:
    """A sorted listing, an explicit path, a chmod and a host name only tested for being
    there reproduce under the five new variations (and the store and project are found
    from another working folder)."""
    run_id = _record(project, "steady", STEADY, tmp_path)
    report = _replay(project, run_id, "--perturb", "home,umask,cwd,fileorder,hostname", code=0)
    assert [(item["kind"], item["verdict"]) for item in report["perturbations"]] == [
        (kind, "reproduced") for kind in DIVERGES_AT]


@pytest.mark.slow
def test_one_variation_in_text_says_what_the_outcome_depends_on(project: Project,
                                                                tmp_path: Path) -> None:
    """--perturb fileorder in text: the variation's heading, its diff, and the verdict
    that the outcome depends on fileorder."""
    run_id = _record(project, "fragile", FRAGILE, tmp_path)
    result = _pinrun(project, "replay", run_id, "--perturb", "fileorder", env={"COLUMNS": "240"})
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "under directory listings in reverse order (fileorder): diverged at step " \
        "'listing'" in out
    assert "~ names[" in out
    assert "the outcome depends on: fileorder" in out


@pytest.mark.slow
def test_a_replay_in_another_place_names_each_drift(project: Project, tmp_path: Path) -> None:
    """Replayed with another HOME, umask and working folder, the diverged run lists each
    as environment drift, old -> new (the hashing and the rest unchanged)."""
    run_id = _record(project, "fragile", FRAGILE, tmp_path)
    elsewhere, other_home = tmp_path / "elsewhere", tmp_path / "other-home"
    elsewhere.mkdir()
    other_home.mkdir()
    result = _pinrun(project, "replay", run_id, "--store", str(project.root / ".pinrun"),
                     "--json", cwd=elsewhere, env={"HOME": str(other_home)}, umask=0o077)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["first_divergence"] == "home"
    drift = [cause["message"] for cause in report["causes"]
             if cause["kind"] == "environment drift"]
    assert f"home: {Path.home()} -> {other_home}" in drift
    assert "umask: 0022 -> 0077" in drift
    assert f"cwd: {project.root} -> {elsewhere}" in drift
    assert not [line for line in drift if line.startswith(("hostname", "TZ", "hash seed"))]


#: A step that reads a file of the project by its absolute path (found from the module).
READS_CONFIG = """
from pathlib import Path

import pinrun

CONFIG = Path(__file__).resolve().parent.parent / "settings.ini"  # the project folder


@pinrun.step
def configured(n: int) -> dict:
    return {"setting": CONFIG.read_text().strip(), "seen": n}


flow = pinrun.Flow("configured", [configured])
"""


@pytest.mark.slow
def test_a_store_not_named_pinrun_keeps_its_file_inputs_under_another_cwd(
        project: Project) -> None:
    """The store at ``runs/`` (not ``.pinrun``): the project is the folder the run was
    recorded from, and a replay from another working folder (--perturb cwd) checks the
    file the step read there, not in the child's fresh folder, so it reproduces."""
    project.write("configured", READS_CONFIG)
    (project.root / "settings.ini").write_text("fast\n")
    store = project.root / "runs"
    assert _pinrun(project, "--store", str(store), "init").returncode == 0
    done = _pinrun(project, "--store", str(store), "run", project.entry("configured"),
                   "--set", "n=1")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    shown = _pinrun(project, "--store", str(store), "show", run_id)
    assert "settings.ini" in shown.stdout, shown.stdout
    result = _pinrun(project, "--store", str(store), "replay", run_id, "--perturb", "cwd",
                     "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [(item["kind"], item["verdict"]) for item in report["perturbations"]] == [
        ("cwd", "reproduced")]
    (project.root / "settings.ini").write_text("slow\n")
    changed = _pinrun(project, "--store", str(store), "replay", run_id, "--json")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    explanation = json.loads(changed.stdout)["explanation"]
    assert "cause: file system: input file changed: settings.ini (" in explanation
    # And from the child's fresh folder, the change is named the same way.
    moved = _pinrun(project, "--store", str(store), "replay", run_id, "--perturb", "cwd",
                    "--json")
    assert moved.returncode == 1, moved.stdout + moved.stderr
    (perturbed,) = json.loads(moved.stdout)["perturbations"]
    assert "cause: file system: input file changed: settings.ini (" in \
        perturbed["explanation"], perturbed
