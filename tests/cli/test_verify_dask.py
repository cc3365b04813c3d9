"""pinrun verify --dask: the replays run on a real local Dask cluster, with the -j N report."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from tests.helpers import SRC, Project, project_cli

FLOWS = """
import os
import subprocess
import sys

import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


orders = pinrun.Flow("orders", [double])


@pinrun.step
def vanish(n: int) -> dict:
    if os.environ.get("PINRUN_TEST_VANISH"):
        os._exit(0)
    return {"n": n}


vanishing = pinrun.Flow("vanishing", [vanish])


@pinrun.step
def shell(n: int) -> dict:
    done = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                          text=True, check=True)
    return {"out": done.stdout.strip()}


shelling = pinrun.Flow("shelling", [shell])
"""

DRIFT = """
import pinrun


@pinrun.step
def bump(n: int) -> dict:
    return {"bumped": n + 1}


drifting = pinrun.Flow("drifting", [bump])
"""

GONE = """
import pinrun


@pinrun.step
def keep(n: int) -> dict:
    return {"kept": n}


going = pinrun.Flow("going", [keep])
"""

#: A local cluster in its own process, its workers working in the project folder (their
#: disk's code is the project's); it prints its address and lives until its stdin closes.
CLUSTER = """
import sys
from distributed import LocalCluster

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=None)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()
cluster.close()
"""

ORDERS = 20

#: What a run's report holds about time, not about the replay (none today; kept out of
#: the comparison should reports gain them).
TIMING = {"duration", "seconds", "time", "elapsed", "started", "finished"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, str]]:
    """A project with 20 runs that reproduce, one that drifts (its code changed), one
    whose module is gone, one whose step ends its process, one whose step starts a
    process (refused on replay); and a local cluster."""
    project = Project(tmp_path_factory.mktemp("dask") / "project", "proj_dask")
    try:
        project.write("flows", FLOWS)
        project.write("drift", DRIFT)
        project.write("gone", GONE)
        with Store.open(project.root / ".pinrun", create=True, durable=False) as store:
            for n in range(ORDERS):
                record(project.load("flows", "orders"), {"n": n}, store=store,
                       durability="none")
            record(project.load("flows", "vanishing"), {"n": 1}, store=store,
                   durability="none")
            record(project.load("flows", "shelling"), {"n": 1}, store=store,
                   durability="none")
            record(project.load("gone", "going"), {"n": 1}, store=store, durability="none")
        # Another process, another hash seed: a second group of runs.
        recorded = project_cli(project, "run", project.entry("drift", "drifting"),
                               "--set", "n=1")
        assert recorded.returncode == 0, recorded.stderr
        project.edit("drift", "n + 1", "n + 2")
        (project.root / project.package / "gone.py").unlink()
        project.forget()
        env = {**os.environ, "PYTHONPATH": str(SRC), "PINRUN_TEST_VANISH": "1"}
        env.pop("PINRUN_STORE", None)
        cluster = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CLUSTER)],
                                   cwd=project.root, env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert cluster.stdout is not None
        address = cluster.stdout.readline().strip()
        try:
            assert address.startswith("tcp://127.0.0.1:"), address
            yield project, address
        finally:
            assert cluster.stdin is not None
            cluster.stdin.close()
            try:
                cluster.wait(timeout=20)
            except subprocess.TimeoutExpired:
                cluster.kill()
                cluster.wait()
            cluster.stdout.close()
    finally:
        project.close()


def _verify(project: Project, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                   list[dict[str, Any]], str]:
    """``pinrun verify ARGS --json FILE --junit-xml FILE``: the process, the JSON reports
    (timing left out) and the JUnit XML (its times left out)."""
    json_file = project.root / "out.json"
    junit = project.root / "out.xml"
    done = project_cli(project, "verify", *args, "--json", str(json_file),
                       "--junit-xml", str(junit))
    reports = _without_timing(json.loads(json_file.read_text())["results"])
    suite = ElementTree.parse(junit).getroot()
    for element in suite.iter():
        element.attrib.pop("time", None)
    return done, reports, ElementTree.tostring(suite, encoding="unicode")


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_timing(item) for key, item in value.items() if key not in TIMING}
    if isinstance(value, list):
        return [_without_timing(item) for item in value]
    return value


def _workers(address: str) -> list[tuple[str, int]]:
    """The cluster's workers, by address and process id (asked from another process)."""
    code = textwrap.dedent("""
        import json, os, sys
        from distributed import Client
        with Client(sys.argv[1]) as client:
            print(json.dumps(sorted(client.run(os.getpid).items())))
    """)
    done = subprocess.run([sys.executable, "-c", code, address], capture_output=True,
                          text=True, timeout=60, check=True)
    return [tuple(item) for item in json.loads(done.stdout)]


