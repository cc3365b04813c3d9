"""pinrun accept: idempotent, --flow re-records only what does not reproduce, --all, --dry-run.

Every command runs as a user would run it: ``python -m pinrun`` in a
throw-away project, against its real store.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.run import REPLACED_PREFIX
from tests.helpers import Project, project_cli

FLOW = """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    if n == 2:
        return {"doubled": n * 2, "version": 1}
    return {"doubled": n * 2}


flow = pinrun.Flow("orders", [double])
"""


def _ok(project: Project, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = project_cli(project, *args)
    assert done.returncode == code, (args, done.stdout, done.stderr)
    return done


def _record(project: Project, n: int, *options: str) -> str:
    return _ok(project, "run", project.entry("flows"), "--set", f"n={n}", *options).stdout.strip()


def _state(project: Project) -> tuple[int, dict[str, Any]]:
    """How many objects the store holds, and all its refs: what a no-op must leave alone."""
    with Store.open(project.root / ".pinrun") as store:
        return store.object_count(), {name: d.hex for name, d in store.refs().items()}


def _accept(project: Project, *args: str, code: int = 0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(_ok(project, "accept", *args, "--json",
                                                code=code).stdout)
    return rows


@pytest.fixture
def corpus(project: Project) -> tuple[Project, list[str]]:
    """Three runs of one flow, the one with n=2 about to change; two carry a tag."""
    project.write("flows", FLOW)
    _ok(project, "init")
    ids = [_record(project, 1, "--tag", "golden"), _record(project, 2, "--tag", "golden"),
           _record(project, 3)]
    return project, ids


@pytest.mark.slow
def test_accept_flow_records_only_what_diverges_and_twice_adds_nothing(
        corpus: tuple[Project, list[str]]) -> None:
    """accept --flow re-records only the run that no longer reproduces; its new baseline
    keeps the tag; a second accept (by --flow or by id) writes nothing at all."""
    project, (one, two, three) = corpus
    project.edit("flows", '"version": 1', '"version": 22')  # another size: no stale .pyc
    before = _state(project)
    planned = _accept(project, "--flow", "orders", "--dry-run")
    assert {row["run"]: row["action"] for row in planned} == {
        one: "reproduces", two: "record", three: "reproduces"}
    assert "diverged at step double" in next(r for r in planned if r["run"] == two)["reason"]
    assert _state(project) == before  # --dry-run changed nothing

    done = _accept(project, "--flow", "orders")
    (recorded,) = [row for row in done if row["action"] == "record"]
    assert recorded["run"] == two
    new = recorded["new"]
    assert recorded["status"] == "succeeded"
    with Store.open(project.root / ".pinrun") as store:
        assert sorted(store.refs(REPLACED_PREFIX)) == [f"{REPLACED_PREFIX}{two}"]
    golden = json.loads(_ok(project, "runs", "--tag", "golden", "--json").stdout)
    assert {r["id"] for r in golden} == {one, two, new}
    verified = json.loads(_ok(project, "verify", "--tag", "golden", "--json").stdout)["results"]
    assert sorted(r["run"] for r in verified) == sorted([one, new])  # the replaced one skipped

    settled = _state(project)
    again = _ok(project, "accept", two)
    assert f"{two} already accepted (baseline {new})" in again.stdout
    assert "accepted 0 run(s)" in again.stdout
    assert {row["action"] for row in _accept(project, "--flow", "orders")} == {"reproduces"}
    assert _state(project) == settled  # no new record, no new ref


@pytest.mark.slow
def test_accept_all_records_every_run_and_dry_run_lists_them(
        corpus: tuple[Project, list[str]]) -> None:
    """--all re-records every current run of the flow, even those that reproduce;
    with --dry-run it lists them and writes nothing."""
    project, ids = corpus
    before = _state(project)
    text = _ok(project, "accept", "--flow", "orders", "--all", "--dry-run").stdout
    for run_id in ids:
        assert f"{run_id} would be recorded again" in text
    assert "would accept 3 run(s)" in text
    assert _state(project) == before
    done = _accept(project, "--flow", "orders", "--all")
    assert sorted(row["run"] for row in done if row["action"] == "record") == sorted(ids)
    assert all(row["new"] for row in done)
    with Store.open(project.root / ".pinrun") as store:
        assert len(store.refs(REPLACED_PREFIX)) == 3


def test_accept_with_nothing_named_or_selected_is_bad_input(
        corpus: tuple[Project, list[str]]) -> None:
    """accept with no runs, --flow or --all, or a flow with no runs, exits 2 saying so."""
    project, _ = corpus
    assert "name the runs to accept" in _ok(project, "accept", code=2).stderr
    assert "no current run is of flow 'nope'" in _ok(project, "accept", "--flow", "nope",
                                                    code=2).stderr
