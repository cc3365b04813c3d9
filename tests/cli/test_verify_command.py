"""pinrun verify: the CI gate over many runs, workers, shards, JUnit XML, annotations."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from pinrun.artifacts.store import Store
from pinrun.cli.main import cli
from pinrun.engine.run import record
from pinrun.errors import InputError
from pinrun.verifier.verify import Selection, parse_shard, select_runs
from tests.cli.conftest import invoke
from tests.helpers import Project

FLOWS = """
import time
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


@pinrun.step
def name(doubled: int) -> dict:
    return {"label": f"order-{doubled}"}


orders = pinrun.Flow("orders", [double, name])


@pinrun.step
def stamp(n: int) -> dict:
    return {"stamped": time.time()}


clocked = pinrun.Flow("clocked", [stamp])
"""

RUNS = 200


@pytest.fixture
def corpus(project: Project, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, list[str],
                                                                       str]:
    """200 runs that reproduce and one that reads the clock; the CLI in the project."""
    project.write("flows", FLOWS)
    monkeypatch.chdir(project.root)
    monkeypatch.delenv("PINRUN_STORE", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    with Store.open(project.root / ".pinrun", create=True, durable=False) as store:
        good = [record(project.load("flows", "orders"), {"n": n}, store=store,
                       durability="none").id for n in range(RUNS)]
        bad = record(project.load("flows", "clocked"), {"n": 1}, store=store,
                     durability="none").id
    return CliRunner(), good, bad



def test_verify_with_two_workers_and_junit(corpus: tuple[CliRunner, list[str], str],
                                           tmp_path: Path) -> None:
    """All 201 runs are replayed; the clock reader fails, named in the JUnit XML."""
    runner, good, bad = corpus
    junit = tmp_path / "pinrun.xml"
    result = invoke(runner, "verify", "-j", "2", "--junit-xml", str(junit), code=1)
    assert f"verified {RUNS + 1} runs: {RUNS} reproduced, 1 diverged" in result.output
    suite = ElementTree.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        str(RUNS + 1), "1", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {*good, bad}
    failure = cases[bad].find("failure")
    assert failure is not None
    assert "time.time()" in (failure.get("message") or "")
    assert "stamp" in (failure.text or "")
    assert all(cases[run_id].find("failure") is None for run_id in good)


def test_verify_of_reproducing_runs_exits_0(corpus: tuple[CliRunner, list[str], str]) -> None:
    """Only the runs of one flow, pinned code, in this process: all reproduce."""
    runner, _, _ = corpus
    result = invoke(runner, "verify", "--flow", "orders", "--code", "pinned",
                    "--sample", "20")
    assert "verified 20 runs: 20 reproduced" in result.output


def test_shards_split_the_runs_without_overlap(corpus: tuple[CliRunner, list[str], str],
                                               project: Project) -> None:
    """Three shards cover every run exactly once, and a sample is always the same."""
    _, good, bad = corpus
    with Store.open(project.root / ".pinrun") as store:
        shards = [select_runs(store, Selection(shard=(index, 3))) for index in (1, 2, 3)]
        assert sorted(run for shard in shards for run in shard) == sorted([*good, bad])
        assert all(shards)
        first = select_runs(store, Selection(sample=7))
        assert first == select_runs(store, Selection(sample=7))
    with pytest.raises(InputError, match="I/N"):
        parse_shard("4/3")


def test_verify_json_and_fail_fast(corpus: tuple[CliRunner, list[str], str],
                                   tmp_path: Path) -> None:
    """--json writes every report; --fail-fast stops at the first failure."""
    runner, _, bad = corpus
    out = tmp_path / "reports.json"
    invoke(runner, "verify", bad, "--json", str(out), code=1)
    (report,) = json.loads(out.read_text())["results"]
    assert report["verdict"] == "diverged"
    assert report["steps"][0]["causes"][0]["kind"] == "nondeterministic call"
    result = invoke(runner, "verify", "--fail-fast", code=1)
    verified = int(result.output.split("verified ")[1].split(" ")[0])
    assert "1 diverged" in result.output  # it stopped at the failure, whatever its place
    flat = " ".join(result.output.split())  # rich wraps long lines
    assert (f"({RUNS + 1 - verified} not run after --fail-fast)" in flat) == (
        verified < RUNS + 1)


def test_github_actions_annotations(corpus: tuple[CliRunner, list[str], str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On GitHub Actions each failing run is an ::error annotation at its file and line."""
    runner, _, bad = corpus
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = invoke(runner, "verify", bad, code=1)
    line = next(line for line in result.output.splitlines() if line.startswith("::error"))
    assert "flows.py,line=" in line
    assert bad in line


def test_verify_shards_on_the_command_line(corpus: tuple[CliRunner, list[str], str],
                                           tmp_path: Path) -> None:
    """Two machines of a 2-way matrix verify disjoint halves that add up to the corpus."""
    runner, good, bad = corpus
    seen: list[str] = []
    for index in (1, 2):
        out = tmp_path / f"shard{index}.json"
        result = runner.invoke(cli, ["verify", "--shard", f"{index}/2", "--json", str(out)],
                               catch_exceptions=False)
        shard = [report["run"] for report in json.loads(out.read_text())["results"]]
        assert result.exit_code == (1 if bad in shard else 0), result.output
        seen += shard
    assert sorted(seen) == sorted([*good, bad])
    assert "--shard '3/2'" in invoke(runner, "verify", "--shard", "3/2", code=2).stderr


HOSTILE = """
import os
import pinrun


@pinrun.step
def vanish(n: int) -> dict:
    if os.environ.get("PINRUN_TEST_VANISH"):
        os._exit(0)
    return {"n": n}


vanishing = pinrun.Flow("vanishing", [vanish])


@pinrun.step
def shout(n: int) -> dict:
    if os.environ.get("PINRUN_TEST_SHOUT"):
        raise ValueError("\\x1b[31m bad \\x00 bytes")
    return {"n": n}


shouting = pinrun.Flow("shouting", [shout])
"""


def test_a_worker_that_dies_is_an_error_not_a_pass(
        corpus: tuple[CliRunner, list[str], str], project: Project,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A step that ends its process: that run is an error, exit 1, XML still written."""
    runner, _, _ = corpus
    project.write("hostile", HOSTILE)
    with Store.open(project.root / ".pinrun") as store:
        vanished = record(project.load("hostile", "vanishing"), {"n": 1}, store=store).id
        shouted = record(project.load("hostile", "shouting"), {"n": 1}, store=store).id
    monkeypatch.setenv("PINRUN_TEST_VANISH", "1")
    monkeypatch.setenv("PINRUN_TEST_SHOUT", "1")
    junit = tmp_path / "out.xml"
    result = invoke(runner, "verify", vanished, shouted, "--junit-xml", str(junit), code=1)
    assert "a worker process died" in " ".join(result.output.split())
    suite = ElementTree.parse(junit).getroot()  # well-formed despite the control characters
    assert (suite.get("failures"), suite.get("errors")) == ("1", "1")


def test_verify_refuses_a_flow_name_that_matches_nothing(
        corpus: tuple[CliRunner, list[str], str], tmp_path: Path) -> None:
    """A typo in --flow is bad input (exit 2), not an empty pass; so is a missing folder."""
    runner, _, _ = corpus
    assert "flows with runs: clocked, orders" in invoke(
        runner, "verify", "--flow", "ordres", code=2).stderr
    assert "create it first" in invoke(
        runner, "verify", "--junit-xml", str(tmp_path / "no" / "x.xml"), code=2).stderr
