"""Step commits as a chain of links: each commit stores only its new steps, and
every reader sees the whole record."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts import codec
from pinrun.artifacts.bundle import export_bundle
from pinrun.artifacts.bundle_import import import_bundle
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.maintenance import fsck, gc
from pinrun.artifacts.store import Store
from pinrun.engine.records import (
    NO_STATE,
    STATE_EVERY,
    RunRecord,
    load_run,
    load_run_object,
    load_timing,
    run_ref,
)
from pinrun.engine.resume import resume
from pinrun.engine.run import record
from pinrun.errors import CorruptObjectError, RunFailedError
from pinrun.flows import Flow
from tests.helpers import Project

STEPS = 30

LONG = f"""
import os
import pinrun

MARKERS = os.path.dirname(__file__)

def _stop_at():
    path = os.path.join(MARKERS, "STOP")
    if not os.path.exists(path):
        return None
    with open(path) as marker:
        return int(marker.read())

def bump(count: int) -> dict:
    if count == _stop_at():
        raise KeyboardInterrupt
    return {{"count": count + 1}}

flow = pinrun.Flow("long", [pinrun.step(name=f"s{{i:02d}}")(bump) for i in range({STEPS})],
                   on_collision="overwrite")
"""


def _flow(project: Project) -> Flow:
    project.write("long", LONG)
    flow = importlib.import_module(f"{project.package}.long").flow
    assert isinstance(flow, Flow)
    return flow


def _stop_at(project: Project, count: int | None) -> None:
    marker = project.root / project.package / "STOP"
    if count is None:
        marker.unlink(missing_ok=True)
    else:
        marker.write_text(str(count))


def _interrupted(project: Project, store: Store, at: int) -> RunRecord:
    """A run stopped (KeyboardInterrupt, as a kill) when its step ``at`` starts."""
    flow = _flow(project)
    _stop_at(project, at)
    with pytest.raises(KeyboardInterrupt):
        record(flow, {"count": 0}, store=store)
    _stop_at(project, None)
    (name,) = store.refs("runs/")
    return load_run(store, name.split("/", 1)[1])


def _stored(store: Store, run: RunRecord) -> RunRecord:
    """The run's newest commit as it is stored (a link, or the whole record)."""
    kind, payload = store.load(store.ref(run_ref(run.id)))
    assert kind is Kind.RUN
    return RunRecord.from_value(codec.decode_tagged(payload), digest=store.ref(run_ref(run.id)))


def _put_run(store: Store, run: RunRecord) -> Digest:
    with store.batch() as batch:
        return batch.put(Kind.RUN, run.encode())


def test_a_step_commit_stores_only_the_new_step(project: Project, project_store: Store) -> None:
    """The newest link holds one step and continues the previous commit; loading follows
    the chain back to the first commit and gives every finished step in order."""
    run = _interrupted(project, project_store, at=20)
    assert [s.name for s in run.steps] == [f"s{i:02d}" for i in range(20)]
    assert run.status == "running"
    assert run.continues is None
    head = _stored(project_store, run)
    assert [s.name for s in head.steps] == ["s19"]
    assert head.continues is not None
    links = 1
    link = head
    while link.continues is not None:
        link = RunRecord.from_value(project_store.get_object(link.continues, Kind.RUN),
                                    digest=link.continues)
        links += 1
    assert links == 20  # one commit per step, and none before the first
    assert project_store.get_snapshot(run.state) == {"count": 20}
    times = load_timing(project_store, run)["steps"]
    assert [entry["name"] for entry in times] == [s.name for s in run.steps]
    assert fsck(project_store).ok


def test_a_link_costs_the_same_late_in_the_run(project: Project, project_store: Store) -> None:
    """The 23rd step's commit stores a record no larger than the 3rd one's (both links
    that leave the state out)."""
    early = _stored(project_store, _interrupted(project, project_store, at=3))
    size_early = len(project_store.load(early.digest)[1])  # type: ignore[arg-type]
    project_store.delete_ref(run_ref(early.id))
    late = _stored(project_store, _interrupted(project, project_store, at=23))
    size_late = len(project_store.load(late.digest)[1])  # type: ignore[arg-type]
    assert abs(size_late - size_early) < 16, (size_early, size_late)


