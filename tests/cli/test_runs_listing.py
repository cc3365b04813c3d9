"""`pinrun runs` reads from the newest run down and stops at --limit, listing exactly what a
full scan of every run ref would (order, filters, tags, JSON)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from typing import Any

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.artifacts.tags import add_tags, run_tags
from pinrun.cli.inspect_commands import run_summary
from pinrun.engine.records import RUN_REF_PREFIX, load_run_ref
from pinrun.errors import RunFailedError
from tests.helpers import Project, project_cli

FLOWS = """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    if n % 7 == 3:
        raise ValueError(f"no {n}")
    return {"doubled": n * 2}


@pinrun.step
def halve(n: int) -> dict:
    return {"half": n / 2}


orders = pinrun.Flow("orders", [double])
refunds = pinrun.Flow("refunds", [halve])
"""

#: More runs than the first read batches of refs (64, then 256), so a listing crosses them.
RUNS = 330


def _expected(store: Store, **only: Any) -> list[dict[str, Any]]:
    """The listing computed the old way: every run ref, sorted newest first, then filtered."""
    labels = run_tags(store)
    out = []
    for name in sorted(store.refs(RUN_REF_PREFIX), reverse=True):
        summary = {**run_summary(store, load_run_ref(store, name)),
                   "tags": labels.get(name[len(RUN_REF_PREFIX):], [])}
        if only.get("flow") not in (None, summary["flow"]):
            continue
        if only.get("status") not in (None, summary["status"]):
            continue
        if only.get("tag") is not None and only["tag"] not in summary["tags"]:
            continue
        out.append(summary)
    return out


def _listed(project: Project, *args: str) -> list[dict[str, Any]]:
    done: subprocess.CompletedProcess[str] = project_cli(project, "runs", "--json", *args)
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


@pytest.mark.slow
def test_limited_listing_is_the_head_of_the_full_one(project: Project,
                                                     project_store: Store) -> None:
    """--limit N, with and without --flow/--status/--tag, gives the first N runs of the
    listing a scan of every run would give, newest first, as the same JSON."""
    project.write("flows", FLOWS)
    flows = [project.load("flows", "orders"), project.load("flows", "refunds")]
    ids = []
    for n in range(RUNS):
        with contextlib.suppress(RunFailedError):  # failed runs are listed, not tagged
            ids.append(pinrun.record(flows[n % 5 == 0], {"n": n}, store=project_store,
                                     durability="none", project_root=project.root).id)
    add_tags(project_store, ids[::40], ["sampled"])
    add_tags(project_store, ids[-3:], ["latest"])
    everything = _expected(project_store)
    assert len(everything) == RUNS
    assert [item["id"] for item in everything[:3]] == sorted(ids, reverse=True)[:3]
    for count in (1, 20, 64, 65, 300, 1000):
        assert _listed(project, "--limit", str(count)) == everything[:count]
    for args, only, limit in ((("--flow", "refunds"), {"flow": "refunds"}, 30),
                              (("--status", "failed"), {"status": "failed"}, 40),
                              (("--tag", "sampled"), {"tag": "sampled"}, 5),
                              (("--tag", "latest", "--flow", "orders"),
                               {"tag": "latest", "flow": "orders"}, 50),
                              (("--flow", "refunds", "--status", "failed"),
                               {"flow": "refunds", "status": "failed"}, 10)):
        expected = _expected(project_store, **only)
        assert _listed(project, *args, "--limit", str(limit)) == expected[:limit], args
    since = everything[100]["id"][:18]  # a start time, to the millisecond
    assert _listed(project, "--since", f"{since[:4]}-{since[4:6]}-{since[6:8]}T"
                   f"{since[9:11]}:{since[11:13]}:{since[13:15]}.{since[15:18]}",
                   "--limit", "1000") == [item for item in everything if item["id"] >= since]
