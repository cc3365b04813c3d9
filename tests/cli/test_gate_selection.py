"""The gate's footguns: an empty selection, `--json` beside other options, tags on many runs.

Every command runs as a user would run it: ``python -m pinrun`` in a
throw-away project, against its real store.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.records import run_ref
from tests.helpers import Project, project_cli

FLOW = """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


flow = pinrun.Flow("orders", [double])
"""


def _ok(project: Project, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = project_cli(project, *args)
    assert done.returncode == code, (args, done.stdout, done.stderr)
    return done


def _record(project: Project, n: int, *options: str) -> str:
    return _ok(project, "run", project.entry("flows"), "--set", f"n={n}", *options).stdout.strip()


@pytest.fixture
def gate(project: Project) -> Project:
    """A project with the orders flow and an empty store."""
    project.write("flows", FLOW)
    _ok(project, "init")
    return project


def _junit_tests(path: Path) -> str | None:
    suite = ElementTree.parse(path).getroot()
    assert suite.tag == "testsuite"
    return suite.get("tests")


def test_nothing_selected_fails_in_one_line_and_still_writes_the_reports(gate: Project) -> None:
    """verify with nothing selected exits 2 with one line naming why; the JUnit and JSON
    files are written empty anyway, and --allow-empty passes with the same files."""
    junit, report = gate.root / "out" / "pinrun.xml", gate.root / "out" / "runs.json"
    junit.parent.mkdir()
    done = _ok(gate, "verify", "--junit-xml", str(junit), "--json", str(report), code=2)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pinrun: error: nothing to verify")
    assert "no current runs" in lines[0]
    assert "--allow-empty" in lines[0]
    assert _junit_tests(junit) == "0"
    assert json.loads(report.read_text())["results"] == []
    junit.unlink()
    report.unlink()
    passed = _ok(gate, "verify", "--allow-empty", "--junit-xml", str(junit),
                 "--json", str(report))
    assert "--allow-empty" in passed.stderr
    assert _junit_tests(junit) == "0"
    assert json.loads(report.read_text())["results"] == []


@pytest.mark.slow
def test_each_filter_that_selects_nothing_is_named(gate: Project) -> None:
    """A tag, flow, time or shard that selects no run is named in the error with its fix."""
    _record(gate, 1)
    assert "no current run carries the tag 'nightly'" in _ok(
        gate, "verify", "--tag", "nightly", code=2).stderr
    assert "flows with runs: orders" in _ok(gate, "verify", "--flow", "ordres", code=2).stderr
    assert "started since" in _ok(gate, "verify", "--since", "2999-01-01", code=2).stderr
    # One run, two shards: one shard holds it, the other is empty.
    codes = {index: project_cli(gate, "verify", "--shard", f"{index}/2") for index in (1, 2)}
    assert sorted(done.returncode for done in codes.values()) == [0, 2]
    empty = next(done for done in codes.values() if done.returncode == 2)
    assert "holds none of the 1 selected runs" in empty.stderr
    index = next(i for i, done in codes.items() if done.returncode == 2)
    _ok(gate, "verify", "--shard", f"{index}/2", "--allow-empty")


@pytest.mark.slow
def test_json_never_takes_the_next_option_or_a_run_as_its_file(gate: Project) -> None:
    """--json alone or before another option writes to stdout; --json RUN is refused."""
    run_id = _record(gate, 2)
    junit = gate.root / "x.xml"
    done = _ok(gate, "verify", "--json", "--junit-xml", str(junit))
    assert [r["run"] for r in json.loads(done.stdout)["results"]] == [run_id]
    assert _junit_tests(junit) == "1"
    assert not (gate.root / "--junit-xml").exists()
    assert json.loads(_ok(gate, "verify", run_id, "--json").stdout)["results"][0][
        "verdict"] == "reproduced"
    refused = _ok(gate, "verify", "--json", run_id, code=2)
    assert f"--json took the run {run_id} as its file name" in refused.stderr
    assert not (gate.root / run_id).exists()
    _ok(gate, "verify", run_id, "--json", "report.json")
    assert json.loads((gate.root / "report.json").read_text())["results"][0]["run"] == run_id


@pytest.mark.slow
def test_a_tag_is_a_label_many_runs_carry(gate: Project) -> None:
    """run --tag (repeatable), tag RUN... NAME, tag --remove, runs --tag and verify --tag
    all see the same label on many runs."""
    first = _record(gate, 1, "--tag", "nightly", "--tag", "golden")
    second = _record(gate, 2, "--tag", "nightly")
    third = _record(gate, 3)
    added = json.loads(_ok(gate, "tag", third, first, "golden", "--json").stdout)
    assert added == {"tag": "golden", "added": [third], "unchanged": [first]}
    assert "already carries the tag golden" in _ok(gate, "tag", first, "golden").stdout

    def listed(tag: str) -> list[str]:
        return [r["id"] for r in json.loads(_ok(gate, "runs", "--tag", tag, "--json").stdout)]

    assert listed("nightly") == [second, first]  # newest first
    assert listed("golden") == [third, first]
    shown = json.loads(_ok(gate, "runs", "--json").stdout)
    assert {r["id"]: r["tags"] for r in shown} == {first: ["golden", "nightly"],
                                                   second: ["nightly"], third: ["golden"]}
    verified = json.loads(_ok(gate, "verify", "--tag", "nightly", "--json").stdout)["results"]
    assert sorted(r["run"] for r in verified) == sorted([first, second])
    assert json.loads(_ok(gate, "tag", "--list", "--json").stdout) == {
        "golden": sorted([first, third]), "nightly": sorted([first, second])}

    _ok(gate, "tag", "--remove", first, second, "nightly")
    assert listed("nightly") == []
    assert "does not carry the tag nightly" in _ok(gate, "tag", "--remove", first,
                                                   "nightly").stdout
    assert "no current run carries the tag 'nightly'" in _ok(
        gate, "verify", "--tag", "nightly", code=2).stderr


@pytest.mark.slow
def test_bad_tag_names_are_refused_before_anything_runs(gate: Project) -> None:
    """A tag name that is no ref part, or ends like a run id, is bad input (exit 2)."""
    run_id = _record(gate, 1)
    for bad in ("has space", "../up", "x/", f"x/{run_id}"):
        refused = _ok(gate, "run", gate.entry("flows"), "--set", "n=9", "--tag", bad, code=2)
        assert "not a valid" in refused.stderr
        _ok(gate, "tag", run_id, bad, code=2)
    assert [r["id"] for r in json.loads(_ok(gate, "runs", "--json").stdout)] == [run_id]
    assert "name the runs, then the tag" in _ok(gate, "tag", "nightly", code=2).stderr


@pytest.mark.slow
def test_an_old_single_ref_tag_still_selects_its_run_and_folds_in(gate: Project) -> None:
    """A store from before labels (one ref tags/NAME) reads as NAME on that run; tagging
    another run with NAME turns it into one ref per run in the same commit."""
    old = _record(gate, 1)
    new = _record(gate, 2)
    with Store.open(gate.root / ".pinrun") as store:
        store.set_ref("tags/legacy", store.ref(run_ref(old)))
        store.set_ref("tags/not-a-run", store.put_value("any ref a user set"))
    assert [r["id"] for r in json.loads(_ok(gate, "runs", "--tag", "legacy",
                                            "--json").stdout)] == [old]
    assert [r["run"] for r in json.loads(_ok(gate, "verify", "--tag", "legacy",
                                             "--json").stdout)["results"]] == [old]
    _ok(gate, "tag", new, "legacy")
    with Store.open(gate.root / ".pinrun") as store:
        assert sorted(store.refs("tags/legacy")) == sorted(
            [f"tags/legacy/{old}", f"tags/legacy/{new}"])
        assert store.get_ref("tags/not-a-run") is not None  # not a tag: left alone
    assert json.loads(_ok(gate, "tag", "--list", "--json").stdout) == {
        "legacy": sorted([old, new])}


def test_tags_travel_in_an_export_bundle(gate: Project, tmp_path: Path) -> None:
    """export --all carries the tag refs: the importing store selects the same runs."""
    tagged = _record(gate, 1, "--tag", "nightly")
    _record(gate, 2)
    bundle = tmp_path / "all.pinrun"
    _ok(gate, "export", "--all", "-o", str(bundle))
    other = tmp_path / "other"
    _ok(gate, "--store", str(other), "init")
    _ok(gate, "--store", str(other), "import", str(bundle))
    assert [r["id"] for r in json.loads(_ok(gate, "--store", str(other), "runs", "--tag",
                                            "nightly", "--json").stdout)] == [tagged]