def test_a_resumed_chain_ends_as_one_whole_record(project: Project, project_store: Store) -> None:
    """Resume continues the chain; the run's last commit stores every step at once, and
    its steps are those of a run never stopped."""
    run = _interrupted(project, project_store, at=10)
    resumed = resume(run.id, store=project_store)
    assert resumed.status == "succeeded"
    stored = _stored(project_store, resumed)
    assert stored.continues is None
    assert len(stored.steps) == STEPS
    assert load_run(project_store, run.id) == resumed
    assert project_store.get_snapshot(resumed.state) == {"count": STEPS}
    timing = load_timing(project_store, resumed)
    assert len(timing["steps"]) == STEPS
    assert len(timing["resumed"]) == 1
    straight = record(_flow(project), {"count": 0}, store=project_store)
    # (The steps before the stop read the marker file: their file inputs differ.)
    assert [(s.name, s.inputs, s.outputs, s.code) for s in straight.steps] == \
        [(s.name, s.inputs, s.outputs, s.code) for s in resumed.steps]
    assert straight.state == resumed.state
    # The links are garbage once the run is whole; gc takes them, and nothing else.
    report = gc(project_store)
    assert report.deleted >= 10
    assert load_run(project_store, run.id) == resumed
    assert fsck(project_store).ok


def test_a_run_stopped_in_its_first_step_leaves_nothing(project: Project,
                                                         project_store: Store) -> None:
    """Pins and inputs go with the first step's commit: no record, no ref before it."""
    flow = _flow(project)
    _stop_at(project, 0)
    with pytest.raises(KeyboardInterrupt):
        record(flow, {"count": 0}, store=project_store)
    assert project_store.refs("runs/") == {}


def test_a_chain_travels_in_a_bundle(project: Project, project_store: Store,
                                     tmp_path: Path) -> None:
    """An interrupted run exported and imported loads whole on the other side."""
    run = _interrupted(project, project_store, at=12)
    bundle = tmp_path / "run.pinrun"
    export_bundle(project_store, [run_ref(run.id)], bundle)
    with Store.open(tmp_path / "other", create=True) as other:
        import_bundle(other, bundle)
        assert load_run(other, run.id) == run
        assert fsck(other).ok


def test_a_link_of_another_run_is_damage(project: Project, project_store: Store) -> None:
    """A record continuing another run's record is refused, naming that record."""
    run = _interrupted(project, project_store, at=4)
    head = _stored(project_store, run)
    assert head.continues is not None
    stranger = replace(head, id="20260101T000000000-abcdef", continues=None, digest=None,
                       state=run.inputs)  # (a first commit has a state)
    stranger_digest = _put_run(project_store, stranger)
    forged_digest = _put_run(project_store, replace(head, continues=stranger_digest, digest=None))
    with pytest.raises(CorruptObjectError, match="a record of run 20260101T") as caught:
        load_run_object(project_store, forged_digest)
    assert forged_digest.hex in str(caught.value)  # the link that holds the bad place
    assert stranger_digest.hex in str(caught.value)
    # fsck walks the chain too, as loading does.
    project_store.set_ref(run_ref(run.id), forged_digest)
    report = fsck(project_store)
    assert not report.ok
    assert any(stranger_digest.hex in problem.detail and run.id in problem.detail
               for problem in report.problems)


def test_a_failed_step_ends_the_chain_with_the_whole_record(project: Project,
                                                            project_store: Store) -> None:
    """A failure is a run's end: its commit is the whole record, every step in it."""
    project.write("failing", LONG.replace("raise KeyboardInterrupt",
                                          "raise ValueError('no')"))
    flow = importlib.import_module(f"{project.package}.failing").flow
    _stop_at(project, 7)
    with pytest.raises(RunFailedError) as caught:
        record(flow, {"count": 0}, store=project_store)
    stored = _stored(project_store, caught.value.run)
    assert stored.continues is None
    assert stored.status == "failed"
    assert [s.status for s in stored.steps] == ["succeeded"] * 7 + ["failed"]


def test_a_running_commit_holds_its_timing_inline(project: Project,
                                                  project_store: Store) -> None:
    """While a run records, each commit's record holds its steps' timing itself (no timing
    object of its own to write); the run's last commit names a timing value, as before."""
    run = _interrupted(project, project_store, at=6)
    head = _stored(project_store, run)
    assert head.timing is None
    assert head.timing_inline is not None
    assert [entry["name"] for entry in head.timing_inline["steps"]] == ["s05"]
    first = head
    while first.continues is not None:
        first = RunRecord.from_value(project_store.get_object(first.continues, Kind.RUN),
                                     digest=first.continues)
    assert first.timing is None
    assert first.timing_inline is not None
    assert "started" in first.timing_inline
    timing = load_timing(project_store, run)
    assert [entry["name"] for entry in timing["steps"]] == [f"s{i:02d}" for i in range(6)]
    assert timing["started"] == first.timing_inline["started"]
    finished = _stored(project_store, resume(run.id, store=project_store))
    assert finished.timing is not None
    assert finished.timing_inline is None
    assert len(project_store.get_value(finished.timing)["steps"]) == STEPS


