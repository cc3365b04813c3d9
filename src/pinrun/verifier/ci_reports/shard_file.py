"""The results file of ``pinrun verify --json FILE``, and merging the files of a CI matrix.

The file is one JSON object::

    {"format": 1, "shard": {"index": 2, "count": 3} | null,
     "selection": {...}, "code": "workdir", "selected": 67,
     "results": [ {one run's result}, ... ]}

``selected`` is how many runs the shard selected (``results`` holds fewer
when ``--fail-fast`` stopped early). :func:`read_results_file` reads such a
file as untrusted data, written by another machine's job: its size is
bounded, every field a report reads is checked for its type, and anything
else is an :class:`~pinrun.errors.InputError` (exit 2) naming the file and the field.
:func:`merge` checks that the files are the shards of one verification (the
same count, each shard once, none missing, the same selection, no run twice,
each run in the shard it belongs to).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pinrun.errors import InputError
from pinrun.safe_text import printable
from pinrun.verifier.ci_reports.results import Totals, ordered

__all__ = ["FORMAT", "MAX_BYTES", "Merged", "ResultsFile", "ResultsWriter", "merge",
           "read_results_file"]

FORMAT = 1
#: A results file larger than this is refused (a corpus of 100,000 runs fits).
MAX_BYTES = 512 * 1024 * 1024
VERDICTS = ("reproduced", "diverged", "error")


class ResultsWriter:
    """Writes the results file as the runs are verified: one result at a time."""

    def __init__(self, stream: IO[str], *, shard: tuple[int, int] | None,
                 selection: Mapping[str, Any], code: str, selected: int) -> None:
        self._stream = stream
        self._count = 0
        header = {"format": FORMAT,
                  "shard": {"index": shard[0], "count": shard[1]} if shard else None,
                  "selection": dict(selection), "code": code, "selected": selected}
        stream.write(json.dumps(header, sort_keys=True)[:-1] + ', "results": [')

    def add(self, result: Mapping[str, Any]) -> None:
        """Write one run's result."""
        self._stream.write(("," if self._count else "") + "\n" +
                           json.dumps(result, indent=2, sort_keys=True))
        self._count += 1

    def close(self) -> None:
        """End the file's JSON (the stream itself is the caller's)."""
        self._stream.write("\n]}\n")


@dataclass(frozen=True)
class ResultsFile:
    """One results file, checked."""

    path: str
    shard: tuple[int, int] | None
    selection: Mapping[str, Any]
    code: str
    selected: int
    results: list[dict[str, Any]]


# ------------------------------------------------------------------ checking


class _BadFieldError(Exception):
    """A field that is not what it should be (the message names it)."""


