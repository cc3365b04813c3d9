"""Push and pull through a real remote: SeaweedFS's S3 on 127.0.0.1, and a folder."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SRC
from tests.remote.conftest import S3Server, ok, pinrun
from tests.remote.scenario import as_json, empty_machine, production

_PREFIXES = itertools.count()


@pytest.fixture(params=["folder", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A fresh remote URL and the environment that reaches it."""
    if request.param == "folder":
        return str(tmp_path / "shared-disk" / "runs"), {}
    server: S3Server = request.getfixturevalue("s3_server")
    return server.url(f"t{next(_PREFIXES)}-{tmp_path.name[:20].lower()}"), server.env


@pytest.mark.slow
def test_round_trip_into_an_empty_machine_then_pinned_replay(
        tmp_path: Path, remote: tuple[str, dict[str, str]]) -> None:
    """Runs pushed from production are pulled into a store beside no project files, and
    their pinned code replays there; a second push uploads nothing."""
    url, env = remote
    prod, ids = production(tmp_path / "prod", 3)
    ok(pinrun(prod, "key", "generate", "prod-1", env=env))
    public = ok(pinrun(prod, "key", "list", "--json", env=env))
    ok(pinrun(prod, "remote", "add", "team", url, env=env))
    first = as_json(ok(pinrun(prod, "push", "--all", "--json", env=env)))
    assert sorted(first["pushed"]) == sorted(ids)
    assert first["objects"] > 0
    assert first["signed_by"] == "prod-1"
    second = as_json(ok(pinrun(prod, "push", "--all", "--json", env=env)))
    assert second["pushed"] == []
    assert second["already"] == 3
    assert second["pack"] is None
    assert "nothing to push" in ok(pinrun(prod, "push", "--all", env=env))

    laptop = empty_machine(tmp_path / "laptop")
    pulled = as_json(ok(pinrun(laptop, "pull", "--remote", url, ids[1], "--json", env=env)))
    assert pulled["pulled"] == [ids[1]]
    ok(pinrun(laptop, "key", "trust", as_json(public)["signing"], env=env))
    replay = as_json(ok(pinrun(laptop, "replay", ids[1], "--json", env=env)))
    assert replay["verdict"] == "reproduced"
    assert not (laptop / "shop").exists()
    # The rest: only what the laptop lacks travels (the code came with the first run).
    rest = as_json(ok(pinrun(laptop, "pull", "--remote", url, "--all", "--json", env=env)))
    assert sorted(rest["pulled"]) == sorted(set(ids) - {ids[1]})
    assert rest["already"] == 1
    assert rest["objects"] < pulled["objects"] * 2
    assert "3 reproduced" in ok(pinrun(laptop, "verify", "--code", "pinned", env=env))
    # A tag added after the push travels by itself: no new objects, the label arrives.
    ok(pinrun(prod, "tag", ids[2], "incident-42", env=env))
    tagged = as_json(ok(pinrun(prod, "push", "--all", "--json", env=env)))
    assert tagged["pushed"] == [ids[2]]
    assert tagged["objects"] == 0
    ok(pinrun(laptop, "pull", "--remote", url, "--tag", "incident-42", env=env))
    listed = as_json(ok(pinrun(laptop, "runs", "--tag", "incident-42", "--json", env=env)))
    assert [run["id"] for run in listed] == [ids[2]]


@pytest.mark.slow
def test_four_workers_pushing_at_once_lose_nothing(
        tmp_path: Path, remote: tuple[str, dict[str, str]]) -> None:
    """Four processes push different runs at the same moment; every run arrives."""
    url, env = remote
    prod, ids = production(tmp_path / "prod", 8)
    environment = {**{k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}, **env,
                   "PYTHONPATH": f"{SRC}{os.pathsep}{prod}", "XDG_CONFIG_HOME": str(prod / ".c")}
    workers = [subprocess.Popen([sys.executable, "-m", "pinrun", "push", "--remote", url,
                                 *ids[i::4]], cwd=prod, env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(4)]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, (out, err)
    laptop = empty_machine(tmp_path / "laptop")
    pulled = as_json(ok(pinrun(laptop, "pull", "--remote", url, "--all", "--json", env=env)))
    assert sorted(pulled["pulled"]) == sorted(ids)
    assert "8 reproduced" in ok(pinrun(laptop, "verify", "--code", "pinned",
                                       "--allow-unsigned", env=env))
