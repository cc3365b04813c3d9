"""Tags from Python: run_tags for remotes, tag refs, and the gate's selection by tag."""

from __future__ import annotations

import pytest

from pinrun.artifacts.store import Store
from pinrun.artifacts.tags import (
    add_tags,
    remove_tags,
    run_tags,
    tag_ref,
    tag_refs_of,
    tagged_runs,
)
from pinrun.engine.records import run_ref
from pinrun.engine.run import record, replaced_ref
from pinrun.errors import CorruptObjectError, InputError
from pinrun.verifier.verify import Selection, select_runs, why_empty
from tests.helpers import Project

FLOW = """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


flow = pinrun.Flow("orders", [double])
"""


@pytest.fixture
def runs(project: Project, project_store: Store) -> list[str]:
    """Three recorded runs of one flow."""
    project.write("flows", FLOW)
    flow = project.load("flows")
    return [record(flow, {"n": n}, store=project_store, durability="none").id
            for n in range(3)]


def test_run_tags_maps_each_run_to_its_labels(project_store: Store, runs: list[str]) -> None:
    """run_tags gives every tagged run its sorted tags; tag_refs_of names the refs to carry."""
    one, two, three = runs
    assert add_tags(project_store, [one, two], ["nightly", "golden"]) == [
        (one, "nightly"), (two, "nightly"), (one, "golden"), (two, "golden")]
    assert add_tags(project_store, [one], ["nightly"]) == []  # already there: nothing new
    assert run_tags(project_store) == {one: ["golden", "nightly"], two: ["golden", "nightly"]}
    assert tagged_runs(project_store, "nightly") == sorted([one, two])
    assert sorted(tag_refs_of(project_store, [two])) == [tag_ref("golden", two),
                                                         tag_ref("nightly", two)]
    assert tag_refs_of(project_store, [three]) == {}
    assert remove_tags(project_store, [one, three], ["nightly"]) == [(one, "nightly")]
    assert run_tags(project_store) == {one: ["golden"], two: ["golden", "nightly"]}


def test_verify_by_tag_skips_replaced_runs_and_says_why_when_empty(
        project_store: Store, runs: list[str]) -> None:
    """A replaced run is left out of --tag; an empty selection is explained in words."""
    one, two, _ = runs
    add_tags(project_store, [one, two], ["nightly"])
    project_store.set_ref(replaced_ref(one), project_store.ref(run_ref(two)))
    assert select_runs(project_store, Selection(tag="nightly")) == [two]
    assert select_runs(project_store, Selection(tag="other")) == []
    reason = why_empty(project_store, Selection(tag="other"))
    assert "no current run carries the tag 'other'" in reason
    assert "tags in this store: nightly" in reason
    assert "flows with runs: orders" in why_empty(project_store, Selection(flow="ordres"))


def test_a_damaged_single_tag_ref_fails_the_gate_but_not_a_listing(
        project_store: Store, runs: list[str]) -> None:
    """An old tags/NAME ref that names no run record is damage for verify --tag NAME
    (never an empty pass), and left out of run_tags."""
    project_store.set_ref("tags/broken", project_store.put_value("not a run"))
    with pytest.raises(CorruptObjectError):
        tagged_runs(project_store, "broken")
    assert run_tags(project_store) == {}
    with pytest.raises(InputError, match="ends like a run id"):
        add_tags(project_store, runs[:1], [f"x/{runs[0]}"])