def _check(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise _BadFieldError(f"{where} should be {what}")


def _str(value: Mapping[str, Any], key: str, where: str, *, required: bool = False,
         nullable: bool = False) -> None:
    if key not in value:
        _check(not required, f"{where}.{key}", "present")
        return
    item = value[key]
    _check(isinstance(item, str) or (nullable and item is None), f"{where}.{key}",
           "a string" + (" or null" if nullable else ""))


def _int(value: Mapping[str, Any], key: str, where: str, *, nullable: bool = False) -> None:
    item = value.get(key)
    if item is None and (nullable or key not in value):
        return
    _check(isinstance(item, int) and not isinstance(item, bool) and item >= 0,
           f"{where}.{key}", "a whole number >= 0")


def _list(value: Mapping[str, Any], key: str, where: str) -> list[Any]:
    item = value.get(key, [])
    _check(isinstance(item, list), f"{where}.{key}", "a list")
    return list(item)


def _cause(cause: Any, where: str) -> None:
    _check(isinstance(cause, dict), where, "an object")
    _str(cause, "kind", where, required=True)
    _str(cause, "message", where, required=True)
    _str(cause, "file", where, nullable=True)
    _int(cause, "line", where, nullable=True)
    _str(cause, "detail", where)


def _change(change: Any, where: str) -> None:
    _check(isinstance(change, dict), where, "an object")
    _str(change, "path", where, required=True)
    _str(change, "kind", where, required=True)
    _str(change, "recorded", where, nullable=True)
    _str(change, "replayed", where, nullable=True)
    for index, line in enumerate(_list(change, "detail", where)):
        _check(isinstance(line, str), f"{where}.detail[{index}]", "a string")


def _step(step: Any, where: str) -> None:
    _check(isinstance(step, dict), where, "an object")
    _str(step, "name", where, required=True)
    _str(step, "status", where, required=True)
    _str(step, "divergence", where, nullable=True)
    _str(step, "message", where)
    _int(step, "changes_left_out", where)
    for index, change in enumerate(_list(step, "changes", where)):
        _change(change, f"{where}.changes[{index}]")
    for index, cause in enumerate(_list(step, "causes", where)):
        _cause(cause, f"{where}.causes[{index}]")
    for index, hazard in enumerate(_list(step, "hazards", where)):
        _check(isinstance(hazard, str), f"{where}.hazards[{index}]", "a string")


def _result(result: Any, where: str) -> dict[str, Any]:
    _check(isinstance(result, dict), where, "an object")
    _str(result, "run", where, required=True)
    run = result["run"]
    _check(bool(run) and len(run) <= 1000, f"{where}.run", "a run id")
    try:
        run.encode()
    except UnicodeEncodeError:
        raise _BadFieldError(f"{where}.run should be a run id (not a lone surrogate)") from None
    _check(result.get("verdict") in VERDICTS, f"{where}.verdict", " or ".join(VERDICTS))
    for key in ("flow", "error", "explanation"):
        _str(result, key, where)
    seconds = result.get("seconds", 0.0)
    _check(isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
           and math.isfinite(seconds) and seconds >= 0, f"{where}.seconds",
           "a number of seconds >= 0")
    _check(isinstance(result.get("store_error", False), bool), f"{where}.store_error",
           "true or false")
    for index, step in enumerate(_list(result, "steps", where)):
        _step(step, f"{where}.steps[{index}]")
    for index, cause in enumerate(_list(result, "causes", where)):
        _cause(cause, f"{where}.causes[{index}]")
    return dict(result)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON holds")


def read_results_file(path: str) -> ResultsFile:
    """Read and check one results file; :class:`~pinrun.errors.InputError` when it is not
    one."""
    shown = printable(path)
    try:
        with Path(path).open("rb") as handle:
            # A regular file is refused by its size, unread; a pipe by what it gives.
            too_large = os.fstat(handle.fileno()).st_size > MAX_BYTES
            data = b"" if too_large else handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{shown}: cannot be read ({exc.strerror or exc}); give the "
                             "files `pinrun verify --json FILE` wrote") from None
    if too_large or len(data) > MAX_BYTES:
        raise InputError(f"{shown}: larger than {MAX_BYTES // 2**20} MiB, which no "
                             "results file of pinrun verify is; check that it is one")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{shown}: not a results file of pinrun verify --json (not "
                             f"JSON: {printable(exc, limit=200)}); was it cut short?") from None
    if isinstance(value, list):
        raise InputError(f"{shown}: a list of results, as pinrun verify --json wrote before "
                             "it wrote format 1; verify again with this pinrun")
    try:
        _check(isinstance(value, dict), "the file", "a JSON object")
        _check(value.get("format") == FORMAT, "format", f"{FORMAT} (this pinrun's format)")
        shard = value.get("shard")
        if shard is not None:
            _check(isinstance(shard, dict), "shard", "an object or null")
            _int(shard, "index", "shard")
            _int(shard, "count", "shard")
            _check(isinstance(shard.get("index"), int) and isinstance(shard.get("count"), int)
                   and 1 <= shard["index"] <= shard["count"], "shard",
                   "{index: I, count: N} with 1 <= I <= N")
        _check(isinstance(value.get("selection"), dict), "selection", "an object")
        _str(value, "code", "the file", required=True)
        _check(isinstance(value.get("selected"), int) and not isinstance(
            value.get("selected"), bool) and value["selected"] >= 0, "selected",
            "a whole number >= 0")
        results = [_result(item, f"results[{index}]")
                   for index, item in enumerate(_list(value, "results", "the file"))]
        _check(len(results) <= value["selected"], "results",
               f"at most the {value['selected']} runs selected")
    except _BadFieldError as exc:
        raise InputError(f"{shown}: not a valid results file: {printable(exc, limit=300)}"
                             "; give the files `pinrun verify --json FILE` wrote") from None
    return ResultsFile(path, (shard["index"], shard["count"]) if shard else None,
                       value["selection"], value["code"], value["selected"], results)


