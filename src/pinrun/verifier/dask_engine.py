"""Verifying on a Dask cluster: ``pinrun verify --dask ADDRESS``.

The runs are cut into batches (never across hash seeds), and each batch is a
Dask task. A worker may be another machine, which cannot see this store: the
client sends each batch the runs it replays, as an export bundle
(:func:`pinrun.artifacts.bundle.export_bundle` of the batch's run refs, which
carries everything they pin), and the task imports it into a private temporary
store, proving every record, before it replays there. Nothing but the
cluster's own connection is shared.

A task never replays in the Dask worker's own process: pinrun's refusal of the
network and of subprocesses lasts for the life of a process that replayed
(:func:`pinrun.world.refusal.refuse_from_now_on`), and the worker talks to its
scheduler over the network; a run must also replay under its recorded hash
seed, and a step may end its process. So the task starts a fresh interpreter
(:func:`pinrun.world.processes.call_in_child`, under the batch's seed) that
runs the very worker ``-j N`` runs (:mod:`pinrun.verifier.worker`) and hands
back the pickled results, which only the client reads (as data, with
:func:`~pinrun.verifier.worker.chunk_results`). The Dask worker only moves bytes.

Code: ``--code workdir`` replays the code on the *worker's* disk, the project
found from the Dask worker's working folder (imported from there, as
``pinrun verify`` imports from its own); ``--code pinned`` needs nothing from
the worker's disk but an installed pinrun and the project's dependencies.
"""

from __future__ import annotations

import math
import pickle
import sys
import tempfile
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pinrun.artifacts.bundle import export_bundle, import_bundle_into_new
from pinrun.artifacts.store import Store
from pinrun.engine.records import RUN_REF_PREFIX
from pinrun.errors import StoreError
from pinrun.verifier import worker
from pinrun.verifier.worker import ReplayOptions, RunResult
from pinrun.world.cluster import Cluster, open_cluster
from pinrun.world.processes import call_in_child

if TYPE_CHECKING:
    from distributed import Future

__all__ = ["BatchRequest", "replay_batch", "replay_batch_here", "replay_on_cluster"]

#: Batches per worker thread: enough that a slow batch does not leave workers idle at the
#: end, few enough that a task's overhead (a bundle, an interpreter) stays small.
BATCHES_PER_SLOT = 4
#: Runs in one batch at most: a batch starts an interpreter (~0.3-0.5 s), so batches
#: are larger than ``-j N``'s chunks (64), which share their process.
MOST_IN_BATCH = 256


def replay_on_cluster(address: str, store: Store, groups: dict[str | None, list[str]],
                      options: ReplayOptions) -> Generator[RunResult, None, None]:
    """Replay each group of runs (keyed by recorded hash seed) on the cluster at
    ``address``; yields results in the order of the groups and of their runs, as
    ``-j N`` does. Closing the iterator early (``--fail-fast``) cancels what is left."""
    total = sum(len(ids) for ids in groups.values())
    if not total:  # every run's record was damaged: nothing to ask a cluster
        return
    with open_cluster(address) as cluster, \
            tempfile.TemporaryDirectory(prefix="pinrun-dask-") as folder:
        size = max(1, min(MOST_IN_BATCH,
                          math.ceil(total / (BATCHES_PER_SLOT * cluster.slots))))
        batches = deque((seed, ids[start:start + size]) for seed, ids in groups.items()
                        for start in range(0, len(ids), size))
        # Submitted a window ahead of the results read, so the bundles in memory
        # stay a few per worker whatever the corpus.
        window = 2 * BATCHES_PER_SLOT * cluster.slots
        flying: deque[_Sent] = deque()
        try:
            while batches or flying:
                while batches and len(flying) < window:
                    seed, ids = batches.popleft()
                    flying.append(_submit(cluster, store, Path(folder), seed, ids,
                                          options=options))
                yield from flying.popleft().results()
        finally:
            cluster.cancel(sent.future for sent in flying if sent.future is not None)


