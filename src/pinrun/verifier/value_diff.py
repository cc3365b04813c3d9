"""Values as a Python user reads them, and what differs between two of them.

:func:`short` renders one value on one bounded line, the way ``repr`` would
(``Decimal('1.10')``, ``datetime.datetime(2026, 11, 23, 1, 30)``), however
large the value: containers show their first items, arrays and frames their
shape. :func:`difference` explains two values that are not equal in the terms
their type calls for: an array by the elements that differ, a frame by its
columns, index, dtypes and cells, bytes by their first differing offset, long
text as a unified diff.

Nothing here imports numpy or pandas: a value can only be an array or a frame
if the codec already built one, so the modules are taken from ``sys.modules``.
Rendered text is raw (it may hold stored control characters): callers pass it
through :func:`pinrun.safe_text.printable` before it reaches a terminal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import reprlib
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from pinrun.artifacts.codec import UnloadedValue

__all__ = ["LONG_TEXT", "MAX_LINES", "SHORT", "difference", "short"]

#: One-line renderings are cut to this many characters.
SHORT: Final = 80
#: Text longer than this (or on several lines) is diffed line by line.
LONG_TEXT: Final = 200
#: A difference is explained in at most this many lines.
MAX_LINES: Final = 40
#: Lines of long text compared line by line (after the lines both share at each end).
_DIFFED_LINES: Final = 2000
#: Elements, cells or rows named one by one before the rest are only counted.
_FIRST: Final = 5
#: Types whose own repr is short and exactly what a Python user reads (and UUIDs, known
#: by their module: the verifier does not import uuid, which can draw randomness).
_OWN_REPR: Final = (dt.datetime, dt.date, dt.time, dt.timedelta, decimal.Decimal, enum.Enum,
                    complex)


class _Short(reprlib.Repr):
    """``reprlib`` with the value model's types: bounded, and never a huge ``repr``."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict = 4, 8, 8, 8
        self.maxset, self.maxfrozenset, self.maxstring, self.maxother = 8, 8, 60, 120

    def repr_bytes(self, value: bytes, level: int) -> str:
        head = repr(bytes(value[:12]))  # up to 48 characters: the length still fits after
        return head if len(value) <= 12 else f"{head[:-1]}...' ({len(value):,} bytes)"

    def repr_bytearray(self, value: bytearray, level: int) -> str:
        return f"bytearray({self.repr_bytes(bytes(value), level)})"

    def repr_ndarray(self, value: Any, level: int) -> str:
        if value.size <= 8 and value.ndim == 1:
            return f"array({self.repr1(value.tolist(), level)}, dtype={value.dtype})"
        return f"array(shape={tuple(value.shape)}, dtype={value.dtype})"

    def repr_DataFrame(self, value: Any, level: int) -> str:  # noqa: N802 - reprlib's naming
        columns = self.repr1(list(value.columns), level)
        return f"DataFrame({value.shape[0]:,} rows x {value.shape[1]} columns {columns})"

    def repr_Series(self, value: Any, level: int) -> str:  # noqa: N802 - reprlib's naming
        return f"Series(name={self.repr1(value.name, level)}, {len(value):,} values, " \
               f"dtype={value.dtype})"

    def repr_UnloadedValue(self, value: UnloadedValue, level: int) -> str:  # noqa: N802
        # The class is not loaded here: its stored fields, named as stored.
        name = value.type_name.rpartition(":")[2] or value.type_name
        return f"{name}{self.repr1(value.fields, level)} (class not loaded)"

    def repr_instance(self, value: Any, level: int) -> str:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if level <= 0:
                return f"{type(value).__qualname__}(...)"
            fields = [f"{field.name}={self.repr1(getattr(value, field.name), level - 1)}"
                      for field in dataclasses.fields(value)[: self.maxdict]]
            more = ", ..." if len(dataclasses.fields(value)) > self.maxdict else ""
            return f"{type(value).__qualname__}({', '.join(fields)}{more})"
        text = repr(value)
        if isinstance(value, _OWN_REPR) or type(value).__module__ == "uuid" or \
                _is_numpy_scalar(value):
            return text if len(text) <= 2 * self.maxother else text[: 2 * self.maxother] + "..."
        return text if len(text) <= self.maxother else text[: self.maxother - 3] + "..."


_RENDER = _Short()


def _is_numpy_scalar(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.generic)


