"""Files a step reads are inputs: recorded, shown, checked on replay, refused when strict.

A throw-away project whose step reads ``config/settings.ini`` and lists
``data/``; ``pinrun`` runs as a real process in the project folder, and the
tests assert its exit codes and its ``--json`` output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import blake3
import orjson
import pytest

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import open_store
from tests.helpers import Project, project_cli

pytestmark = pytest.mark.slow

# Line numbers matter: the causes name them.
READER = """\
import os

import pinrun


@pinrun.step
def load(n: int) -> dict:
    with open("config/settings.ini") as file:
        text = file.read()
    names = sorted(os.listdir("data"))
    import json  # an import inside the step reads files: not inputs
    with open("scratch.txt", "w") as out:  # written by the step: its output
        out.write(json.dumps(n))
    with open("scratch.txt") as back:
        back.read()
    return {"text": text, "names": names, "seen": n}


flow = pinrun.Flow("reader", [load])
"""
OPEN_LINE, LIST_LINE = 8, 10


def _setup(project: Project, source: str = READER) -> str:
    (project.root / "config").mkdir()
    (project.root / "config" / "settings.ini").write_text("rate = 1\n")
    (project.root / "data").mkdir()
    (project.root / "data" / "old.csv").write_text("a\n")
    project.write("steps", source)
    assert project_cli(project, "init").returncode == 0
    done = project_cli(project, "run", project.entry("steps"), "--set", "n=1")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def _replay(project: Project, run_id: str, *args: str, code: int) -> dict[str, Any]:
    done = project_cli(project, "replay", run_id, "--json", *args)
    assert done.returncode == code, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _causes(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [cause for cause in report["steps"][0]["causes"] if cause["kind"] == "file system"]


def test_files_read_are_shown_and_a_change_is_named(project: Project) -> None:
    """show lists the file read and the folder listed (not the import, not the file the
    step wrote); an unchanged replay reproduces with no hazard; an edited file, a file
    gone and a listing that gained and lost a name are each named as a cause, with the
    project's file and line."""
    run_id = _setup(project)
    shown = json.loads(project_cli(project, "show", run_id, "--json").stdout)
    inputs = shown["steps"][0]["input_files"]
    assert [f["path"] for f in inputs["files"]] == ["config/settings.ini"]
    assert inputs["files"][0]["line"] == OPEN_LINE
    assert inputs["files"][0]["file"] == f"{project.package}/steps.py"
    recorded = inputs["files"][0]["digest"]
    assert re.fullmatch("[0-9a-f]{64}", recorded)
    assert [(d["path"], d["names"]) for d in inputs["listings"]] == [("data", ["old.csv"])]
    text = " ".join(project_cli(project, "show", run_id).stdout.split())
    assert f"load reads config/settings.ini {recorded[:8]}" in text
    assert "load lists data/ 1 name" in text

    same = _replay(project, run_id, code=0)
    assert same["verdict"] == "reproduced"
    assert same["steps"][0]["hazards"] == []

    (project.root / "config" / "settings.ini").write_text("rate = 2\n")
    changed = _causes(_replay(project, run_id, code=1))
    assert len(changed) == 1
    assert re.fullmatch(rf"input file changed: config/settings\.ini \({recorded[:8]} -> "
                        "[0-9a-f]{8}\\)", changed[0]["message"])
    assert (changed[0]["file"], changed[0]["line"]) == (f"{project.package}/steps.py",
                                                         OPEN_LINE)
    plain = " ".join(project_cli(project, "replay", run_id).stdout.split())
    assert "cause: file system: input file changed: config/settings.ini" in plain

    (project.root / "config" / "settings.ini").write_text("rate = 1\n")
    (project.root / "data" / "old.csv").unlink()
    (project.root / "data" / "new.csv").write_text("b\n")
    listed = _causes(_replay(project, run_id, code=1))
    assert [c["message"] for c in listed] == ["listing changed: data/ (+new.csv, -old.csv)"]
    assert listed[0]["line"] == LIST_LINE

    (project.root / "config" / "settings.ini").unlink()
    gone = _causes(_replay(project, run_id, code=1))
    assert f"input file vanished: config/settings.ini (recorded {recorded[:8]})" in \
        [c["message"] for c in gone]


