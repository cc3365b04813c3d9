"""Remotes: push and pull of 1,000 and 10,000 runs, signed and unsigned, against one object
per record.

The runs are of the 5-step order flow of the replay benchmarks
(``replay_corpus``), recorded once per session in-process (``durability="none"``
into a store opened ``durable=False``; not timed) into a store per size, kept
on disk under the session's temporary folder so every round reuses it. The
remotes are a real SeaweedFS S3 server on 127.0.0.1 (``tests/remote/server.py``,
the server the remote tests use) and a folder. Every round pushes to a fresh
prefix (or folder) and pulls into a fresh store.

The remote's client (``remote.client``) is wrapped in a counting proxy
(``remote_counting.Counting``) that counts pinrun's calls by type and the
bytes sent and received; for S3 it also computes the HTTP requests those
calls make (list pages of 1,000 keys; ranges merged by obstore when less
than 1 MiB apart). Reported in ``extra_info`` and the summary:

* ``remote-push`` (per size and remote): ``pinrun-push-unsigned`` and
  ``pinrun-push-signed`` (what ``pinrun push --all`` does: select the runs,
  read the remote's catalog, write one pack, upload it and one index entry),
  next to the baselines ``one-object-per-record`` (the same records, one
  ``put_new`` each through the same client, as DVC-like tools upload) and
  ``one-object-per-record-8-threads`` (DVC's default of 4 jobs per core);
  the signed push carries ``signing_us_per_run`` (its median time minus the
  unsigned push's, per run) and ``signed_vs_unsigned`` (the ratio), the same
  two from pushes timed in pairs, one unsigned then one signed
  (``paired_...``: the medians of the pairs' differences and ratios, the
  figures to read on a noisy machine), and ``sign_us_per_call``, Ed25519 alone
  on a run's message.
* ``remote-push-again``: a second push of the same runs (nothing to send).
* ``remote-pull``: ``pinrun-pull`` of every run into a fresh, durable store
  (catalog, ranges, proof, one import), next to the records fetched one
  ``get`` each (sequential and 8 threads) at the 1,000-run size.
* ``remote-pull-one``: one run out of all of them into a fresh store.
* ``remote-worker-push``: a worker's push of 100 runs (``BackgroundPusher``'s
  batch), to a remote holding every earlier run (``pinrun-worker-push``)
  and to an empty one (the baseline): what the remote's size costs a push.

``transfer_s`` is the time spent inside the remote's calls (summed over
threads for the threaded baselines), the rest is pinrun's own work.

The per-record baselines run at the 1,000-run size only (at 10,000 runs they
take minutes a round); folder pulls at that size too (a pull of 10,000 runs
into a durable store is slow, see docs/benchmarks.md). Timings are never
asserted.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from tests.remote.server import S3Server, seaweedfs

import pinrun
from benchmarks._harness import RESULTS, BenchmarkFixture, report
from benchmarks.conftest import scaled
from benchmarks.remote_counting import Counting, Traffic
from benchmarks.replay_corpus import ORDER_MODULE, on_sys_path, record_corpus, write_order_project
from pinrun.artifacts.bundle import write_pack
from pinrun.engine.publishing import describe_runs, published_by, selected_runs
from pinrun.remote.index import RemoteRun, encode_entry
from pinrun.remote.keys import SigningKey, run_message
from pinrun.remote.remotes import Remote, open_remote
from pinrun.remote.selection import RemoteSelection, select_remote_runs
from pinrun.remote.transfer import PullReport, PushReport, pull_runs, push_runs

SMALL: Final = scaled(1000, minimum=10)
LARGE: Final = scaled(10_000, minimum=20)
KINDS: Final = ("folder", "s3")
#: Rounds per size: the large pushes and pulls take seconds each.
ROUNDS: Final = {SMALL: 3, LARGE: 2}
PULL_ROUNDS: Final = {SMALL: 2, LARGE: 1}
BASELINE_ROUNDS: Final = 2
#: Paired (unsigned, signed) pushes for the signing cost.
PAIRS: Final = {SMALL: 5, LARGE: 3}
THREADS: Final = 8
KEY: Final = SigningKey("bench", bytes(range(32)))
EVERYTHING: Final = RemoteSelection(everything=True)


@dataclass
class Bench:
    """The session's folders, corpora, S3 server and remotes already pushed."""

    root: Path
    server: S3Server
    corpora: dict[int, Path] = field(default_factory=dict)
    pushed: dict[tuple[int, str], str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def store(self, runs: int) -> Path:
        """The store holding ``runs`` recorded runs (recorded on first use)."""
        if runs not in self.corpora:
            project = write_order_project(self.root / f"project-{runs}")
            with on_sys_path(project, (ORDER_MODULE,)):
                self.corpora[runs] = record_corpus(project, "store", runs).store_path
        return self.corpora[runs]

    def url(self, kind: str) -> str:
        """A fresh remote: a new prefix in the bucket, or a new folder."""
        n = next(self.counter)
        if kind == "s3":
            return self.server.url(f"bench-{n}")
        return str(self.root / "remotes" / f"r{n}")

    def remote(self, kind: str, store_path: Path | None, url: str | None = None) -> Remote:
        """The remote at ``url`` (a fresh one by default), its client counted."""
        remote = open_remote(store_path, url or self.url(kind))
        remote.client = Counting(remote.client)
        return remote

    def pushed_url(self, runs: int, kind: str) -> str:
        """A remote holding every run of the ``runs`` store, pushed signed (once)."""
        if (runs, kind) not in self.pushed:
            with pinrun.open_store(self.store(runs)) as store:
                remote = self.remote(kind, store.path)
                push_runs(store, remote, selected_runs(store, EVERYTHING), KEY)
            self.pushed[runs, kind] = remote.settings.url
        return self.pushed[runs, kind]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """A SeaweedFS server on 127.0.0.1, its credentials in the environment, and a folder."""
    root = tmp_path_factory.mktemp("remote-bench")
    with seaweedfs(root / "seaweedfs") as server:
        saved = {name: os.environ.get(name) for name in server.env}
        os.environ.update(server.env)
        try:
            yield Bench(root, server)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _counting(remote: Remote) -> Counting:
    client = remote.client
    assert isinstance(client, Counting)
    return client


def _traffic_notes(traffic: list[Traffic], kind: str, runs: int) -> dict[str, Any]:
    """The last round's traffic (every round of one operation asks the same)."""
    last = traffic[-1]
    notes = last.summary(kind == "s3")
    notes["runs_per_round"] = runs
    return notes


# ------------------------------------------------------------------------ push


def _push_all(store: pinrun.Store, remote: Remote, key: SigningKey | None,
              timings: dict[str, list[float]]) -> PushReport:
    started = time.perf_counter()
    # What `pinrun push --all` does: the catalog first, then the runs it lacks described.
    catalog = remote.catalog() if remote.exists() else None
    runs = selected_runs(store, EVERYTHING, published_by(catalog, key))
    timings["select"].append(time.perf_counter() - started)
    return push_runs(store, remote, runs, key, catalog)


def _pack_records(store: pinrun.Store) -> list[tuple[str, bytes]]:
    """Every record a push of all runs would pack, as (hex digest, bytes)."""
    with tempfile.TemporaryFile() as handle:
        roots = [run.digest for run in selected_runs(store, EVERYTHING)]
        table = write_pack(store, roots, set(), handle)
        handle.seek(0)
        data = handle.read()
    return [(digest.hex, data[offset:offset + length]) for digest, offset, length in table]


def _put_each(remote: Remote, records: list[tuple[str, bytes]], threads: int) -> int:
    client = remote.client

    def put(item: tuple[str, bytes]) -> bool:
        return client.put_new(f"objects/{item[0][:2]}/{item[0][2:]}", item[1])

    if threads == 1:
        for item in records:
            put(item)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, records))
    return len(records)