def short(value: Any, limit: int = SHORT) -> str:
    """``value`` on one line, as ``repr`` shows it, in at most ``limit`` characters."""
    try:
        text = _RENDER.repr(value)
    except RecursionError:  # stored data can nest deeper than any repr can walk
        return "(a value nested too deeply to show)"
    except Exception as exc:  # a loaded class whose __repr__ fails: named, not fatal
        text = f"<{type(value).__qualname__} (its repr raised {type(exc).__name__})>"
    text = " ".join(text.splitlines())  # a frame's or a class's own repr may span lines
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------- differences


def difference(recorded: Any, replayed: Any) -> list[str]:
    """Lines explaining how two unequal values differ, or [] when one line says it all.

    Arrays, frames, series, bytes and long text get an explanation; anything
    else is shown well enough by :func:`short` on both sides.
    """
    numpy = sys.modules.get("numpy")
    pandas = sys.modules.get("pandas")
    try:
        with _quiet(numpy):
            if numpy is not None and isinstance(recorded, numpy.ndarray) and \
                    isinstance(replayed, numpy.ndarray):
                lines = _arrays(numpy, recorded, replayed)
            elif pandas is not None and isinstance(recorded, pandas.DataFrame) and \
                    isinstance(replayed, pandas.DataFrame):
                lines = _frames(recorded, replayed)
            elif pandas is not None and isinstance(recorded, pandas.Series) and \
                    isinstance(replayed, pandas.Series):
                lines = _series(recorded, replayed)
            elif isinstance(recorded, bytes | bytearray) and \
                    isinstance(replayed, bytes | bytearray):
                lines = _bytes(bytes(recorded), bytes(replayed))
            elif isinstance(recorded, str) and isinstance(replayed, str) and \
                    _long(recorded, replayed):
                lines = _texts(recorded, replayed)
            else:
                return []
    except Exception as exc:  # values of exotic dtypes: say so rather than fail the report
        return [f"(the two values could not be compared in detail: {type(exc).__name__})"]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more lines"]
    return lines


