"""The library is the tool: pinrun.replay keeps the recorded hash seed; verify workers are typed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.errors import MissingObjectError
from pinrun.flows.environment import hash_seed_state
from pinrun.verifier import replayer
from pinrun.verifier.report import ReplayReport
from pinrun.verifier.verify import verify_runs
from pinrun.verifier.worker import RunResult
from pinrun.world.processes import call_in_child
from tests.helpers import Project, project_cli
from tests.verifier.test_corrupt_recorded_output import _damage

FRUIT = """
import os

import pinrun

NAMES = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel",
         "imbe", "jujube", "kiwi", "lime", "mango", "nectar", "olive", "peach"]


@pinrun.step
def basket(n: int) -> dict:
    # The order of a set of strings: fixed by the process's hash seed, nothing else.
    return {"order": list(set(NAMES[:n]))}


fruit = pinrun.Flow("fruit", [basket])


@pinrun.step
def vanish(n: int) -> dict:
    if os.environ.get("PINRUN_TEST_VANISH_J2") and n == 0:
        os._exit(7)  # the process ends in the middle of the step
    return {"n": n}


vanishing = pinrun.Flow("vanishing", [vanish])
"""


@pytest.fixture
def fruit_run(project: Project, monkeypatch: pytest.MonkeyPatch) -> str:
    """A run of the fruit flow recorded by `pinrun run` under PYTHONHASHSEED=123."""
    project.write("fruit", FRUIT)
    assert project_cli(project, "init").returncode == 0
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    done = project_cli(project, "run", project.entry("fruit", "fruit"), "--set", "n=16")
    monkeypatch.delenv("PYTHONHASHSEED")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_library_replay_keeps_the_recorded_hash_seed(project: Project, fruit_run: str) -> None:
    """A run recorded under seed 123 whose output is a set's order: pinrun.replay from a
    process under another seed reproduces (in a child under 123), as `pinrun replay` does;
    the same replay in this process would diverge."""
    assert hash_seed_state() != "123"
    with Store.open(project.root / ".pinrun") as store:
        for code in ("pinned", "workdir"):
            report = pinrun.replay(fruit_run, store=store, code=code)
            assert isinstance(report, ReplayReport)
            assert report.reproduced, report.explain()
            assert [step.status for step in report.steps] == ["match"]
        # A flow object given for workdir code reaches the child by the name that leads to it.
        moved = pinrun.replay(fruit_run, store=store, code="workdir",
                              flow=project.load("fruit", "fruit"))
        assert moved.reproduced, moved.explain()
        here = replayer.replay(fruit_run, store=store, code="pinned")
    assert here.verdict == "diverged", "this process's seed should reorder the set"
    cli = project_cli(project, "replay", fruit_run, "--json")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["verdict"] == report.verdict == "reproduced"


@pytest.mark.slow
def test_verify_workers_hand_back_typed_results(project: Project, fruit_run: str) -> None:
    """verify_runs with two workers yields a RunResult per run, each with its ReplayReport
    (pickled across the pool); the fruit run replays under its recorded seed."""
    with Store.open(project.root / ".pinrun") as store:
        # Recorded here, under this process's random seed: nothing set-ordered in it.
        second = pinrun.record(project.load("fruit", "vanishing"), {"n": 3}, store=store).id
        results = list(verify_runs(store, [fruit_run, second], code="pinned", guards="warn",
                                   jobs=2))
    assert all(isinstance(result, RunResult) for result in results)
    assert {result.run_id for result in results} == {fruit_run, second}
    for result in results:
        assert isinstance(result.report, ReplayReport)
        assert result.verdict == "reproduced", result.report.explain()


@pytest.mark.slow
def test_verify_two_workers_with_one_that_dies(project: Project, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`pinrun verify -j2`: a run that kills its worker is an error for that run alone;
    the other runs, in the same and other workers, reproduce; the output is unchanged."""
    project.write("fruit", FRUIT)
    assert project_cli(project, "init").returncode == 0
    with Store.open(project.root / ".pinrun") as store:
        flow = project.load("fruit", "vanishing")
        runs = [pinrun.record(flow, {"n": n}, store=store).id for n in range(5)]
    monkeypatch.setenv("PINRUN_TEST_VANISH_J2", "1")
    out = tmp_path / "verify.json"
    done = project_cli(project, "verify", "-j", "2", "--json", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verified 5 runs: 4 reproduced, 0 diverged, 1 could not replay" in done.stdout
    results = {result["run"]: result for result in json.loads(out.read_text())["results"]}
    assert results[runs[0]]["verdict"] == "error"
    assert "a worker process died" in results[runs[0]]["error"]
    assert all(results[run]["verdict"] == "reproduced" for run in runs[1:])


@pytest.mark.slow
def test_a_store_error_in_the_child_is_raised_here(project: Project, fruit_run: str) -> None:
    """A recorded object gone from the store: pinrun.replay under the run's seed (in a
    child) raises the child's own MissingObjectError, naming the digest, as in process."""
    with Store.open(project.root / ".pinrun") as store:
        (record,) = load_run(store, fruit_run).steps
        assert record.outputs is not None
        _damage(store, record.outputs, delete=True)
        with pytest.raises(MissingObjectError) as raised:
            pinrun.replay(fruit_run, store=store, code="pinned")
    assert raised.value.digest == record.outputs
    assert record.outputs.hex[:12] in str(raised.value)


def test_a_childs_answer_is_read_as_data() -> None:
    """call_in_child hands back pinrun's types and builtins; an answer naming any other
    class is refused (the child ran project code), and a child's exception is a failure."""
    assert call_in_child("os.path:basename", "a/b").value == "b"
    refused = call_in_child("collections:OrderedDict", [("a", 1)])
    assert refused.value is None
    assert "may not name collections.OrderedDict" in (refused.failure or "")
    raised = call_in_child("os:fspath", 3)
    assert raised.failure is not None
    assert raised.failure.startswith("TypeError")
    assert os.environ.get("PYTHONHASHSEED") != "123"


def test_a_forged_answer_cannot_reach_through_a_pinrun_module(tmp_path: Path) -> None:
    """An answer naming pinrun.world.processes:os.system (a dotted name) is refused: the parent
    resolves only classes pinrun defines, and runs nothing."""
    marker = tmp_path / "marker"
    forged = call_in_child("tests.verifier.child_targets:forged_answer", str(marker))
    assert "may not name pinrun.world.processes.os.system" in (forged.failure or "")
    assert not marker.exists()


@pytest.mark.slow
def test_a_process_the_child_leaves_running_does_not_hold_the_parent() -> None:
    """The answer comes back when the child ends, not when a process it left does."""
    import time

    started = time.monotonic()
    assert call_in_child("tests.verifier.child_targets:leave_a_process", 30).value == "done"
    assert time.monotonic() - started < 25  # the leftover sleeps 30 s
