"""A killed `pinrun accept` leaves nothing half done, and a retry finishes its own work.

`pinrun accept` runs as a real process and is killed with SIGKILL while its
new baseline's last step runs (the step waits on a file the test controls).
Then the retry must adopt that interrupted baseline, not add another, and the
old run must end with exactly one baseline, linked, and no unlinked leftover.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.engine.run import REPLACING_PREFIX, replaced_ref
from tests.helpers import SRC, Project

FLOW = """
import os
import time

import pinrun

BLOCK = {block!r}
STARTED = {started!r}
GO = {go!r}
EFFECTS = {effects!r}


def quote(code):
    with open(EFFECTS, "a") as calls:
        calls.write(code + "\\n")
    return 9.5


@pinrun.step
def load(sku: str) -> dict:
    return {{"code": sku.upper()}}


@pinrun.step
def price(code: str, ctx: pinrun.Context) -> dict:
    unit = ctx.effect("quote", quote, code)
    if os.path.exists(BLOCK):
        open(STARTED, "w").close()
        while not os.path.exists(GO):
            time.sleep(0.02)
    return {{"total": unit * 2, "version": 1}}


flow = pinrun.Flow("accepting", [load, price])
"""


def _cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=project.root,
                          env=_env(project), capture_output=True, text=True, timeout=120,
                          check=False)


def _env(project: Project) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PINRUN_STORE", "PYTHONHASHSEED", "PINRUN_HASH_SEED_SET")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    return env


def _runs(project: Project) -> dict[str, dict[str, Any]]:
    listed = _cli(project, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    return {run["id"]: run for run in json.loads(listed.stdout)}


class _Files:
    """The files the flow's second step watches and writes."""

    def __init__(self, folder: Path) -> None:
        self.block, self.started = folder / "block", folder / "started"
        self.go, self.effects = folder / "go", folder / "effects"