PUSH_IMPLS: Final = ("one-object-per-record", "one-object-per-record-8-threads",
                     "pinrun-push-unsigned", "pinrun-push-signed")
PUSH_CASES: Final = [(runs, kind, impl) for runs in (SMALL, LARGE) for kind in KINDS
                     for impl in PUSH_IMPLS
                     if runs == SMALL or not impl.startswith("one-object")]


@pytest.mark.parametrize(("runs", "kind", "impl"), PUSH_CASES,
                         ids=[f"{r}-{k}-{i}" for r, k, i in PUSH_CASES])
def test_push(benchmark: BenchmarkFixture, bench: Bench, runs: int, kind: str,
              impl: str) -> None:
    """runs/s, requests and bytes pushing every run to a fresh remote; signed vs unsigned."""
    group = f"remote-push ({runs} runs, {kind})"
    benchmark.group = group
    traffic: list[Traffic] = []
    timings: dict[str, list[float]] = {"select": []}
    reports: list[PushReport] = []
    with pinrun.open_store(bench.store(runs)) as store:
        records = _pack_records(store) if impl.startswith("one-object") else []

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (bench.remote(kind, store.path),), {}

        def push(remote: Remote) -> int:
            if records:
                done = _put_each(remote, records, THREADS if "threads" in impl else 1)
            else:
                key = KEY if impl.endswith("-signed") else None
                reports.append(_push_all(store, remote, key, timings))
                done = len(reports[-1].runs)
            traffic.append(_counting(remote).reset())
            return done

        rounds = BASELINE_ROUNDS if records else ROUNDS[runs]
        done = benchmark.pedantic(push, setup=setup, rounds=rounds)
    notes = _traffic_notes(traffic, kind, runs)
    if records:
        assert done == len(records)
        notes["records"] = len(records)
    else:
        assert done == runs
        notes.update(records=reports[-1].objects, pack_bytes=reports[-1].bytes,
                     select_s=round(statistics.median(timings["select"]), 3))
    stats = benchmark.stats
    if stats:
        median_s = float(stats.stats.median)
        notes["us_per_run"] = round(median_s / runs * 1e6, 1)
        unsigned = RESULTS.get(group, {}).get("pinrun-push-unsigned")
        if impl == "pinrun-push-signed" and unsigned is not None:
            notes["signing_us_per_run"] = round((median_s - unsigned.median_s) / runs * 1e6, 1)
            notes["signed_vs_unsigned"] = round(median_s / unsigned.median_s, 3)
    if impl == "pinrun-push-signed":
        with pinrun.open_store(bench.store(runs)) as store:
            paired = _paired_signing(bench, store, kind, runs)
        notes["paired_signing_us_per_run"] = round(statistics.median(
            (signed - unsigned) / runs * 1e6 for unsigned, signed in paired), 1)
        notes["paired_signed_vs_unsigned"] = round(statistics.median(
            signed / unsigned for unsigned, signed in paired), 3)
        notes["sign_us_per_call"] = round(_sign_cost(), 1)
        with pinrun.open_store(bench.store(runs)) as store:
            notes["entry_signing_us_per_run"] = round(_entry_signing(store, runs), 1)
    report(benchmark, impl, runs, unit="runs", notes=notes)


