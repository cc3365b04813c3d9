"""Publishing recorded runs: how a remote describes them, and a worker's background pusher.

A production worker records on its hot path and must never wait on the
network there. :class:`BackgroundPusher` takes the ids of the runs it
records (a list append) and pushes them from a thread of its own, batched:
a pack every ``every_runs`` runs or every ``every_seconds`` seconds,
whichever comes first, and once more when it is closed. A push that fails
(the remote is down) keeps its runs for the next one and is reported by
:attr:`BackgroundPusher.errors`; recording goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import TracebackType

from pinrun.artifacts.store import Store
from pinrun.artifacts.tags import run_tags
from pinrun.engine.records import RUN_REF_PREFIX, load_run
from pinrun.remote.index import Catalog, RemoteRun
from pinrun.remote.keys import SigningKey, signing_key_from_environment
from pinrun.remote.remotes import Remote, open_remote
from pinrun.remote.selection import RemoteSelection, select_remote_runs
from pinrun.remote.transfer import PushReport, push_runs

__all__ = ["BackgroundPusher", "describe_runs", "published_by", "push_selected",
           "selected_runs"]


def describe_runs(store: Store, run_ids: Iterable[str],
                  published: Mapping[str, RemoteRun] | None = None) -> list[RemoteRun]:
    """The runs ``run_ids`` as a remote publishes them (record digest, flow, status, tags).

    ``published`` are runs our own key published: one whose record is the one
    here is described from it (the same record has the same flow, status and
    replaced run) without reading the record, so a push of runs a remote has
    already reads no record.
    """
    tags = run_tags(store)
    out = []
    for run_id in run_ids:
        digest = store.get_ref(f"{RUN_REF_PREFIX}{run_id}")
        known = (published or {}).get(run_id)
        if known is not None and known.digest == digest:
            out.append(replace(known, tags=tuple(sorted(tags.get(run_id, ()))),
                               signer=None, signature=None))
            continue
        run = load_run(store, run_id)
        digest = store.ref(f"{RUN_REF_PREFIX}{run.id}")
        out.append(RemoteRun(run.id, digest, run.flow, run.status, run.replaces,
                             tuple(sorted(tags.get(run.id, ())))))
    return out


def selected_runs(store: Store, selection: RemoteSelection,
                  published: Mapping[str, RemoteRun] | None = None) -> list[RemoteRun]:
    """The store's runs that ``selection`` names (replaced ones too: a push carries them);
    ``published`` as for :func:`describe_runs`."""
    catalog = Catalog()
    ids = [name[len(RUN_REF_PREFIX):] for name in store.refs(RUN_REF_PREFIX)]
    # What the ids alone decide is decided before any record is read (push --since 1h
    # in a store of many runs reads only the last hour's).
    if selection.since is not None:
        ids = [run_id for run_id in ids if run_id >= selection.since]
    if selection.run_ids:
        wanted = selection.run_ids
        ids = [run_id for run_id in ids if any(run_id.startswith(text) for text in wanted)]
    for run in describe_runs(store, ids, published):
        catalog.runs[run.id] = run
    return select_remote_runs(catalog, replace(selection, replaced=True))


def published_by(catalog: Catalog | None, key: SigningKey | None) -> dict[str, RemoteRun]:
    """The runs of ``catalog`` that ``key`` signed (those a push may describe from it)."""
    if catalog is None or key is None:
        return {}
    return {run.id: run for run in catalog.runs.values()
            if run.signer is not None and run.signer.raw == key.public.raw}


def push_selected(store: Store, remote: Remote, selection: RemoteSelection,
                  key: SigningKey | None) -> PushReport:
    """``pinrun push``: the selected runs and all they reach, onto ``remote``.

    The remote's catalog is read first, so runs our key published already, as
    they are here, are described from it without reading their records.
    """
    catalog = remote.catalog() if remote.exists() else None
    runs = selected_runs(store, selection, published_by(catalog, key))
    return push_runs(store, remote, runs, key, catalog)


class BackgroundPusher:
    """Push the runs a worker records, from a thread, in batches.

    ::

        with pinrun.open_store() as store, BackgroundPusher(store, "prod") as pusher:
            for order in orders:
                run = pinrun.record(flow, {"order_id": order}, store=store)
                pusher.recorded(run.id)       # returns at once
    """

    def __init__(self, store: Store, remote: str | Remote | None = None, *,
                 every_runs: int = 100, every_seconds: float = 30.0,
                 key: SigningKey | None = None) -> None:
        self.store = store
        self.remote = remote if isinstance(remote, Remote) else open_remote(store.path, remote)
        self.key = key if key is not None else signing_key_from_environment()
        self.every_runs = max(1, every_runs)
        self.every_seconds = every_seconds
        #: The reports of the pushes made so far.
        self.reports: list[PushReport] = []
        #: Errors of pushes that failed (their runs were kept for the next push).
        self.errors: list[Exception] = []
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="pinrun-pusher", daemon=True)
        self._thread.start()

    def recorded(self, run_id: str) -> None:
        """Queue a recorded run for the next push (never waits on the network)."""
        with self._lock:
            self._pending.append(run_id)
            if len(self._pending) >= self.every_runs:
                self._wake.set()

    def flush(self) -> None:
        """Push what is queued now, in this thread."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self.reports.append(push_runs(self.store, self.remote,
                                          describe_runs(self.store, batch), self.key))
        except Exception as exc:  # a full disk as much as a remote that is down:
            self.errors.append(exc)  # the batch is kept, in order, for the next push,
            with self._lock:         # and the thread lives on
                self._pending[:0] = batch

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self.every_seconds)
            self._wake.clear()
            if not self._stopping:
                self.flush()

    def close(self) -> None:
        """Stop the thread and push what is left."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self.flush()

    def __enter__(self) -> BackgroundPusher:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
