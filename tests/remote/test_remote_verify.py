"""The CI gate on a remote: each shard pulls only its runs, and the shards merge."""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.remote.conftest import S3Server, ok, pinrun
from tests.remote.scenario import as_json, empty_machine, production


def _ci_machine(root: Path, prod: Path) -> Path:
    """A CI checkout: the project's code (the candidate), a new empty store."""
    machine = empty_machine(root)
    shutil.copytree(prod / "shop", machine / "shop")
    return machine


@pytest.mark.slow
def test_shards_pull_only_their_runs_and_merge_into_one_verdict(
        tmp_path: Path, s3_server: S3Server) -> None:
    """Three CI machines verify a remote's runs shard by shard, each pulling only its own;
    merged, the report holds every run once, and a code change fails the merged gate."""
    env = s3_server.env
    url = s3_server.url(f"gate-{tmp_path.name[:20].lower()}")
    prod, ids = production(tmp_path / "prod", 6)
    ok(pinrun(prod, "push", "--remote", url, "--all", env=env))

    files = []
    pulled = []
    for index in (1, 2, 3):
        machine = _ci_machine(tmp_path / f"ci-{index}", prod)
        result = pinrun(machine, "verify", "--remote", url, "--shard", f"{index}/3",
                        "--json", f"shard-{index}.json", "--allow-empty", env=env)
        assert result.returncode == 0, result.stderr
        files.append(str(machine / f"shard-{index}.json"))
        here = [run["id"] for run in as_json(ok(pinrun(machine, "runs", "--json")))]
        shard = [r["run"] for r in as_json((machine / f"shard-{index}.json").read_text())[
            "results"]]
        assert sorted(here) == sorted(shard)  # pulled exactly the shard's runs
        pulled += here
    assert sorted(pulled) == sorted(ids)
    merged = tmp_path / "merged.xml"
    ok(pinrun(tmp_path / "ci-1", "report", "merge", *files, "--junit-xml", str(merged),
              env=env))
    cases = ElementTree.parse(merged).getroot().iter("testcase")
    assert sorted(case.get("name", "") for case in cases) == sorted(ids)

    # The candidate code changes what a step returns: every shard with runs fails.
    machine = _ci_machine(tmp_path / "ci-changed", prod)
    orders = machine / "shop" / "orders.py"
    orders.write_text(orders.read_text().replace("* rate}", "* rate + 1}"))
    failed = pinrun(machine, "verify", "--remote", url, env=env)
    assert failed.returncode == 1, failed.stderr
    assert "6 diverged" in failed.stdout


@pytest.mark.slow
def test_verify_remote_with_nothing_selected_fails_unless_allowed(tmp_path: Path) -> None:
    """A tag no run carries on the remote selects nothing: exit 2 naming the remote."""
    remote = str(tmp_path / "remote")
    prod, _ = production(tmp_path / "prod", 1)
    ok(pinrun(prod, "push", "--remote", remote, "--all"))
    machine = _ci_machine(tmp_path / "ci", prod)
    result = pinrun(machine, "verify", "--remote", remote, "--tag", "nope")
    assert result.returncode == 2
    assert "no run on" in result.stderr
    ok(pinrun(machine, "verify", "--remote", remote, "--tag", "nope", "--allow-empty"))
