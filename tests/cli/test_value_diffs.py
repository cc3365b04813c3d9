"""Diffs read as Python: replay --code workdir on real numpy, pandas, bytes and text values."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.cli.conftest import invoke
from tests.helpers import Project

VALUES = """
import datetime as dt
import decimal
import uuid

import numpy as np
import pandas as pd

import pinrun

CHANGED = False


@pinrun.step
def compute(n: int) -> dict:
    grid = np.arange(12.0).reshape(3, 4)
    frame = pd.DataFrame({"qty": [1, 2, 3], "price": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    series = pd.Series([10, 20, 30], index=["x", "y", "z"], name="counts")
    blob = bytes(range(64))
    lines = [f"line {i}" for i in range(12)]
    when, amount, key = dt.datetime(2026, 1, 1, 12, 0), decimal.Decimal("1.10"), uuid.UUID(int=1)
    if CHANGED:
        grid[1, 2] += 0.5
        grid[2, 3] = 100.0
        frame = pd.DataFrame({"qty": [1.0, 2.5, 3.0], "tax": [0.1, 0.2, 0.3]},
                             index=["a", "b", "d"])
        series = series.replace(20, 21)
        blob = blob[:40] + b"X" + blob[41:]
        lines[5] = "line five"
        when, amount, key = when.replace(minute=1), decimal.Decimal("1.20"), uuid.UUID(int=2)
    return {"grid": grid, "frame": frame, "series": series, "blob": blob,
            "text": "\\n".join(lines), "when": when, "amount": amount, "key": key,
            "long": "a" * 150 + ("b" if CHANGED else "a") + "a" * 149}


flow = pinrun.Flow("values", [compute])
"""


@pytest.fixture
def diverged(project: Project, project_cli: CliRunner) -> tuple[CliRunner, str]:
    """A run of the values flow, recorded; then its code changed on disk."""
    project.write("values", VALUES)
    run_id = invoke(project_cli, "run", project.entry("values"), "--set", "n=1").stdout.strip()
    project.edit("values", "CHANGED = False", "CHANGED = True")
    return project_cli, run_id


def test_scalars_render_as_their_repr(diverged: tuple[CliRunner, str]) -> None:
    """Datetimes, Decimals and UUIDs are shown as Python prints them, not as tagged JSON."""
    runner, run_id = diverged
    out = invoke(runner, "replay", run_id, "--code", "workdir", code=1).stdout
    assert "~ when: datetime.datetime(2026, 1, 1, 12, 0) -> " \
           "datetime.datetime(2026, 1, 1, 12, 1)" in out
    assert "~ amount: Decimal('1.10') -> Decimal('1.20')" in out
    assert "~ key: UUID('00000000-0000-0000-0000-000000000001') -> " \
           "UUID('00000000-0000-0000-0000-000000000002')" in out
    assert "$decimal" not in out
    assert "$datetime" not in out


def test_ndarray_diff_names_shape_dtype_elements_and_largest_gap(
        diverged: tuple[CliRunner, str]) -> None:
    """An array diff counts the differing elements, names the first with both values and
    gives the largest absolute difference."""
    runner, run_id = diverged
    out = invoke(runner, "replay", run_id, "--code", "workdir", code=1).stdout
    assert "~ grid: array(shape=(3, 4), dtype=float64) -> array(shape=(3, 4), " \
           "dtype=float64)" in out
    assert "shape (3, 4), dtype float64: 2 of 12 elements differ" in out
    assert "[1, 2]: 6.0 -> 6.5" in out
    assert "[2, 3]: 11.0 -> 100.0" in out
    assert "largest absolute difference: 89" in out


def test_dataframe_and_series_diffs_name_columns_rows_dtypes_and_cells(
        diverged: tuple[CliRunner, str]) -> None:
    """A frame diff names columns and index labels added or removed, changed dtypes and
    the first differing cells; a series its differing values."""
    runner, run_id = diverged
    out = invoke(runner, "replay", run_id, "--code", "workdir", code=1).stdout
    assert "columns added: 'tax'" in out
    assert "columns removed: 'price'" in out
    assert "rows (by index) added: 'd'" in out
    assert "rows (by index) removed: 'c'" in out
    assert "column 'qty': dtype int64 -> float64" in out
    assert "1 cell differs" in out
    assert "['b', 'qty']: 2 -> 2.5" in out
    assert "1 value differs" in out
    assert "['y']: 20 -> 21" in out


def test_bytes_and_long_text_diffs(diverged: tuple[CliRunner, str]) -> None:
    """Bytes diff by length and first differing offset; long text as a unified diff, or by
    its first differing character when it is one line."""
    runner, run_id = diverged
    out = invoke(runner, "replay", run_id, "--code", "workdir", code=1).stdout
    assert "64 bytes -> 64 bytes; first difference at offset 40" in out
    assert "--- recorded" in out
    assert "-line 5" in out
    assert "+line five" in out
    assert "300 -> 300 characters; first difference at character 150" in out
    data = json.loads(invoke(runner, "replay", run_id, "--code", "workdir", "--json",
                             code=1).stdout)
    changes = {change["path"]: change for change in data["steps"][0]["changes"]}
    assert "+line five" in changes["text"]["detail"]
    assert changes["amount"]["detail"] == []
    assert "first divergence" in data["explanation"]
    assert "2 of 12 elements differ" in data["explanation"]
