"""At 80 columns no run id is cut; a replaced run names its successor by run id."""

from __future__ import annotations

import json

import pytest

from tests.helpers import Project, project_cli

LONG = """
import pinrun

VERSION = 1


@pinrun.step
def compute_the_quarterly_settlement_totals_for_every_region(n: int) -> dict:
    return {"total": n * VERSION, "note": "a reasonably long note about the totals"}


flow = pinrun.Flow("quarterly-settlement-totals-for-every-region-and-currency", [
    compute_the_quarterly_settlement_totals_for_every_region])
"""


def _pinrun(project: Project, *args: str, code: int = 0) -> str:
    result = project_cli(project, *args)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    assert "…" not in result.stdout, result.stdout  # nothing ellipsized
    return result.stdout


@pytest.mark.slow
def test_tables_fit_80_columns_without_cutting_run_ids(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """runs, verify and show at COLUMNS=80 print every run id whole; show names the run
    that replaced one by its id."""
    monkeypatch.setenv("COLUMNS", "80")
    project.write("settle", LONG)
    _pinrun(project, "init")
    ids = [_pinrun(project, "run", project.entry("settle"), "--set", f"n={n}").strip()
           for n in (1, 2)]
    listed = _pinrun(project, "runs")
    assert all(run_id in listed for run_id in ids)
    assert max(len(line) for line in listed.splitlines()) <= 80
    project.edit("settle", "VERSION = 1", "VERSION = 3")
    verified = _pinrun(project, "verify", code=1)
    assert all(run_id in verified for run_id in ids)
    assert max(len(line) for line in verified.splitlines()) <= 80
    accepted = _pinrun(project, "accept", ids[0])
    new_id = accepted.split(" -> ")[1].split()[0]
    shown = _pinrun(project, "show", ids[0])
    assert f"replaced by a new baseline, run {new_id}" in shown
    assert json.loads(_pinrun(project, "show", ids[0], "--json"))["replaced_by"] == new_id
    assert f"a new baseline for run {ids[0]}" in _pinrun(project, "show", new_id)