@pytest.mark.slow
def test_dask_gives_the_report_of_two_local_workers(
        corpus: tuple[Project, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--dask and -j 2 give the same JSON, JUnit XML, summary and exit code, a dead
    worker process, a missing module and a refused subprocess included, and stop at the
    same run with --fail-fast; the cluster's workers outlive it."""
    project, address = corpus
    before = _workers(address)
    monkeypatch.setenv("PINRUN_TEST_VANISH", "1")  # for -j 2's workers, as for the cluster's
    local, local_reports, local_xml = _verify(project, "-j", "2")
    dask, dask_reports, dask_xml = _verify(project, "--dask", address)
    assert (local.returncode, dask.returncode) == (1, 1), dask.stderr
    assert len(dask_reports) == ORDERS + 4
    verdicts = {report.get("flow"): report["verdict"] for report in dask_reports}
    assert verdicts["drifting"] == "diverged"
    # The guards hold in the cluster's replays: the project's subprocess is refused.
    shelled = next(r for r in dask_reports if r.get("flow") == "shelling")
    assert shelled["verdict"] == "diverged"
    assert "replay refused subprocess.Popen([" in shelled["steps"][0]["message"]
    assert [r["verdict"] for r in dask_reports].count("error") == 2
    assert any("a worker process died" in r.get("error", "") for r in dask_reports)
    assert dask_reports == local_reports
    assert dask_xml == local_xml
    assert (dask.stdout, dask.stderr) == (local.stdout, local.stderr)  # no Dask chatter
    # --fail-fast stops where -j 2 --fail-fast stops: after -j 2's first failure.
    stopped, stopped_reports, _ = _verify(project, "--dask", address, "--fail-fast")
    assert stopped.returncode == 1
    first = next(index for index, report in enumerate(local_reports)
                 if report["verdict"] != "reproduced")
    assert stopped_reports == local_reports[:first + 1]
    assert "not run after --fail-fast" in " ".join(stopped.stdout.split())
    # Many batches later the same two processes serve: nothing a replay did stayed in them.
    assert _workers(address) == before


@pytest.mark.slow
def test_dask_replays_pinned_code_from_the_bundles(corpus: tuple[Project, str]) -> None:
    """Pinned code replays from the bundles the workers were sent: the drifted run
    reproduces as recorded, though the worker's disk has other code."""
    project, address = corpus
    pinned, reports, _ = _verify(project, "--dask", address, "--code", "pinned",
                                 "--flow", "drifting")
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert [(r["flow"], r["verdict"]) for r in reports] == [("drifting", "reproduced")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_dask_usage_errors_exit_2(project: Project, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """No scheduler at the address, no Dask installed, or -j beside --dask: exit 2, saying
    which address and what to do."""
    project.write("flows", FLOWS)
    with Store.open(project.root / ".pinrun", create=True, durable=False) as store:
        record(project.load("flows", "orders"), {"n": 1}, store=store, durability="none")
    nobody = f"tcp://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    started = time.perf_counter()
    unreachable = project_cli(project, "verify", "--dask", nobody)
    assert unreachable.returncode == 2, unreachable.stderr
    assert f"--dask {nobody}: cannot reach a Dask scheduler there" in unreachable.stderr
    assert time.perf_counter() - started < 20
    assert "drop -j 2" in project_cli(project, "verify", "--dask", nobody, "-j", "2").stderr
    # A `distributed` that cannot be imported stands for one that is not installed.
    blocked = tmp_path / "blocked" / "distributed"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked.parent), str(SRC),
                                                        str(project.root)])}
    missing = subprocess.run([sys.executable, "-m", "pinrun", "verify", "--dask", nobody],
                             cwd=project.root, env=env, capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 2, missing.stderr
    assert "pip install 'pinrun[dask]'" in " ".join(missing.stderr.split())


@pytest.mark.slow
def test_dask_names_a_damaged_object_as_local_workers_do(
        corpus: tuple[Project, str], project: Project) -> None:
    """A run reaching a corrupt object is a store error (exit 3) on the cluster as with
    -j 2, and the other runs of its batch still replay."""
    _, address = corpus
    project.write("flows", FLOWS)
    with Store.open(project.root / ".pinrun", create=True, durable=False) as store:
        runs = [record(project.load("flows", "orders"), {"n": n}, store=store,
                       durability="none") for n in range(3)]
        output = runs[1].steps[0].outputs
        assert output is not None
        env = store.environment

        def damage(txn: Any) -> None:
            data = bytearray(txn.get(output.raw, db=env.dbs["objects"]))
            data[-1] ^= 0xFF
            txn.put(output.raw, bytes(data), db=env.dbs["objects"])

        env.write(damage)
    local, local_reports, _ = _verify(project, "-j", "2", "--code", "pinned")
    dask, dask_reports, _ = _verify(project, "--dask", address, "--code", "pinned")
    assert (local.returncode, dask.returncode) == (3, 3), dask.stderr
    assert dask_reports == local_reports
    assert [r["verdict"] for r in dask_reports].count("reproduced") == 2
    assert output.hex in dask.stderr