def _entry_signing(store: pinrun.Store, runs: int) -> float:
    """Microseconds per run that signing adds to encoding the push's index entry.

    The entry of a push of every run is encoded unsigned, then signed, 5 times in
    pairs; the median difference per run. This is all a push does differently
    when it signs (one signature per run, one over the entry), without the
    pack's writing and upload around it, whose noise hides it end to end.
    """
    selected = selected_runs(store, EVERYTHING)
    with tempfile.TemporaryFile() as handle:
        table = write_pack(store, [run.digest for run in selected], set(), handle)
    differences = []
    for _ in range(5):
        times = []
        for key in (None, KEY):
            started = time.perf_counter()
            encode_entry("0" * 64, table, selected, "2026-12-06T00:00:00+00:00", key)
            times.append(time.perf_counter() - started)
        differences.append((times[1] - times[0]) / runs * 1e6)
    return statistics.median(differences)


def _paired_signing(bench: Bench, store: pinrun.Store, kind: str,
                    runs: int) -> list[tuple[float, float]]:
    """``PAIRS[runs]`` pairs of (unsigned, signed) push times, one right after the other.

    Signing costs tens of microseconds per run against a push's hundreds, and the
    machine drifts between pytest-benchmark's rounds of one variant and the other's;
    timing them in pairs puts the drift in both halves of each pair.
    """
    pairs = []
    for _ in range(PAIRS[runs]):
        times = []
        for key in (None, KEY):
            remote = bench.remote(kind, store.path)
            started = time.perf_counter()
            _push_all(store, remote, key, {"select": []})
            times.append(time.perf_counter() - started)
        pairs.append((times[0], times[1]))
    return pairs


def _sign_cost(calls: int = 2000) -> float:
    """Microseconds of one Ed25519 signature over a run's message (median of 5 batches)."""
    run = RemoteRun("20261206T101502113-4f1a2b", pinrun.Digest(bytes(32)), "order", "succeeded")
    message = run_message(run.id, run.digest)
    batches = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            KEY.sign(message)
        batches.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(batches)