def test_links_naming_timing_values_still_read(project: Project, project_store: Store) -> None:
    """A chain written before timing rode in the records (each link naming a timing value)
    loads and resumes as it did: its timing joins the inline timing of newer links."""
    run = _interrupted(project, project_store, at=3)
    head = _stored(project_store, run)
    with project_store.batch() as batch:
        older = batch.put_value({"started": "2026-01-01T00:00:00",
                                 "steps": [{"name": "s02", "attempt": 1,
                                            "started": "2026-01-01T00:00:01", "seconds": 0.5}]})
    as_before = replace(head, timing=older, timing_inline=None, digest=None)
    project_store.set_ref(run_ref(run.id), _put_run(project_store, as_before))
    loaded = load_run(project_store, run.id)
    timing = load_timing(project_store, loaded)
    assert [entry["name"] for entry in timing["steps"]] == ["s00", "s01", "s02"]
    assert timing["steps"][-1]["seconds"] == 0.5
    assert fsck(project_store).ok
    resumed = resume(run.id, store=project_store)
    assert resumed.status == "succeeded"
    assert len(load_timing(project_store, resumed)["steps"]) == STEPS
    assert fsck(project_store).ok


def test_a_running_commit_stores_its_link_and_state_as_is(project: Project,
                                                          project_store: Store) -> None:
    """A running run's link and state tree (garbage once it is whole) are stored
    uncompressed; its finished record and state are compressed where that pays."""
    run = _interrupted(project, project_store, at=STATE_EVERY)  # (its state stored)
    head = _stored(project_store, run)
    assert head.digest is not None
    assert head.state != NO_STATE
    assert project_store.info(head.digest).codec == "none"
    assert project_store.info(head.state).codec == "none"
    finished = _stored(project_store, resume(run.id, store=project_store))
    assert finished.digest is not None
    assert project_store.info(finished.digest).codec == "zstd"


def test_a_step_commit_queues_nothing_an_earlier_commit_stored(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a run's earlier commit stored (the state's values the next state tree names
    again, the empty events value...) is counted as offered, but neither queued nor looked
    up again: the run's ref, checked in the same transaction, keeps it stored."""
    from pinrun.artifacts import batch as batch_module

    commits: list[tuple[set[bytes], int]] = []
    real = batch_module.commit_batch

    def spy(store: Store, batch: batch_module.WriteBatch) -> int:
        commits.append((set(batch._pending), batch._offered_objects))
        return real(store, batch)

    monkeypatch.setattr(batch_module, "commit_batch", spy)
    run = record(_flow(project), {"count": 0}, store=project_store)
    assert len(commits) == STEPS
    seen: set[bytes] = set()
    for queued, _offered in commits:
        assert not queued & seen
        seen |= queued
    # A later step re-names the state's values and the empty events value: offered, not
    # queued.
    assert all(offered > len(queued) for queued, offered in commits[1:])
    assert load_run(project_store, run.id) == run
    assert project_store.get_snapshot(run.state) == {"count": STEPS}
    assert fsck(project_store).ok
    gc(project_store)
    assert fsck(project_store).ok


def test_the_recorders_record_copy_is_dataclasses_replace(project: Project,
                                                          project_store: Store) -> None:
    """The recorder's cheap copy of a record with fields changed gives what
    ``dataclasses.replace`` gives, every field (those outside comparison too); it relies
    on RunRecord having no ``__post_init__`` and no slots."""
    from dataclasses import fields

    from pinrun.engine.records import changed

    assert not hasattr(RunRecord, "__post_init__")
    assert "__slots__" not in RunRecord.__dict__
    run = _interrupted(project, project_store, at=4)
    changes: dict[str, Any] = {"status": "failed", "continues": run.digest, "digest": None,
               "timing_inline": {"steps": []}, "steps": run.steps[:1]}
    for left, right in ((changed(run, **changes), replace(run, **changes)),
                        (changed(run), replace(run))):
        assert [getattr(left, f.name) for f in fields(RunRecord)] == \
            [getattr(right, f.name) for f in fields(RunRecord)]
    assert run.status == "running"  # the record copied is unchanged
