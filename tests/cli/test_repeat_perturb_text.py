"""replay --repeat and --perturb in text: which repetition or variation diverged, and its diff."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.cli.conftest import invoke
from tests.helpers import Project, project_cli

COUNTER = """
import pinrun

SEEN = []


@pinrun.step
def count(n: int) -> dict:
    SEEN.append(n)
    return {"count": len(SEEN)}


flow = pinrun.Flow("counter", [count])
"""

SETS = """
import pinrun


@pinrun.step
def fruit(n: int) -> dict:
    names = {"apple", "banana", "cherry", "date", "elder", "fig", "grape", "kiwi",
             "lemon", "mango", "nectarine", "orange"}
    return {"first": list(names)[:n]}


flow = pinrun.Flow("sets", [fruit])
"""


def test_repeat_names_the_repetition_that_diverged_and_its_diff(
        project: Project, project_cli: CliRunner) -> None:
    """--repeat 3 text says replay 2 of 3 diverged after the first reproduced, with its diff."""
    project.write("counter", COUNTER)
    run_id = invoke(project_cli, "run", project.entry("counter"), "--set", "n=1").stdout.strip()
    out = invoke(project_cli, "replay", run_id, "--repeat", "3", code=1).stdout
    assert "pinned code: diverged (replay 2 of 3 in one process)" in out
    assert "replay 2 of 3 diverged; the first in this process reproduced" in out
    assert "~ count: 1 -> 2" in out
    assert "(3 times in one process)" not in out


@pytest.mark.slow
def test_perturb_names_the_variation_that_diverged_and_its_diff(project: Project) -> None:
    """--perturb text names the variation whose outcome differs, with that replay's diff."""
    project.write("sets", SETS)
    assert project_cli(project, "init").returncode == 0
    recorded = project_cli(project, "run", project.entry("sets"), "--set", "n=6")
    assert recorded.returncode == 0, recorded.stderr
    run_id = recorded.stdout.strip()
    result = project_cli(project, "replay", run_id, "--perturb", "hashseed,tz")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "under PYTHONHASHSEED=1 (recorded: 0) (hashseed): diverged at step 'fruit'" in out
    assert "~ first[" in out  # the variation's own diff, item by item
    assert "under TZ=" not in out  # tz reproduced, as the plain replay did
    assert "the outcome depends on: hashseed" in out