@pytest.fixture
def killed(project: Project, tmp_path: Path) -> tuple[str, str, _Files]:
    """A recorded run, the code changed, and an accept of it SIGKILLed mid-baseline:
    (old run id, interrupted new run id, the files)."""
    files = _Files(tmp_path)
    project.write("shop", FLOW.format(block=str(files.block), started=str(files.started),
                                      go=str(files.go), effects=str(files.effects)))
    assert _cli(project, "init").returncode == 0
    recorded = _cli(project, "run", project.entry("shop"), "--set", 'sku="a1"')
    assert recorded.returncode == 0, recorded.stderr
    old = recorded.stdout.strip()
    project.edit("shop", '"version": 1', '"version": 2')  # the intended change
    files.block.touch()
    child = subprocess.Popen([sys.executable, "-m", "pinrun", "accept", old],
                             cwd=project.root, env=_env(project),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not files.started.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "accept never reached its last step"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    runs = _runs(project)
    (new,) = [run_id for run_id in runs if run_id != old]
    assert runs[new]["status"] == "interrupted"
    assert runs[new]["steps"] == ["load"]  # the first step was committed, the last was not
    with Store.open(project.root / ".pinrun") as store:
        assert store.get_ref(replaced_ref(old)) is None  # not a baseline yet
        assert list(store.refs(REPLACING_PREFIX)) == [f"{REPLACING_PREFIX}{old}"]
    files.go.touch()  # from now on the step goes straight through
    return old, new, files


def _one_baseline(project: Project, old: str) -> str:
    """Check the store holds the old run and exactly one finished, linked baseline."""
    runs = _runs(project)
    assert len(runs) == 2, runs
    (new,) = [run_id for run_id in runs if run_id != old]
    assert runs[old]["status"] == runs[new]["status"] == "succeeded"
    with Store.open(project.root / ".pinrun") as store:
        record = load_run(store, new)
        assert record.replaces == old
        assert store.get_ref(replaced_ref(old)) == record.digest
        assert store.refs(REPLACING_PREFIX) == {}
    return new


@pytest.mark.slow
def test_a_retried_accept_adopts_its_interrupted_baseline(
        project: Project, killed: tuple[str, str, _Files]) -> None:
    """The retry (here by --flow, which also selects the interrupted run) resumes the
    interrupted baseline: one baseline, linked, effects still not called again."""
    old, interrupted, files = killed
    retried = _cli(project, "accept", "--flow", "accepting")
    assert retried.returncode == 0, retried.stderr
    assert f"{old} -> {interrupted} (succeeded)" in retried.stdout
    assert "accepted 1 run(s)" in retried.stdout
    assert _one_baseline(project, old) == interrupted
    with Store.open(project.root / ".pinrun") as store:
        steps = load_run(store, interrupted).steps
    assert [(s.name, s.attempt) for s in steps] == [("load", 1), ("price", 1)]
    assert files.effects.read_text() == "A1\n"  # only the original run called the world
    verified = _cli(project, "verify")
    assert verified.returncode == 0, (verified.stdout, verified.stderr)


@pytest.mark.slow
def test_a_retry_after_the_code_changed_again_replaces_the_interrupted_baseline(
        project: Project, killed: tuple[str, str, _Files]) -> None:
    """When the code changed since the kill, the interrupted run (never a baseline) is
    dropped and a fresh baseline is recorded with the new code: still exactly one."""
    old, interrupted, _ = killed
    project.edit("shop", '"version": 2', '"version": 3')
    retried = _cli(project, "accept", old)
    assert retried.returncode == 0, retried.stderr
    new = _one_baseline(project, old)
    assert new != interrupted
    shown = _cli(project, "show", new, "--json")
    assert json.loads(shown.stdout)["status"] == "succeeded"
    assert _cli(project, "verify").returncode == 0


INTERRUPTIBLE = """
import os

import pinrun

STOP = {stop!r}


@pinrun.step
def load(sku: str) -> dict:
    return {{"code": sku.upper()}}


@pinrun.step
def price(code: str) -> dict:
    if os.path.exists(STOP):
        raise KeyboardInterrupt  # the user stops the run: it is left interrupted
    return {{"total": 2}}


flow = pinrun.Flow("interruptible", [load, price])
"""


def test_an_unfinished_baseline_refuses_a_second_one_until_adopted(
        project: Project, project_store: Store, tmp_path: Path) -> None:
    """While a run has an unfinished new baseline, recording another one for it raises
    BaselineBusyError and writes nothing; accept then adopts the unfinished one."""
    import pinrun
    from pinrun.errors import BaselineBusyError
    from pinrun.verifier.accept import accept

    stop = tmp_path / "stop"
    project.write("shop", INTERRUPTIBLE.format(stop=str(stop)))
    flow = project.load("shop")
    old = pinrun.record(flow, {"sku": "a1"}, store=project_store,
                        entry=project.entry("shop"))
    stop.touch()
    with pytest.raises(KeyboardInterrupt):
        pinrun.record(flow, {"sku": "a1"}, store=project_store, replaces=old,
                      entry=project.entry("shop"))
    (claim,) = project_store.refs(REPLACING_PREFIX).values()
    first = load_run(project_store, project_store.get_object(claim, Kind.RUN)["id"])
    assert first.status == "running"
    refs = project_store.refs()
    with pytest.raises(BaselineBusyError, match=old.id):
        pinrun.record(flow, {"sku": "a1"}, store=project_store, replaces=old,
                      entry=project.entry("shop"))
    assert project_store.refs() == refs  # nothing was written
    stop.unlink()
    (accepted,) = accept(project_store, [old.id])
    assert accepted.new.id == first.id
    assert accepted.new.status == "succeeded"
    assert project_store.get_ref(replaced_ref(old.id)) == accepted.new.digest
    assert project_store.refs(REPLACING_PREFIX) == {}
