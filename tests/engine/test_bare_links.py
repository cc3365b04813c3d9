"""Commits that leave the state out: a run killed after any step loads with the state
it had then, rebuilt, and resumes to the record of a run never stopped."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.maintenance import fsck, gc
from pinrun.artifacts.store import Store
from pinrun.engine import run as run_module
from pinrun.engine.rebuilt_state import state_values
from pinrun.engine.records import NO_STATE, STATE_EVERY, RunRecord, load_run, run_ref
from pinrun.engine.resume import resume
from pinrun.engine.run import record
from pinrun.flows import Flow
from tests.helpers import Project

LINEAR = 6  # steps before the level of two siblings
AFTER = 10  # steps after it

SOURCE = f"""
import os
import pinrun

MARKERS = os.path.dirname(__file__)

def _stop(here):
    path = os.path.join(MARKERS, "STOP")
    if os.path.exists(path):
        with open(path) as marker:
            if marker.read() == here:
                raise KeyboardInterrupt

def bump(count: int) -> dict:
    _stop(str(count))
    return {{"count": count + 1, f"k{{count:02d}}": {{"n": count, "pad": "x" * count}}}}

def left(count: int) -> dict:
    _stop("left")
    return {{"left": count, "shared": "left"}}

def right(count: int, left: int = -1) -> dict:
    _stop("right")
    return {{"right": count + left}}

steps = [pinrun.step(name=f"s{{i:02d}}")(bump) for i in range({LINEAR})]
steps.append(pinrun.step(name="left", after=["s{LINEAR - 1:02d}"])(left))
steps.append(pinrun.step(name="right", after=["s{LINEAR - 1:02d}"])(right))
steps.append(pinrun.step(name="s{LINEAR:02d}", after=["left", "right"])(bump))
steps += [pinrun.step(name=f"s{{i:02d}}")(bump) for i in range({LINEAR + 1}, {LINEAR + AFTER})]
flow = pinrun.Flow("bare", steps, on_collision="overwrite")
"""
#: Where a run can be stopped: as each step starts.
STOPS = [str(i) for i in range(LINEAR)] + ["left", "right"] + \
    [str(i) for i in range(LINEAR, LINEAR + AFTER)]


def _flow(project: Project) -> Flow:
    project.write("bare", SOURCE)
    flow = importlib.import_module(f"{project.package}.bare").flow
    assert isinstance(flow, Flow)
    return flow


def _inputs(wide: bool) -> dict[str, Any]:
    """The run's inputs; ``wide``: enough small values that the state is paged."""
    inputs: dict[str, Any] = {"count": 0}
    if wide:
        inputs.update({f"w{i:04d}": "y" * 60 for i in range(1500)})
    return inputs