@dataclass
class _Sent:
    """One batch on its way: the runs it holds, and its task (None: nothing to replay)."""

    ids: list[str]
    future: Future[bytes] | None
    #: The runs that could not be sent, with their results (their objects are damaged).
    unsent: dict[str, RunResult]

    def results(self) -> Iterator[RunResult]:
        """The batch's results in the order of its runs; waits for the task."""
        sent = [run_id for run_id in self.ids if run_id not in self.unsent]
        replayed: dict[str, RunResult] = {}
        if self.future is not None:
            try:
                data = self.future.result()
            except Exception as exc:  # the task failed on the cluster (a worker lost...)
                replayed = {run_id: RunResult(run_id, error=f"the Dask task replaying it "
                                                            f"failed ({type(exc).__name__}: "
                                                            f"{exc})") for run_id in sent}
            else:
                replayed = {result.run_id: result
                            for result in worker.chunk_results(data, sent)}
        for run_id in self.ids:
            yield self.unsent.get(run_id) or replayed[run_id]


def _submit(cluster: Cluster, store: Store, folder: Path, seed: str | None, ids: list[str], *,
            options: ReplayOptions) -> _Sent:
    """Send one batch: its bundle's bytes, its runs, its seed, the replay options."""
    bundle = folder / "batch.pinrun"
    unsent: dict[str, RunResult] = {}
    sent = list(ids)
    try:
        export_bundle(store, [RUN_REF_PREFIX + run_id for run_id in sent], bundle)
    except StoreError:
        # Some run reaches a damaged object: that run's result says so (as a worker of
        # -j N would), the others go.
        for run_id in ids:
            try:
                export_bundle(store, [RUN_REF_PREFIX + run_id], bundle)
            except StoreError as exc:
                unsent[run_id] = RunResult(run_id, error=str(exc), store_error=True)
        sent = [run_id for run_id in ids if run_id not in unsent]
        if sent:
            export_bundle(store, [RUN_REF_PREFIX + run_id for run_id in sent], bundle)
    if not sent:
        return _Sent(ids, None, unsent)
    data = bundle.read_bytes()
    bundle.unlink()
    return _Sent(ids, cluster.submit(replay_batch, cluster.send(data), sent, seed, options),
                 unsent)


# ------------------------------------------------------------ in a Dask worker


@dataclass(frozen=True)
class BatchRequest:
    """A batch for a fresh interpreter: the store it was imported into, and its runs."""

    store_path: str
    run_ids: list[str]
    options: ReplayOptions


def replay_batch(bundle: bytes, run_ids: list[str], seed: str | None,
                 options: ReplayOptions) -> bytes:
    """The Dask task: import the batch's bundle into a private store, replay its runs in
    a fresh interpreter under ``seed``, and give back their pickled results.

    A process that dies on the batch (a step ended it) is retried run by run, each
    alone, so the run that kills it is named and the others keep their results (as
    ``-j N`` does).
    """
    if options.project_root is None:  # the project is the one this worker runs in
        options = replace(options, project_root=str(Path.cwd()))
    environment = {"PYTHONHASHSEED": seed} if seed is not None else None
    with tempfile.TemporaryDirectory(prefix="pinrun-batch-") as folder:
        path = Path(folder) / "batch.pinrun"
        path.write_bytes(bundle)
        store_path = Path(folder) / "store"
        made: list[Store] = []

        def make_store() -> Store:
            made.append(Store.open(store_path, create=True, durable=False))
            return made[-1]

        try:  # every record is proven before the store is made
            import_bundle_into_new(path, make_store)
        finally:
            for store in made:  # the child opens it: this process holds no handle
                store.close()
        path.unlink()
        request = BatchRequest(str(store_path), run_ids, options)
        answer = call_in_child(f"{__name__}:replay_batch_here", request,
                               environment=environment)
        if isinstance(answer.value, bytes):
            return answer.value
        results: list[RunResult] = []
        for run_id in run_ids:
            alone = call_in_child(f"{__name__}:replay_batch_here",
                                  replace(request, run_ids=[run_id]), environment=environment)
            found = worker.chunk_results(alone.value, [run_id]) \
                if isinstance(alone.value, bytes) else [RunResult(run_id, error=worker.DIED)]
            results.extend(found)
        return pickle.dumps(results)


def replay_batch_here(request: BatchRequest) -> bytes:
    """In the fresh interpreter: be a ``-j N`` worker for one batch (the same start, the
    same replay), importing the project from this working folder as ``verify`` does."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    worker.start(request.store_path, request.options)
    return worker.replay_chunk(request.run_ids)
