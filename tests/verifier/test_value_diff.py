"""value_diff: one-line renderings and differences of arrays, frames, bytes and text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import time

import numpy as np
import pandas as pd

from pinrun.artifacts import codec
from pinrun.verifier.diff import diff_states
from pinrun.verifier.value_diff import MAX_LINES, difference, short


@dataclasses.dataclass
class Order:
    """A dataclass in a state."""

    sku: str
    items: list[int]


def test_short_renders_as_python_and_stays_bounded() -> None:
    """Values read as their repr, containers by their first items, and never past the limit."""
    assert short(decimal.Decimal("1.10")) == "Decimal('1.10')"
    assert short(dt.date(2026, 1, 2)) == "datetime.date(2026, 1, 2)"
    assert short(Order("A", [1, 2])) == "Order(sku='A', items=[1, 2])"
    assert short(np.zeros((1000, 1000))) == "array(shape=(1000, 1000), dtype=float64)"
    assert short(b"\x00" * 10_000).endswith("(10,000 bytes)")
    huge = {str(i): list(range(1000)) for i in range(1000)}
    assert len(short(huge)) <= 80
    nested: list[object] = []
    for _ in range(10_000):
        nested = [nested]
    assert len(short(nested)) <= 80


def test_short_shows_an_unloaded_class_by_its_fields() -> None:
    """A value whose class is not loaded shows its stored fields, marked as such."""
    stored = b'{"$dataclass":["nowhere.mod:Gone",{"sku":"A"}]}'
    assert short(codec.decode(stored)) == "Gone{'sku': 'A'} (class not loaded)"


def test_arrays_of_other_shape_dtype_and_nan() -> None:
    """Shape and dtype changes are named; NaN where NaN was is no difference."""
    assert difference(np.arange(3), np.arange(4)) == ["shape (3,) -> (4,)"]
    lines = difference(np.array([1.0, np.nan, 3.0]), np.array([1.0, np.nan, 4.0]))
    assert lines[0] == "shape (3,), dtype float64: 1 of 3 elements differ"
    assert lines[1] == "  [2]: 3.0 -> 4.0"
    assert lines[-1] == "largest absolute difference: 1"
    dates = difference(np.array(["2026-01-01"], dtype="datetime64[D]"),
                       np.array(["2026-01-02"], dtype="datetime64[D]"))
    assert dates[1] == "  [0]: datetime.date(2026, 1, 1) -> datetime.date(2026, 1, 2)"
    unsigned = difference(np.array([5], dtype=np.uint8), np.array([7], dtype=np.uint8))
    assert unsigned[-1] == "largest absolute difference: 2"  # not a wrapped-around 254


def test_large_values_are_compared_quickly_and_bounded() -> None:
    """A million-element array, a 200,000-row frame, 50 MB of bytes and 100,000 lines of
    text are each explained in well under a few seconds, in at most MAX_LINES lines."""
    started = time.perf_counter()
    grid = np.random.default_rng(0).random(1_000_000)
    moved = grid + 1e-9
    frame = pd.DataFrame({"a": np.arange(200_000), "b": np.arange(200_000) * 0.5})
    other = frame.copy()
    other.loc[150_000, "b"] = -1.0
    blob = bytes(50_000_000)
    text = "\n".join(f"line {i}" for i in range(100_000))
    results = [difference(grid, moved), difference(frame, other),
               difference(blob, blob[:-1] + b"\x01"),
               difference(text, text.replace("line 50000\n", "line fifty thousand\n"))]
    elapsed = time.perf_counter() - started
    assert elapsed < 5, elapsed
    assert all(len(lines) <= MAX_LINES + 1 for lines in results)
    assert "1,000,000 of 1,000,000 elements differ" in results[0][0]
    assert "  [150000, 'b']: 75000.0 -> -1.0" in results[1]
    assert results[2][0] == "50,000,000 bytes -> 50,000,000 bytes; first difference at " \
                            "offset 49,999,999"
    assert "-line 50000" in results[3]
    assert any(line.startswith("@@ -49999,") for line in results[3])  # numbered in the text


def test_frames_with_duplicate_labels_and_missing_values() -> None:
    """Duplicate index labels compare by position; pd.NA where pd.NA was is no difference."""
    left = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")}, index=[0, 0, 1])
    right = pd.DataFrame({"n": pd.array([1, None, 4], dtype="Int64")}, index=[0, 0, 1])
    lines = difference(left, right)
    assert "1 cell differs" in lines
    assert "  [1, 'n']: 3 -> 4" in lines
    words = difference(pd.Series(["a", "b"], dtype=object), pd.Series(["a", "c"], dtype=object))
    assert words[-1] == "  [1]: 'b' -> 'c'"


def test_a_state_diff_carries_the_detail() -> None:
    """diff_states attaches the explanation to the changed key, shown under its line."""
    changes, _ = diff_states({"blob": b"abc", "n": 1}, {"blob": b"abd", "n": 1})
    (change,) = changes
    assert change.detail[0] == "3 bytes -> 3 bytes; first difference at offset 2"
    assert change.lines("  ")[1] == "      3 bytes -> 3 bytes; first difference at offset 2"
    assert change.as_value()["detail"] == list(change.detail)


def test_other_values_need_no_detail_and_escapes_stay_escaped() -> None:
    """Scalars get no detail lines; control characters in text are escaped when shown."""
    assert difference(1, 2) == []
    assert difference("a", "b") == []
    changes, _ = diff_states({"t": "x\x1b[2J" + "y" * 300}, {"t": "x\x1b[2J" + "z" * 300})
    assert all("\x1b" not in line for line in changes[0].lines())


def test_a_frame_declaring_a_huge_index_is_not_walked() -> None:
    """A frame of no columns over RangeIndex(10**15) (a few bytes stored) is described by
    its shape, never label by label."""
    import pandas as pd

    huge = pd.DataFrame(index=pd.RangeIndex(0, 10**15))
    lines = difference(huge, pd.DataFrame(index=pd.RangeIndex(0, 3)))
    assert lines[0] == "DataFrame 1,000,000,000,000,000x0 -> 3x0"
    assert lines[1].startswith("(labels and cells are not compared")
    series = difference(pd.Series(1, index=pd.RangeIndex(0, 10**7)), pd.Series([1, 2]))
    assert series[-1].startswith("(labels and cells are not compared")