def _expected(stop: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The state of a run stopped as step ``stop`` starts, as the recorder merged it."""
    state = dict(inputs)
    for here in STOPS[:STOPS.index(stop)]:
        count = state["count"]
        if here == "left":
            state.update(left=count, shared="left")
        elif here == "right":
            state.update(right=count - 1)  # (it reads the level's start: no left yet)
        else:
            state.update({"count": count + 1, f"k{count:02d}": {"n": count, "pad": "x" * count}})
    return state


def _stopped(project: Project, store: Store, flow: Flow, stop: str,
             inputs: dict[str, Any]) -> RunRecord:
    """A run stopped (KeyboardInterrupt, as a kill) as step ``stop`` starts."""
    marker = project.root / project.package / "STOP"
    before = set(store.refs("runs/"))
    marker.write_text(stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            record(flow, inputs, store=store)
    finally:
        marker.unlink()
    (name,) = set(store.refs("runs/")) - before
    return load_run(store, name.split("/", 1)[1])


def _snapshot_digest(tmp_path: Path, state: dict[str, Any]) -> Digest:
    """The digest of ``state``'s snapshot as a store writes it."""
    with Store.open(tmp_path / "scratch", create=True) as scratch, scratch.batch() as batch:
        return batch.put_snapshot(state)


def _head(store: Store, run: RunRecord) -> RunRecord:
    digest = store.ref(run_ref(run.id))
    return RunRecord.from_value(store.get_object(digest, Kind.RUN), digest=digest)


@pytest.mark.parametrize("wide", [False, True], ids=["small", "paged"])
def test_a_run_stopped_after_any_step_has_its_state_and_resumes_whole(
        project: Project, project_store: Store, tmp_path: Path, wide: bool) -> None:
    """Stopped as each step starts, a run loads with the state of that moment (its digest
    the snapshot's, whether its newest link stored it or not), and resumes to a run
    never stopped: the same steps, outputs and state; fsck is clean throughout."""
    flow = _flow(project)
    inputs = _inputs(wide)
    straight = record(flow, inputs, store=project_store)
    bare = 0
    for stop in STOPS[1:]:
        run = _stopped(project, project_store, flow, stop, inputs)
        assert run.status == "running"
        expected = _expected(stop, inputs)
        assert run.state == _snapshot_digest(tmp_path / stop, expected)
        if _head(project_store, run).state == NO_STATE:
            bare += 1
            assert run.rebuilt_state is not None
            assert state_values(project_store, run.rebuilt_state) == expected
        else:
            assert run.rebuilt_state is None
            assert project_store.get_snapshot(run.state) == expected
        assert fsck(project_store).ok
        resumed = resume(run.id, store=project_store)
        assert resumed.status == "succeeded"
        assert resumed.rebuilt_state is None
        assert resumed.state == straight.state
        # (The steps before the stop read the marker file: their file inputs differ.)
        assert [(s.name, s.inputs, s.outputs, s.code) for s in resumed.steps] == \
            [(s.name, s.inputs, s.outputs, s.code) for s in straight.steps]
        assert load_run(project_store, run.id) == resumed
    assert bare >= len(STOPS) - 5  # most links left the state out
    assert fsck(project_store).ok


def test_a_rebuilt_state_survives_gc(project: Project, project_store: Store,
                                     tmp_path: Path) -> None:
    """What a rebuild reads (the newest stored state, the steps' outputs since) is reachable
    from the run's ref: gc keeps it, and the run still loads and resumes."""
    flow = _flow(project)
    run = _stopped(project, project_store, flow, str(LINEAR + 3), _inputs(False))
    assert _head(project_store, run).state == NO_STATE
    gc(project_store)
    assert fsck(project_store).ok
    again = load_run(project_store, run.id)
    assert again == run
    assert resume(run.id, store=project_store).status == "succeeded"
    assert fsck(project_store).ok


def test_every_few_commits_store_the_state(project: Project, project_store: Store) -> None:
    """A run's every STATE_EVERY-th commit stores the state, so a rebuild merges at most
    STATE_EVERY - 1 commits' steps (from the run's inputs, before the first)."""
    flow = _flow(project)
    run = _stopped(project, project_store, flow, str(LINEAR + AFTER - 1), _inputs(False))
    digest: Digest | None = project_store.ref(run_ref(run.id))
    stored: list[bool] = []
    while digest is not None:
        link = RunRecord.from_value(project_store.get_object(digest, Kind.RUN), digest=digest)
        stored.append(link.state != NO_STATE)
        digest = link.continues
    stored.reverse()  # the first commit first
    assert [index for index, has in enumerate(stored) if has] == \
        list(range(STATE_EVERY - 1, len(stored), STATE_EVERY))


def test_links_that_all_store_the_state_still_load_and_resume(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain whose every link names its state (as pinrun wrote them before) loads
    with the newest link's state, read as stored, and resumes as before."""
    flow = _flow(project)
    straight = record(flow, _inputs(False), store=project_store)
    monkeypatch.setattr(run_module, "STATE_EVERY", 1)
    run = _stopped(project, project_store, flow, str(LINEAR + 2), _inputs(False))
    assert _head(project_store, run).state != NO_STATE
    assert _head(project_store, run).to_value()["format"] == 1
    assert run.rebuilt_state is None
    assert project_store.get_snapshot(run.state) == _expected(str(LINEAR + 2), _inputs(False))
    monkeypatch.undo()
    resumed = resume(run.id, store=project_store)
    assert resumed.state == straight.state
    assert fsck(project_store).ok


def test_a_stateless_link_is_format_2_and_an_older_reader_is_told_to_upgrade(
        project: Project, project_store: Store) -> None:
    """A link without its state says format 2; a reader of format 1 only (an older
    pinrun) refuses it with "upgrade pinrun" instead of resuming from another state."""
    from pinrun.artifacts import shapes

    flow = _flow(project)
    run = _stopped(project, project_store, flow, "3", _inputs(False))
    head = _head(project_store, run)
    value = head.to_value()
    assert value["format"] == 2
    assert value["state"] is None
    only_one = {**value, "format": 1}
    problem = shapes.shape_problem(Kind.RUN, only_one)
    assert problem is not None
    assert "state should be a digest" in problem


def test_show_names_a_rebuilt_state_and_says_it_is_not_stored_yet(
        project: Project, project_store: Store) -> None:
    """``pinrun show`` of a run whose newest link left the state out gives the rebuilt
    state's digest, and says its tree is not stored yet."""
    import json

    from click.testing import CliRunner

    from pinrun.cli.main import cli

    run = _stopped(project, project_store, _flow(project), "3", _inputs(False))
    assert run.rebuilt_state is not None
    runner = CliRunner()
    shown = runner.invoke(cli, ["show", run.id, "--store", str(project_store.path)],
                          catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert f"final state {run.state.short}  (rebuilt, not stored yet)" in shown.stdout
    as_json = runner.invoke(cli, ["show", run.id, "--json", "--store", str(project_store.path)],
                            catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["state"] == run.state.hex