UNREAD = """\
import pinrun


@pinrun.step
def load(n: int) -> dict:
    with open("config/settings.ini") as file:
        file.read()
    with open("logs/run.log") as log, open("cache.tmp") as cache:
        return {"seen": n, "log": len(log.read()) > 0, "cache": len(cache.read()) > 0}


flow = pinrun.Flow("unread", [load])
"""


def test_excluded_paths_are_not_inputs(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths matched by [tool.pinrun] ignore_files or $PINRUN_IGNORE_FILES are never
    recorded; a step whose only input did not change reproduces, whatever the rest does
    (its outputs did not depend on the file)."""
    (project.root / "pyproject.toml").write_text('[tool.pinrun]\nignore_files = ["logs/**"]\n')
    (project.root / "logs").mkdir()
    (project.root / "logs" / "run.log").write_text("one\n")
    (project.root / "cache.tmp").write_text("x\n")
    monkeypatch.setenv("PINRUN_IGNORE_FILES", "*.tmp")
    run_id = _setup(project, UNREAD)
    inputs = json.loads(project_cli(project, "show", run_id, "--json").stdout)[
        "steps"][0]["input_files"]
    assert [f["path"] for f in inputs["files"]] == ["config/settings.ini"]
    (project.root / "logs" / "run.log").write_text("two\n")
    (project.root / "cache.tmp").write_text("y\n")
    assert _replay(project, run_id, code=0)["steps"][0]["hazards"] == []
    # Edited, but the outputs do not depend on it: named, as a hazard, not a divergence.
    (project.root / "config" / "settings.ini").write_text("rate = 3\n")
    hazards = _replay(project, run_id, code=0)["steps"][0]["hazards"]
    assert len(hazards) == 1
    assert hazards[0].startswith("input file changed: config/settings.ini (")
    assert hazards[0].endswith("(the outputs are the same)")


def test_strict_guards_refuse_reading_a_file(project: Project) -> None:
    """Under --guards strict the replayed step's read is refused: exit 1, the cause names
    open(...) for reading with the project's file and line."""
    run_id = _setup(project)
    report = _replay(project, run_id, "--guards", "strict", code=1)
    step = report["steps"][0]
    assert step["divergence"] == "error"
    assert "NondeterminismError" in step["message"]
    refused = [c for c in step["causes"] if c["kind"] == "nondeterministic call"]
    assert [(c["message"], c["line"]) for c in refused] == [
        ("open('config/settings.ini') for reading (file system) outside the context",
         OPEN_LINE)]
    assert refused[0]["file"].endswith(f"{project.package}/steps.py")


def test_a_crafted_file_inputs_record_is_refused_or_shown_escaped(project: Project) -> None:
    """A step record pointing at crafted file inputs: escape sequences in a path are shown
    escaped by show and replay; a path too long, or climbing out of the project, is a
    damaged record (exit 3, one line), never read or printed."""
    run_id = _setup(project)
    evil = "\x1b]0;pwned\x07\x1b[2J[red]x[/red]"
    entry = {"path": "config/settings.ini", "digest": "0" * 64, "file": None, "line": None}
    crafted = {
        "20300101T000000000-0000a1": {**entry, "path": f"conf{evil}.ini"},
        "20300101T000000000-0000a2": {**entry, "path": "x" * 5000},
        "20300101T000000000-0000a3": {**entry, "path": "../../etc/passwd"},
    }
    with open_store(project.root / ".pinrun") as store:
        base = codec.decode_tagged(store.load(store.ref(f"runs/{run_id}"))[1])
        with store.batch() as batch:
            for crafted_id, item in crafted.items():
                value = batch.put_value({"format": 1, "files": [item], "listings": [],
                                         "more": 0})
                steps = [{**base["steps"][0], "files": {"$digest": value.hex}}]
                record = {**base, "id": crafted_id, "steps": steps}
                batch.set_ref(f"runs/{crafted_id}", batch.put(
                    Kind.RUN, orjson.dumps(record, option=orjson.OPT_SORT_KEYS)))
    escaped, too_long, climbing = crafted
    for command in ("show", "replay"):
        done = project_cli(project, command, escaped)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        assert "\x1b" not in done.stdout + done.stderr
        # show lists it, escaped; replay never reads it: the replayed step did not.
        assert ("\\x1b]0;pwned" in done.stdout) == (command == "show")
        for bad in (too_long, climbing):
            refused = project_cli(project, command, bad)
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert "Traceback" not in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            assert "file inputs" in refused.stderr


def test_a_crafted_record_makes_replay_read_nothing_the_step_did_not(project: Project,
                                                                   tmp_path: Path) -> None:
    """File inputs a record names that the replayed step does not read (a secret outside
    the project, the kernel's files) are never read again nor named by the replay: a
    record may be someone else's."""
    run_id = _setup(project)
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2\n")
    entries = [{"path": str(secret), "digest": "0" * 64, "file": None, "line": None},
               {"path": "/proc/self/pagemap", "digest": "0" * 64, "file": None, "line": None}]
    crafted = "20300101T000000000-0000a4"
    with open_store(project.root / ".pinrun") as store:
        base = codec.decode_tagged(store.load(store.ref(f"runs/{run_id}"))[1])
        with store.batch() as batch:
            value = batch.put_value({"format": 1, "files": entries, "listings": [
                {"path": "/", "digest": "0" * 64, "names": [], "count": 0, "file": None,
                 "line": None}], "more": 0})
            steps = [{**base["steps"][0], "files": {"$digest": value.hex}}]
            batch.set_ref(f"runs/{crafted}", batch.put(Kind.RUN, orjson.dumps(
                {**base, "id": crafted, "steps": steps}, option=orjson.OPT_SORT_KEYS)))
    done = project_cli(project, "replay", crafted, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(secret) not in done.stdout
    assert "pagemap" not in done.stdout
    assert "listing changed" not in done.stdout


def test_a_file_read_then_rewritten_is_recorded_as_read(project: Project) -> None:
    """A step that reads cache.txt and then rewrites it records the content it read (not
    what it wrote), so the replay, which finds the rewritten file, names the change."""
    (project.root / "cache.txt").write_text("stale\n")
    project.write("cache", """\
        import pinrun


        @pinrun.step
        def refresh(n: int) -> dict:
            with open("cache.txt") as file:
                old = file.read()
            with open("cache.txt", "w") as file:
                file.write(str(n))
            return {"old": old}


        flow = pinrun.Flow("cache", [refresh])
        """)
    assert project_cli(project, "init").returncode == 0
    done = project_cli(project, "run", project.entry("cache"), "--set", "n=1")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    report = _replay(project, run_id, code=1)
    causes = [c["message"] for c in report["steps"][0]["causes"]]
    stale, fresh = (blake3.blake3(text).hexdigest()[:8] for text in (b"stale\n", b"1"))
    assert f"input file changed: cache.txt ({stale} -> {fresh})" in causes, causes


def test_a_file_read_in_the_steps_thread_is_checked_on_replay(project: Project) -> None:
    """A step whose pool thread reads config/settings.ini: recorded as its input, named
    when it changed, and refused there under strict guards."""
    (project.root / "config").mkdir()
    (project.root / "config" / "settings.ini").write_text("rate = 1\n")
    project.write("pooled", """\
        from concurrent.futures import ThreadPoolExecutor

        import pinrun


        def read(path):
            with open(path) as file:
                return file.read()


        @pinrun.step
        def load(n: int) -> dict:
            with ThreadPoolExecutor(1) as pool:
                return {"text": pool.submit(read, "config/settings.ini").result()}


        flow = pinrun.Flow("pooled", [load])
        """)
    assert project_cli(project, "init").returncode == 0
    done = project_cli(project, "run", project.entry("pooled"), "--set", "n=1")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    (project.root / "config" / "settings.ini").write_text("rate = 2\n")
    report = _replay(project, run_id, code=1)
    assert any(c["message"].startswith("input file changed: config/settings.ini")
               and c["line"] == 7 for c in _causes(report)), report["steps"][0]["causes"]
    strict = _replay(project, run_id, "--guards", "strict", code=1)
    assert "NondeterminismError" in strict["steps"][0]["message"]
