"""One verification of the ``verify-N-runs`` benchmark's corpus, for counting instructions.

``python -m benchmarks.verify_once make FOLDER RUNS`` writes the order project into
``FOLDER`` and records ``RUNS`` runs of its flow (the benchmark's corpus, untimed);
``python -m benchmarks.verify_once verify FOLDER JOBS`` then runs what the benchmark
times (``select_runs`` and ``run_verification``, workdir code, guards ``warn``) once,
inside ``functools.reduce``, and checks that every run reproduced::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python -m benchmarks.verify_once verify /tmp/corpus 2

counts this process's share. The workers and the resource tracker that ``spawn``
starts are processes of their own: add ``--trace-children=yes`` and
``--callgrind-out-file=out.%p``, and count their files whole (every instruction of a
worker is part of the verification), with ``--collect-atstart=yes``; ``verify ... 0``
does everything but the verification, to subtract from this process's whole count.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pinrun
from benchmarks import replay_corpus
from pinrun.verifier.verify import Selection, run_verification, select_runs


def _counted(work: Callable[[], Any]) -> Any:
    """``work()``, called from inside ``functools.reduce`` (callgrind's toggle)."""
    return functools.reduce(lambda _first, _second: work(), [0, 0])


def _verify(store_path: Path, project: Path, jobs: int) -> list[dict[str, Any]]:
    with pinrun.open_store(store_path) as store:
        run_ids = select_runs(store, Selection())
        return list(run_verification(store, run_ids, code="workdir", guards="warn",
                                     jobs=jobs, project_root=project))


def main(what: str, folder: str, number: str) -> None:
    project = Path(folder)
    if what == "make":
        replay_corpus.write_order_project(project)
        with replay_corpus.on_sys_path(project, (replay_corpus.ORDER_MODULE,)):
            corpus = replay_corpus.record_corpus(project, "verify", int(number))
        print(f"{len(corpus.run_ids)} runs in {corpus.store_path}")
        return
    store_path = project / "stores" / "verify"
    jobs = int(number)
    sys.path.insert(0, str(project))  # as the benchmark's session has it
    if jobs == 0:  # the setup alone
        with pinrun.open_store(store_path):
            return
    results: list[dict[str, Any]] = _counted(lambda: _verify(store_path, project, jobs))
    bad = [result for result in results if result["verdict"] != "reproduced"]
    if bad:
        raise SystemExit(f"{len(bad)} of {len(results)} did not reproduce: {bad[0]}")
    print(f"{len(results)} runs reproduced, jobs={jobs}")


if __name__ == "__main__":
    main(*sys.argv[1:])
