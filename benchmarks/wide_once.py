"""One round of the ``wide-state`` benchmark's timed work, for counting instructions.

``python -m benchmarks.wide_once WHAT [top|nested]`` makes a store, records the
flow once with 10 keys (the benchmark's untimed warm-up), then runs ``WHAT``
once inside ``functools.reduce``, so that callgrind can count just that part::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python -m benchmarks.wide_once all top

``WHAT``: ``all`` (the benchmark's timed function: the recording and a read of
the final state), ``record``, ``read`` (of a state recorded untimed),
``encode`` (one ``codec.encode`` of the map: the ratio's denominator) or
``bodies`` (the steps' own work). Callgrind's toggle is per thread: zstd's
worker threads, which compress a large commit's records, are not counted
(~130 M instructions for 100k top-level keys), while the benchmark's CPU time
counts them. Run without the toggle options and subtract a run of ``none`` to
count every thread.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pinrun
from benchmarks import values_flows as vf
from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _counted(work: Callable[[], Any]) -> Any:
    """``work()``, called from inside ``functools.reduce`` (callgrind's toggle)."""
    return functools.reduce(lambda _first, _second: work(), [0, 0])


def main(what: str, shape: str = "top") -> None:
    flow = vf.wide_flow if shape == "top" else vf.nested_flow
    table = vf.make_table()
    with tempfile.TemporaryDirectory(prefix="wide-once-") as folder, \
            pinrun.open_store(Path(folder) / ".pinrun", create=True) as store:
        pinrun.record(flow, {"keys": 10}, store=store, project_root=REPO_ROOT)

        def record() -> Digest:
            run = pinrun.record(flow, {"keys": vf.WIDE_KEYS}, store=store,
                                project_root=REPO_ROOT)
            return run.state

        def read(state: Digest) -> None:
            total = store.get_snapshot(state)["total"]
            assert total == sum(i % 7 for i in range(vf.WIDE_KEYS))

        if what == "all":
            _counted(lambda: read(record()))
        elif what == "record":
            read(_counted(record))
        elif what == "read":
            state = record()
            _counted(lambda: read(state))
        elif what == "encode":
            _counted(lambda: codec.encode(table))
        elif what == "bodies":
            _counted(lambda: sum(value["qty"] for value in vf.make_table().values()))
        elif what != "none":
            raise SystemExit(f"unknown part {what!r}: all, record, read, encode, bodies, none")


if __name__ == "__main__":
    main(*sys.argv[1:3])