@pytest.mark.parametrize(("runs", "kind"), [(r, k) for r in (SMALL, LARGE) for k in KINDS],
                         ids=[f"{r}-{k}" for r in (SMALL, LARGE) for k in KINDS])
def test_push_again(benchmark: BenchmarkFixture, bench: Bench, runs: int, kind: str) -> None:
    """Time and requests of a second push of the same runs: nothing to send."""
    benchmark.group = f"remote-push-again ({runs} runs, {kind})"
    url = bench.pushed_url(runs, kind)
    traffic: list[Traffic] = []
    reports: list[PushReport] = []
    timings: dict[str, list[float]] = {"select": []}
    with pinrun.open_store(bench.store(runs)) as store:
        # Round 1 fetches the remote's index entry into the pushing store's cache (the
        # first push read the catalog before its entry existed); later rounds read it there.
        remote = bench.remote(kind, store.path, url)

        def push() -> int:
            reports.append(_push_all(store, remote, KEY, timings))
            traffic.append(_counting(remote).reset())
            return reports[-1].already

        already = benchmark.pedantic(push, rounds=ROUNDS[runs])
    assert already == runs
    assert all(not r.runs and r.pack is None for r in reports)
    notes = _traffic_notes(traffic, kind, runs)
    notes["first_round"] = traffic[0].summary(kind == "s3")
    notes["select_s"] = round(statistics.median(timings["select"]), 3)
    report(benchmark, "pinrun-push-again", runs, unit="runs", notes=notes)


# ------------------------------------------------------------------------ pull


def _pull(store_path: Path, remote: Remote, selection: RemoteSelection) -> PullReport:
    with pinrun.open_store(store_path) as store:
        catalog = remote.catalog()
        return pull_runs(store, remote, select_remote_runs(catalog, selection),
                         catalog=catalog)


def _get_each(remote: Remote, keys: list[str], threads: int) -> int:
    client = remote.client
    if threads == 1:
        return sum(len(client.get(key) or b"") > 0 for key in keys)
    with ThreadPoolExecutor(threads) as pool:
        return sum(len(data or b"") > 0 for data in pool.map(client.get, keys))


PULL_IMPLS: Final = ("one-object-per-record", "one-object-per-record-8-threads", "pinrun-pull")
PULL_CASES: Final = [(runs, kind, impl) for runs in (SMALL, LARGE) for kind in KINDS
                     for impl in PULL_IMPLS
                     if runs == SMALL or (kind == "s3" and impl == "pinrun-pull")]


@pytest.mark.parametrize(("runs", "kind", "impl"), PULL_CASES,
                         ids=[f"{r}-{k}-{i}" for r, k, i in PULL_CASES])
def test_pull(benchmark: BenchmarkFixture, bench: Bench, runs: int, kind: str,
              impl: str) -> None:
    """runs/s, requests and bytes pulling every run into a fresh store."""
    benchmark.group = f"remote-pull ({runs} runs, {kind})"
    traffic: list[Traffic] = []
    reports: list[PullReport] = []
    fresh = _fresh_stores(bench.root / f"pull-{runs}-{kind}-{impl}")
    notes: dict[str, Any]
    if impl.startswith("one-object"):
        with pinrun.open_store(bench.store(runs)) as store:
            records = _pack_records(store)
        uploaded = bench.remote(kind, bench.store(runs))
        _put_each(uploaded, records, THREADS)
        keys = [f"objects/{hex_[:2]}/{hex_[2:]}" for hex_, _ in records]

        def fetch(remote: Remote) -> int:
            done = _get_each(remote, keys, THREADS if "threads" in impl else 1)
            traffic.append(_counting(remote).reset())
            return done

        def setup_each() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (bench.remote(kind, None, uploaded.settings.url),), {}

        done = benchmark.pedantic(fetch, setup=setup_each, rounds=BASELINE_ROUNDS)
        assert done == len(records)
        notes = _traffic_notes(traffic, kind, runs)
    else:
        url = bench.pushed_url(runs, kind)

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            folder = fresh()
            pinrun.open_store(folder, create=True).close()
            return (folder, bench.remote(kind, folder, url)), {}

        def pull(folder: Path, remote: Remote) -> int:
            reports.append(_pull(folder, remote, EVERYTHING))
            traffic.append(_counting(remote).reset())
            return len(reports[-1].runs)

        done = benchmark.pedantic(pull, setup=setup, rounds=PULL_ROUNDS[runs])
        assert done == runs
        notes = _traffic_notes(traffic, kind, runs)
        notes.update(records=reports[-1].objects, record_bytes=reports[-1].bytes)
    stats = benchmark.stats
    if stats:
        notes["us_per_run"] = round(float(stats.stats.median) / runs * 1e6, 1)
    report(benchmark, impl, runs, unit="runs", notes=notes)