@contextmanager
def _quiet(numpy: Any) -> Iterator[None]:
    """Comparisons of NaN, of mixed dtypes... warn; here they only feed a report."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if numpy is None:
            yield
        else:
            with numpy.errstate(all="ignore"):
                yield


def _long(recorded: str, replayed: str) -> bool:
    return max(len(recorded), len(replayed)) > LONG_TEXT or "\n" in recorded + replayed


def _index(position: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in position) + "]"


def _arrays(np: Any, recorded: Any, replayed: Any) -> list[str]:
    lines: list[str] = []
    if recorded.dtype != replayed.dtype:
        lines.append(f"dtype {recorded.dtype} -> {replayed.dtype}")
    if recorded.shape != replayed.shape:
        lines.append(f"shape {tuple(recorded.shape)} -> {tuple(replayed.shape)}")
        return lines
    differ = np.asarray(recorded != replayed)
    if differ.shape != recorded.shape:  # dtypes numpy will not compare element-wise
        return [*lines, f"shape {tuple(recorded.shape)}: elements not comparable"]
    if recorded.dtype.kind in "fc" and replayed.dtype.kind in "fc":
        differ &= ~(np.isnan(recorded) & np.isnan(replayed))  # NaN where NaN was: the same
    count = int(differ.sum())
    lines.append(f"shape {tuple(recorded.shape)}, dtype {recorded.dtype}: {count:,} of "
                 f"{recorded.size:,} elements differ")
    for flat in np.flatnonzero(differ)[:_FIRST]:
        position = tuple(int(i) for i in np.unravel_index(flat, recorded.shape))
        lines.append(f"  {_index(position)}: {_cell(recorded[position])} -> "
                     f"{_cell(replayed[position])}")
    if count > _FIRST:
        lines.append(f"  ... and {count - _FIRST:,} more elements")
    if count and recorded.dtype.kind in "iufc" and replayed.dtype.kind in "iufc":
        wide = np.complex128 if "c" in recorded.dtype.kind + replayed.dtype.kind else np.float64
        gap = np.abs(recorded.astype(wide) - replayed.astype(wide))[differ]
        lines.append(f"largest absolute difference: {float(np.nanmax(gap)):.6g}")
    return lines


def _labels(found: list[Any]) -> str:
    shown = ", ".join(short(label, 30) for label in found[:_FIRST])
    return shown + (f", ... ({len(found):,} in all)" if len(found) > _FIRST else "")


def _added_removed(what: str, before: Any, after: Any) -> list[str]:
    """Labels (of columns, of rows) only one side has."""
    kept, now = set(before), set(after)
    added = [label for label in after if label not in kept]
    removed = [label for label in before if label not in now]
    lines = []
    if added:
        lines.append(f"{what} added: {_labels(added)}")
    if removed:
        lines.append(f"{what} removed: {_labels(removed)}")
    return lines


#: Frames and series with more labels or cells than this are not compared label by
#: label: a recorded value of a few bytes may declare an index of 10**15 labels.
_LABELS = 1_000_000
_CELLS = 20_000_000


def _too_large(*values: Any) -> bool:
    return any(len(value.index) > _LABELS or value.size > _CELLS or
               (value.ndim > 1 and len(value.columns) > _LABELS) for value in values)


_NOT_COMPARED = (f"(labels and cells are not compared: over {_LABELS:,} labels or "
                 f"{_CELLS:,} cells)")


def _frames(recorded: Any, replayed: Any) -> list[str]:
    lines = [f"DataFrame {recorded.shape[0]:,}x{recorded.shape[1]} -> "
             f"{replayed.shape[0]:,}x{replayed.shape[1]}"]
    if _too_large(recorded, replayed):
        return [*lines, _NOT_COMPARED]
    lines += _added_removed("columns", recorded.columns, replayed.columns)
    lines += _added_removed("rows (by index)", recorded.index, replayed.index)
    theirs = set(replayed.columns)
    shared = [column for column in recorded.columns if column in theirs]
    for column in shared:
        if recorded[column].dtype != replayed[column].dtype:
            lines.append(f"column {short(column, 30)}: dtype {recorded[column].dtype} -> "
                         f"{replayed[column].dtype}")
    return lines + _frame_cells(recorded, replayed, shared)


def _frame_cells(recorded: Any, replayed: Any, columns: list[Any], *,
                 series: bool = False) -> list[str]:
    """The first cells that differ in the columns and rows both frames have
    (of a series, the values: named by their index label alone)."""
    if recorded.index.is_unique and replayed.index.is_unique:
        present = set(replayed.index)
        rows = [label for label in recorded.index if label in present]
        left, right = recorded.loc[rows, columns], replayed.loc[rows, columns]
    elif recorded.shape[0] == replayed.shape[0]:  # duplicate labels: compared by position
        rows = list(recorded.index)
        left, right = recorded[columns], replayed[columns]
    else:
        return ["(cells are not compared: the index has duplicate labels)"]
    found: list[str] = []
    count = 0
    for position, column in enumerate(columns):
        ours, theirs = left.iloc[:, position], right.iloc[:, position]
        differing = _differing_rows(ours, theirs)
        count += len(differing)
        for index in differing[: max(_FIRST - len(found), 0)]:
            where = short(rows[index], 30) if series else \
                f"{short(rows[index], 30)}, {short(column, 30)}"
            found.append(f"  [{where}]: {_cell(ours.iloc[index])} -> "
                         f"{_cell(theirs.iloc[index])}")
    if count > _FIRST:
        found.append(f"  ... and {count - _FIRST:,} more")
    what = ("value" if series else "cell") + ("s differ" if count != 1 else " differs")
    return [f"{count:,} {what}", *found] if count else []


def _differing_rows(ours: Any, theirs: Any) -> list[int]:
    """Positions where two aligned columns differ (missing where missing counts as equal):
    one vectorised comparison, or cell by cell for values numpy will not compare."""
    numpy = sys.modules["numpy"]  # pandas is loaded, so numpy is
    left, right = ours.to_numpy(), theirs.to_numpy()
    try:
        equal = left == right
    except (TypeError, ValueError):  # pd.NA in an object column: its truth is ambiguous
        equal = None
    if isinstance(equal, numpy.ndarray) and equal.dtype == bool and \
            equal.shape == left.shape:
        missing = ours.isna().to_numpy() & theirs.isna().to_numpy()
        return [int(i) for i in numpy.flatnonzero(~(equal | missing))]
    return [index for index, (a, b) in enumerate(zip(left.tolist(), right.tolist(),
                                                      strict=True)) if not _same_cell(a, b)]


def _cell(value: Any) -> str:
    """One element or cell: a numpy scalar as the Python value it holds (``2``, not
    ``np.int64(2)``), as its row and column already say where it lives."""
    return short(value.item() if _is_numpy_scalar(value) else value)


def _same_cell(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        if bool(a == b):
            return True
    except (TypeError, ValueError):  # pd.NA == pd.NA, or values that refuse to compare
        pass
    return _missing(a) and _missing(b)


def _missing(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    try:
        return pandas is not None and bool(pandas.isna(value))
    except (TypeError, ValueError):  # an array-like cell: not a missing scalar
        return False


def _series(recorded: Any, replayed: Any) -> list[str]:
    lines = [f"Series {len(recorded):,} -> {len(replayed):,} values"]
    if recorded.name != replayed.name:
        lines.append(f"name {short(recorded.name, 30)} -> {short(replayed.name, 30)}")
    if recorded.dtype != replayed.dtype:
        lines.append(f"dtype {recorded.dtype} -> {replayed.dtype}")
    if _too_large(recorded, replayed):
        return [*lines, _NOT_COMPARED]
    lines += _added_removed("index", recorded.index, replayed.index)
    return lines + _frame_cells(recorded.to_frame(name=0), replayed.to_frame(name=0), [0],
                                series=True)


def _first_difference(recorded: Any, replayed: Any) -> int:
    """The first offset at which two strings (or byte strings) differ, or the shorter's
    length. Slices are compared a block at a time (in C) before any item is."""
    shorter = min(len(recorded), len(replayed))
    start, block = 0, 4096
    while start < shorter and recorded[start:start + block] == replayed[start:start + block]:
        start += block
    end = min(start + block, shorter)
    return next((i for i in range(start, end) if recorded[i] != replayed[i]), end)


def _bytes(recorded: bytes, replayed: bytes) -> list[str]:
    offset = _first_difference(recorded, replayed)
    start = max(offset - 8, 0)
    return [f"{len(recorded):,} bytes -> {len(replayed):,} bytes; first difference at "
            f"offset {offset:,}",
            f"  recorded @{start}: {recorded[start:start + 24].hex(' ') or '(end)'}",
            f"  replayed @{start}: {replayed[start:start + 24].hex(' ') or '(end)'}"]


def _texts(recorded: str, replayed: str) -> list[str]:
    if "\n" not in recorded + replayed:  # one long line: where it starts to differ
        offset = _first_difference(recorded, replayed)
        start = max(offset - 30, 0)
        cut = "..." if start else ""
        return [f"{len(recorded):,} -> {len(replayed):,} characters; first difference at "
                f"character {offset:,}",
                f"  recorded: {cut}{recorded[start:offset + 50]!r}",
                f"  replayed: {cut}{replayed[start:offset + 50]!r}"]
    before, after = recorded.splitlines(), replayed.splitlines()
    # Lines both share at the start and the end need no diff (difflib is quadratic at
    # worst): keep two for context, and number the hunks from where the rest begins.
    same = 0
    while same < min(len(before), len(after)) and before[same] == after[same]:
        same += 1
    tail = 0
    while tail < min(len(before), len(after)) - same and before[-1 - tail] == after[-1 - tail]:
        tail += 1
    skip, keep = max(same - 2, 0), max(tail - 2, 0)
    before, after = before[skip:len(before) - keep], after[skip:len(after) - keep]
    lines = list(_unified_diff(before[:_DIFFED_LINES], after[:_DIFFED_LINES],
                                      "recorded", "replayed", lineterm="", n=2))
    if skip:
        lines = [_shifted(line, skip) for line in lines]
    if max(len(before), len(after)) > _DIFFED_LINES:
        lines.append(f"(only the first {_DIFFED_LINES:,} differing lines are compared)")
    return lines


def _shifted(line: str, skip: int) -> str:
    """A hunk header of a diff of lines from ``skip`` on, renumbered for the whole text."""
    if not line.startswith("@@ "):
        return line
    parts = line.split(" ")
    for index in (1, 2):
        sign, rest = parts[index][0], parts[index][1:]
        first, _, count = rest.partition(",")
        parts[index] = f"{sign}{int(first) + skip}" + (f",{count}" if count else "")
    return " ".join(parts)


def _unified_diff(*args: Any, **kwargs: Any) -> Iterator[str]:
    """``difflib.unified_diff``, imported on the first diff: a replay that reproduces
    (most of them) makes none, and a fresh worker saves the import."""
    import difflib

    return difflib.unified_diff(*args, **kwargs)
