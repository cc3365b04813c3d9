"""How causes read in replay and verify: the project's line, the step each belongs to.

A throw-away project whose first step parses ``config/settings.ini`` with
``configparser`` and whose second lists ``data/``; ``pinrun`` runs as a real
process in the project folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import SRC, Project, project_cli

pytestmark = pytest.mark.slow

# Line numbers matter: the causes name them.
STEPS = """\
import configparser
import os

import pinrun


@pinrun.step
def settings(n: int) -> dict:
    parser = configparser.ConfigParser()
    parser.read("config/settings.ini")
    return {"rate": parser["main"]["rate"]}


@pinrun.step(after=[settings])
def listing(rate: str) -> dict:
    return {"names": os.listdir("data")}


flow = pinrun.Flow("causes", [settings, listing])
"""
SECTION_LINE = 11


@pytest.fixture
def recorded(project: Project) -> tuple[Project, str]:
    """The project, recorded once; then the settings vanish and data/ gains a file."""
    (project.root / "config").mkdir()
    (project.root / "config" / "settings.ini").write_text("[main]\nrate = 1\n")
    (project.root / "data").mkdir()
    (project.root / "data" / "a.csv").write_text("a\n")
    project.write("steps", STEPS)
    assert project_cli(project, "init").returncode == 0
    done = project_cli(project, "run", project.entry("steps"), "--set", "n=1")
    assert done.returncode == 0, done.stdout + done.stderr
    (project.root / "config" / "settings.ini").unlink()
    (project.root / "data" / "b.csv").write_text("b\n")
    return project, done.stdout.strip()


def test_an_exception_names_the_projects_line(recorded: tuple[Project, str]) -> None:
    """configparser raises KeyError deep in the standard library: the cause names the
    project's line that asked, and the vanished file is named too."""
    project, run_id = recorded
    replayed = project_cli(project, "replay", run_id, "--json")
    assert replayed.returncode == 1, replayed.stderr
    first = json.loads(replayed.stdout)["steps"][0]
    exception = next(c for c in first["causes"] if c["kind"] == "exception")
    assert exception["file"].endswith(f"{project.package}/steps.py")
    assert exception["line"] == SECTION_LINE
    # The vanished file first, the exception (its symptom) last.
    assert first["causes"][0]["message"].startswith("input file vanished: config/settings.ini")
    assert first["causes"][-1]["kind"] == "exception"


def test_a_later_steps_causes_are_in_the_text(recorded: tuple[Project, str]) -> None:
    """A second diverged step's cause is printed with its step's name, as in --json."""
    project, run_id = recorded
    (project.root / "config" / "settings.ini").write_text("[main]\nrate = 2\n")
    text = project_cli(project, "replay", run_id)
    assert text.returncode == 1
    assert "first divergence: step 'settings'" in text.stdout
    assert "cause in listing: file system: listing changed: data/ (+b.csv)" in text.stdout
    # One line each, however narrow the terminal: a log keeps paths whole.
    changed = next(line for line in text.stdout.splitlines()
                   if "input file changed: config/settings.ini" in line)
    assert changed.endswith(f"({project.package}/steps.py:{SECTION_LINE - 1})")


def test_a_ci_annotation_points_at_the_first_divergence(
        recorded: tuple[Project, str]) -> None:
    """Under GitHub Actions, the ::error line's file and line are those of the step its
    message describes, not of a later step."""
    project, run_id = recorded
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), str(project.root)]),
               GITHUB_ACTIONS="true")
    done = subprocess.run([sys.executable, "-m", "pinrun", "verify", run_id],
                          cwd=project.root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    annotation = next(line for line in done.stdout.splitlines()
                      if line.startswith("::error"))
    # The vanished file comes first (the exception is its symptom): its read's line.
    assert f"file={project.package}/steps.py,line={SECTION_LINE - 1}::" in annotation
    assert "input file vanished: config/settings.ini" in annotation
    assert "settings:" in annotation


def test_json_output_holds_names_that_are_not_utf8(project: Project) -> None:
    """A folder listing with a file name that is not UTF-8 is written by `show --json` as
    an escape, without a traceback."""
    (project.root / "weird").mkdir()
    (project.root / "weird").joinpath(os.fsdecode(b"bad\xff.txt")).write_text("")
    project.write("lister", """\
        import os

        import pinrun


        @pinrun.step
        def names(n: int) -> dict:
            return {"names": sorted(os.listdir("weird"))}


        flow = pinrun.Flow("lister", [names])
        """)
    assert project_cli(project, "init").returncode == 0
    done = project_cli(project, "run", project.entry("lister"), "--set", "n=1")
    assert done.returncode == 0, done.stderr
    shown = project_cli(project, "show", done.stdout.strip(), "--json")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    inputs = json.loads(shown.stdout)["steps"][0]["input_files"]
    assert "bad\udcff.txt" in json.dumps(inputs, ensure_ascii=False), inputs


def test_an_unknown_run_and_a_bad_ignore_list_are_one_line_each(project: Project) -> None:
    """`pinrun replay nope` names the run and where to list them; an ignore_files that
    is not a list of globs is refused at run time with the fix, exit 2, one line."""
    assert project_cli(project, "init").returncode == 0
    unknown = project_cli(project, "replay", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "pinrun: error: no run 'nope' in this store; `pinrun runs` lists them. Check the id, "
        "or the --store the command is using."]
    (project.root / "pyproject.toml").write_text('[tool.pinrun]\nignore_files = "logs/**"\n')
    project.write("plain", """\
        import pinrun


        @pinrun.step
        def one(n: int) -> dict:
            return {"m": n + 1}


        flow = pinrun.Flow("plain", [one])
        """)
    done = project_cli(project, "run", project.entry("plain"), "--set", "n=1")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert 'ignore_files should be a list of globs, such as ignore_files = ["logs/**"' in lines[0]