# ------------------------------------------------------------------- merging


@dataclass(frozen=True)
class Merged:
    """The shards' results as one verification's."""

    results: list[dict[str, Any]]
    totals: Totals
    count: int


def _shard_text(shard: tuple[int, int] | None) -> str:
    return f"shard {shard[0]}/{shard[1]}" if shard else "not sharded"


def _name(file: ResultsFile) -> str:
    return printable(file.path)


def merge(files: Sequence[ResultsFile]) -> Merged:
    """The results of all shards, checked to be those of one verification split N ways."""
    from pinrun.verifier.verify import shard_of  # the replay machinery, only when merging

    if not files:
        raise InputError("no results file given: name the files of every shard")
    counts = {file.shard[1] if file.shard else None for file in files}
    if len(counts) > 1:
        listed = ", ".join(f"{_name(f)} ({_shard_text(f.shard)})" for f in files)
        raise InputError(f"the files are shards of different splits: {listed}; give the "
                             "files of one CI matrix")
    count = next(iter(counts)) or 1
    by_index: dict[int, ResultsFile] = {}
    for file in files:
        index = file.shard[0] if file.shard else 1
        if index in by_index:
            raise InputError(f"shard {index}/{count} is given twice: "
                                 f"{_name(by_index[index])} and {_name(file)}; give each "
                                 "shard's file once")
        by_index[index] = file
    missing = [index for index in range(1, count + 1) if index not in by_index]
    if missing:
        raise InputError(f"shard {', '.join(f'{i}/{count}' for i in missing)} missing: "
                             f"the merge needs the file of every shard of {count}")
    first = files[0]
    for file in files[1:]:
        for label, mine, theirs in (("code", file.code, first.code),
                                    ("selection", _comparable(file.selection),
                                     _comparable(first.selection))):
            if mine != theirs:
                raise InputError(
                    f"{_name(file)} verified another {label} than {_name(first)} "
                    f"({printable(json.dumps(mine, sort_keys=True), limit=200)} against "
                    f"{printable(json.dumps(theirs, sort_keys=True), limit=200)}); "
                    "merge the shards of one verification")
    seen: dict[str, ResultsFile] = {}
    results: list[dict[str, Any]] = []
    for file in files:
        for result in file.results:
            run = result["run"]
            if run in seen:
                raise InputError(f"run {printable(run)} is in {_name(seen[run])} and in "
                                     f"{_name(file)}: the shards overlap")
            seen[run] = file
            if file.shard is not None and shard_of(run, count) != file.shard[0]:
                raise InputError(
                    f"run {printable(run)} is in {_name(file)} (shard {file.shard[0]}/{count}) "
                    f"but belongs to shard {shard_of(run, count)}/{count}: the file is not "
                    "that shard's")
            results.append(result)
    merged = ordered(results)
    return Merged(list(merged), Totals.of(merged, sum(f.selected for f in files)), count)


def _comparable(selection: Mapping[str, Any]) -> dict[str, Any]:
    """The selection as shards must share it: ``since`` is resolved on each machine at its
    own time (``--since 2h``), so it may differ by the minutes between the jobs."""
    return {key: value for key, value in selection.items() if key not in ("since", "shard")}
