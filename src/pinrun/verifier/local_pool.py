"""Replaying the runs of one hash seed in a pool of local worker processes.

``pinrun verify -j N`` groups its runs by the hash seed each recorded, and each
group replays in a pool of fresh interpreters started under that seed. A
:class:`GroupReplay` takes the group's runs one by one as the parent finds them
and hands them to the pool a chunk at a time, so the first group's workers start
and replay while the parent is still reading the other runs' seeds; its results
come back in the order the runs were added, in the form the caller asked for
(:class:`~pinrun.verifier.worker.ResultForm`: objects, or the values the workers
made). The tasks get smaller as the runs still to come run out, so the workers
end together.

Each worker checks that each run it is given recorded the group's seed (the
parent's seed pass only plans, :mod:`pinrun.verifier.seed_pass`): a run that
recorded another comes back unreplayed, and is left in
:attr:`GroupReplay.misrouted` for the caller to replay under its own seed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from typing import Generic, TypeVar

from pinrun.verifier import worker
from pinrun.verifier.worker import ReplayOptions, ResultForm, RunResult
from pinrun.world.processes import worker_pool

__all__ = ["GroupReplay", "replay_group"]

#: Most runs in one task: small enough that the workers end together, large enough
#: that a task's overhead (a pickle each way, and in this process the pool's thread
#: waking for each answer, ~0.25 ms a task) is spread over many replays.
_MOST_PER_TASK = 64
#: Tasks per worker the runs still to come are cut into (at most 64 runs each): the
#: last tasks are short, so no worker is left replaying a long one alone at the end.
_TASKS_PER_WORKER = 4

_R = TypeVar("_R")


def task_size(remaining: int, jobs: int) -> int:
    """How many runs the next task takes when ``remaining`` runs are still to come."""
    return max(1, min(_MOST_PER_TASK, remaining // (max(jobs, 1) * _TASKS_PER_WORKER)))


class GroupReplay(Generic[_R]):
    """Replays the runs added to it in up to ``jobs`` workers started under ``seed``.

    :meth:`add` runs (the pool starts with the first task), then read
    :meth:`results`; :meth:`close` (or leaving the ``with`` block) stops the pool,
    dropping the tasks not started yet. ``expected`` is how many runs may be
    added, which sizes the tasks (about four per worker of the runs still to come, at
    most 64 runs each). Results come in ``form`` (:data:`~pinrun.verifier.worker.OBJECTS`
    or :data:`~pinrun.verifier.worker.VALUES`, which the options' ``values`` must match).

    A run whose worker finds that it recorded another seed is not among the results: it
    is in :attr:`misrouted`, in order, once :meth:`results` has ended.

    A dead worker breaks its whole pool, so the tasks still in flight fail with
    it. The runs of the first of them, in order, are replayed once more alone:
    one that kills that worker too is the culprit, and its result says so; the
    other tasks are replayed again in a fresh pool.
    """

    def __init__(self, seed: str | None, jobs: int, arguments: tuple[str, ReplayOptions],
                 expected: int, form: ResultForm[_R]) -> None:
        self.seed = seed
        self._jobs = max(jobs, 1)
        self._arguments = arguments
        self._form = form
        #: Runs that may still be added (``expected`` less those added so far).
        self._remaining = expected
        self._size = task_size(expected, self._jobs)
        self._processes = max(1, min(self._jobs, -(-expected // self._size)))
        self._stack = ExitStack()
        self._pool: ProcessPoolExecutor | None = None
        self._chunk: list[str] = []
        # A deque, so each task (and its results) is let go once consumed. A task
        # never submitted (the pool broke first) has no future.
        self._tasks: deque[tuple[list[str], Future[bytes] | None]] = deque()
        #: The runs still to replay after the pool broke.
        self._unfinished: list[str] = []
        #: The runs that recorded another seed than ``seed``, not replayed here.
        self.misrouted: list[str] = []

    def add(self, run_id: str) -> None:
        """Replay ``run_id`` after the runs added before it."""
        self._chunk.append(run_id)
        if len(self._chunk) >= self._size:
            self._remaining -= len(self._chunk)
            self._size = task_size(self._remaining, self._jobs)
            self._submit()

    def _submit(self) -> None:
        if not self._chunk:
            return
        chunk, self._chunk = self._chunk, []
        if self._pool is None:
            self._pool = self._stack.enter_context(
                worker_pool(self._processes, self.seed, worker.start,
                            (*self._arguments, (self.seed,))))
        try:
            future: Future[bytes] | None = self._pool.submit(worker.replay_chunk, chunk)
        except BrokenProcessPool:  # a worker died already: see results()
            future = None
        self._tasks.append((chunk, future))

    def results(self) -> Iterator[_R]:
        """Each added run's result, in the order the runs were added."""
        yield from self._results_here()
        rest = self._unfinished
        while rest:  # a worker died: the runs after its task, in a fresh pool
            with GroupReplay(self.seed, self._jobs, self._arguments, len(rest),
                             self._form) as again:
                for run_id in rest:
                    again.add(run_id)
                yield from again._results_here()
                self.misrouted += again.misrouted
                rest = again._unfinished

    def _results_here(self) -> Iterator[_R]:
        """The results of this pool; when it breaks, the runs of the broken task alone,
        and the later runs left in ``_unfinished``."""
        self._submit()  # the last chunk, however short
        while self._tasks:
            chunk, future = self._tasks.popleft()
            try:
                if future is None:
                    raise BrokenProcessPool("the pool broke before this task was submitted")
                results = self._form.read(future.result(), chunk)
            except BrokenProcessPool:
                self._unfinished = [run_id for later, _ in self._tasks for run_id in later]
                self.close()
                for run_id in chunk:
                    result = _alone(run_id, self.seed, self._arguments, self._form)
                    if self._form.misrouted(result):
                        self.misrouted.append(run_id)
                    else:
                        yield result
                return
            del future
            misrouted = self.misrouted
            for run_id, result in zip(chunk, results, strict=True):
                if self._form.misrouted(result):
                    misrouted.append(run_id)
                else:
                    yield result

    def close(self) -> None:
        """Stop the pool: the tasks under way end, the others are dropped."""
        self._tasks.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._stack.close()

    def __enter__(self) -> GroupReplay[_R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replay_group(ids: list[str], seed: str | None, jobs: int,
                 arguments: tuple[str, ReplayOptions], form: ResultForm[_R], *,
                 misrouted: list[str]) -> Iterator[_R]:
    """Replay ``ids`` in a pool of up to ``jobs`` workers started under ``seed``, in order;
    the runs its workers found to have recorded another seed are added to ``misrouted``."""
    if not ids:
        return
    with GroupReplay(seed, jobs, arguments, len(ids), form) as group:
        for run_id in ids:
            group.add(run_id)
        yield from group.results()
        misrouted += group.misrouted


def _alone(run_id: str, seed: str | None, arguments: tuple[str, ReplayOptions],
           form: ResultForm[_R]) -> _R:
    with worker_pool(1, seed, worker.start, (*arguments, (seed,))) as pool:
        try:
            results = form.read(pool.submit(worker.replay_chunk, [run_id]).result(), [run_id])
        except BrokenProcessPool:
            return form.of(RunResult(run_id, error=worker.DIED))
    return results[0]