def _fresh_stores(parent: Path) -> Callable[[], Path]:
    counter = itertools.count()

    def make() -> Path:
        return parent / f"store-{next(counter)}"

    return make


@pytest.mark.parametrize(("runs", "kind"), [(r, k) for r in (SMALL, LARGE) for k in KINDS],
                         ids=[f"{r}-{k}" for r in (SMALL, LARGE) for k in KINDS])
def test_pull_one(benchmark: BenchmarkFixture, bench: Bench, runs: int, kind: str) -> None:
    """Requests and bytes pulling one run out of all of them into a fresh store."""
    benchmark.group = f"remote-pull-one (1 of {runs} runs, {kind})"
    url = bench.pushed_url(runs, kind)
    with pinrun.open_store(bench.store(runs)) as store:
        wanted = sorted(selected_runs(store, EVERYTHING), key=lambda r: r.id)[runs // 2].id
    fresh = _fresh_stores(bench.root / f"pull-one-{runs}-{kind}")
    traffic: list[Traffic] = []
    reports: list[PullReport] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = fresh()
        pinrun.open_store(folder, create=True).close()
        return (folder, bench.remote(kind, folder, url)), {}

    def pull(folder: Path, remote: Remote) -> int:
        reports.append(_pull(folder, remote, RemoteSelection(run_ids=(wanted,))))
        traffic.append(_counting(remote).reset())
        return len(reports[-1].runs)

    done = benchmark.pedantic(pull, setup=setup, rounds=3)
    assert done == 1
    notes = _traffic_notes(traffic, kind, 1)
    notes.update(out_of=runs, records=reports[-1].objects, record_bytes=reports[-1].bytes)
    report(benchmark, "pinrun-pull-one", 1, unit="runs", notes=notes)


# ---------------------------------------------------------------------- a worker

#: Runs per push of a worker (BackgroundPusher's default batch).
BATCH: Final = 100
WORKER_ROUNDS: Final = 3
WORKER_IMPLS: Final = ("worker-push-to-empty-remote", "pinrun-worker-push")
WORKER_CASES: Final = [(runs, kind, impl) for runs in (SMALL, LARGE) for kind in KINDS
                       for impl in WORKER_IMPLS]


@pytest.mark.parametrize(("runs", "kind", "impl"), WORKER_CASES,
                         ids=[f"{r}-{k}-{i}" for r, k, i in WORKER_CASES])
def test_worker_push(benchmark: BenchmarkFixture, bench: Bench, runs: int, kind: str,
                     impl: str) -> None:
    """A worker's push of its last 100 runs, as BackgroundPusher makes it, to a remote
    holding all the earlier runs, against the same push to an empty remote."""
    batch = min(BATCH, max(1, runs // 10))
    benchmark.group = f"remote-worker-push ({batch} runs onto {runs}, {kind})"
    traffic: list[Traffic] = []
    with pinrun.open_store(bench.store(runs)) as store:
        ids = sorted(run.id for run in selected_runs(store, EVERYTHING))
        held = ids[:len(ids) - batch * WORKER_ROUNDS]
        batches = iter([ids[len(held) + n * batch:len(held) + (n + 1) * batch]
                        for n in range(WORKER_ROUNDS)])
        url = None
        if impl == "pinrun-worker-push":  # the earlier runs, pushed before (not timed)
            earlier = bench.remote(kind, store.path)
            push_runs(store, earlier, describe_runs(store, held), KEY)
            url = earlier.settings.url

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (bench.remote(kind, store.path, url), next(batches)), {}

        def push(remote: Remote, run_ids: list[str]) -> int:
            pushed = push_runs(store, remote, describe_runs(store, run_ids), KEY)
            traffic.append(_counting(remote).reset())
            return len(pushed.runs)

        done = benchmark.pedantic(push, setup=setup, rounds=WORKER_ROUNDS)
    assert done == batch
    notes = _traffic_notes(traffic, kind, batch)
    notes["remote_holds"] = len(held) if url else 0
    stats = benchmark.stats
    if stats:
        notes["ms_per_push"] = round(float(stats.stats.median) * 1e3, 1)
    report(benchmark, impl, batch, unit="runs", notes=notes)
