"""Replay and verify: what replaying a recorded run costs, against recording it.

The runs are of the 5-step order flow of ``flow_baselines`` (its five step
functions copied verbatim into a generated project in a temporary folder,
``replay_corpus``), recorded with ``pinrun.record(..., durability="none")``
into stores opened ``durable=False``. Corpora are recorded once per session
(not timed) and every replay's verdict is checked after the timed rounds: a
run that did not reproduce fails the benchmark.

* ``replay-5-steps``: ``record-none-nosync`` (the baseline: recording the
  runs into a new store, as ``test_bench_recording``'s ``pinrun-none-nosync``
  does) next to ``pinrun.replay`` of the same recorded runs with
  ``code="workdir"`` and ``code="pinned"``, each with ``guards="off"`` and
  ``guards="warn"`` (the default). Reported: us per step and replay's time
  over record's (target: at most 1.2x, since a replay writes nothing). One
  untimed replay before the rounds warms what pinrun caches per process.
* ``verify-N-runs``: ``run_verification`` (what ``pinrun verify`` runs) of
  ``VERIFY_RUNS`` runs (the issue's figure) and of ``LARGE_RUNS`` runs (to
  show the fixed cost amortised), ``code="workdir"``, ``guards="warn"``, with
  ``jobs=1`` (``verify-j1``) and ``jobs=2`` (``pinrun-verify-j2``).
  ``select_runs`` is timed too. The workers are fresh interpreters that
  ``run_verification`` spawns in the timed call, so their start-up is timed.
  Target: a speed-up of at least 1.7x. An untimed probe that verifies one
  run per worker estimates the fixed cost, to give the speed-up after it.
  The CPU seconds of the verifying process (``parent_cpu_s``) and of its
  workers (``workers_cpu_s``, start-up included) are noted, medians of the
  rounds: with two workers on two cores they add up to what the wall time pays.
* ``verify-cli-N-runs``: the same through ``python -m pinrun verify -j 1``
  and ``-j 2`` in a subprocess: the command's own start-up is timed too.
* ``verify-memory``: ``python -m pinrun verify -j 1`` of ``VERIFY_RUNS`` and
  of ``LARGE_RUNS`` runs, each in a fresh subprocess started by a small
  wrapper interpreter that prints ``getrusage(RUSAGE_CHILDREN).ru_maxrss``:
  the peak RSS of the largest process of the verify (the command or its
  worker). It should stay flat as the corpus grows. Two untimed probes
  explain the figure: the same command with ``--sample 1`` (the floor), and
  a fresh process that consumes ``run_verification`` without keeping the
  results, which reports its own peak RSS, its anonymous memory and file
  pages at the end (``/proc/self/status``), and its worker's peak RSS.
* ``replay-worker-cpu``: process CPU time per replay of the ``VERIFY_RUNS``
  corpus, in a fresh interpreter: pinrun's verify worker (``worker.start`` then
  ``worker.replay_chunk``, guards ``warn``, workdir and pinned code) against
  ``replay_corpus.MinimalReplayer`` (the physical reference: the run record,
  each step's inputs and events read, the step function called, its outputs
  encoded, hashed, compared and read back). Target: at most 4x the reference.
* ``pinned-import``: importing a 5-module project (~200 lines each) from the
  store (``pinned_modules(pinned_sources(...))`` + ``import_entry``) against
  ``importlib.import_module`` from disk, with its bytecode cache
  (``disk-import``) and without (``disk-import-source``: compiled from the
  source). pinrun keeps the pinned sources it compiled per process
  (``loader._compiled``, an ``lru_cache``): ``pinrun-pinned-import`` is the
  steady state of a worker, ``pinrun-pinned-import-cold`` clears that cache
  before each round (the first replay of a flow in a fresh worker).

Names starting with ``pinrun`` are the harness's targets and the others its
baselines, so the printed ratios are replay/record, j2/j1 and 10k/1k
throughputs. Timings are never asserted.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Literal

import pytest

import pinrun
from benchmarks import flow_baselines, replay_corpus
from benchmarks._harness import RESULTS, BenchmarkFixture, report
from benchmarks.conftest import scaled
from benchmarks.replay_corpus import Corpus
from pinrun.artifacts.store import Store
from pinrun.flows.entries import import_entry
from pinrun.flows.loader import pinned_modules, pinned_sources
from pinrun.verifier.verify import Selection, run_verification, select_runs

#: Runs per round: recorded and replayed with the code on disk, and replayed
#: with the pinned code (10,000 steps each at full scale).
REPLAY_RUNS = scaled(2000)
PINNED_RUNS = scaled(2000)
#: The verify corpus, and the large one of the memory benchmark.
VERIFY_RUNS = scaled(1000, minimum=4)
LARGE_RUNS = scaled(10_000, minimum=8)
STEPS_PER_RUN = 5
ROUNDS = 3
LARGE_ROUNDS = 2
IMPORT_ROUNDS = 100
TARGET_REPLAY_TIME = 1.2
TARGET_SPEEDUP = 1.7

Code = Literal["pinned", "workdir"]
Guards = Literal["warn", "strict", "off"]
#: name -> (code, guards, runs per round)
REPLAYS: dict[str, tuple[Code, Guards, int]] = {
    "pinrun-replay-workdir-off": ("workdir", "off", REPLAY_RUNS),
    "pinrun-replay-workdir-warn": ("workdir", "warn", REPLAY_RUNS),
    "pinrun-replay-pinned-off": ("pinned", "off", PINNED_RUNS),
    "pinrun-replay-pinned-warn": ("pinned", "warn", PINNED_RUNS),
}
RECORD = "record-none-nosync"
VERIFY_JOBS = {"verify-j1": 1, "pinrun-verify-j2": 2}
CLI_JOBS = {"cli-verify-j1": 1, "pinrun-cli-verify-j2": 2}
MEMORY = {f"cli-verify-{VERIFY_RUNS}": VERIFY_RUNS, f"pinrun-cli-verify-{LARGE_RUNS}": LARGE_RUNS}
IMPORTS = ["disk-import", "disk-import-source", "pinrun-pinned-import",
           "pinrun-pinned-import-cold"]

REPLAY_GROUP = "replay-5-steps"


def _verify_group(runs: int) -> str:
    return f"verify-{runs}-runs (run_verification, workdir, guards=warn)"


CLI_GROUP = f"verify-cli-{VERIFY_RUNS}-runs (python -m pinrun verify)"
MEMORY_GROUP = "verify-memory (python -m pinrun verify -j 1)"
IMPORT_GROUP = "pinned-import (5 modules of ~200 lines)"
CPU_GROUP = "replay-worker-cpu (process CPU time per replay)"
#: name -> the code a verify worker replays with (None: the minimal replayer).
WORKER_CPU: dict[str, Code | None] = {"minimal-replayer": None,
                                      "pinrun-worker-workdir": "workdir",
                                      "pinrun-worker-pinned": "pinned"}
TARGET_WORKER_CPU = 4.0


# ------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def replay_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder of the replay benchmarks' projects and stores (removed at the end)."""
    path = tmp_path_factory.mktemp("replay")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def order_project(replay_root: Path) -> Iterator[Path]:
    """The order flow's project, on ``sys.path`` for the session."""
    project = replay_corpus.write_order_project(replay_root / "orders")
    with replay_corpus.on_sys_path(project, (replay_corpus.ORDER_MODULE,)):
        yield project


@pytest.fixture(scope="session")
def corpora(order_project: Path) -> Callable[[str, int], Corpus]:
    """``get(name, runs)``: a corpus of ``runs`` recorded runs, recorded once per session."""
    cache: dict[str, Corpus] = {}

    def get(name: str, runs: int) -> Corpus:
        if name not in cache:
            cache[name] = replay_corpus.record_corpus(order_project, name, runs)
        corpus = cache[name]
        assert len(corpus.run_ids) == runs
        return corpus

    return get


@dataclass(frozen=True)
class ImportProject:
    """The pinned-import project, its store and one recorded run of its flow."""

    folder: Path
    lines: dict[str, int]
    store: Store
    run: pinrun.RunRecord


@pytest.fixture(scope="session")
def import_project(replay_root: Path) -> Iterator[ImportProject]:
    """Five generated modules, on ``sys.path``, and a store holding one run of their flow."""
    folder = replay_root / "imports"
    lines = replay_corpus.write_import_project(folder)
    with replay_corpus.on_sys_path(folder, replay_corpus.IMPORT_MODULES):
        module = importlib.import_module(replay_corpus.IMPORT_ENTRY_MODULE)
        with pinrun.open_store(folder / ".pinrun", create=True, durable=False) as store:
            run = pinrun.record(module.FLOW, {"order_id": "I000001"}, store=store,
                                durability="none", project_root=folder)
            assert run.status == "succeeded"
            pinned = pinned_sources(store, run.flow_pin) if run.flow_pin is not None else {}
            assert sorted(pinned) == sorted(replay_corpus.IMPORT_MODULES), sorted(pinned)
            yield ImportProject(folder, lines, store, run)


# ---------------------------------------------------------------- helpers


def _add_notes(benchmark: BenchmarkFixture, name: str, notes: dict[str, Any]) -> None:
    """Notes that need the result itself (or a peer's): into extra_info and the summary."""
    benchmark.extra_info.update(notes)
    result = RESULTS.get(benchmark.group or "default", {}).get(name)
    if result is not None:
        result.notes.update(notes)


def _median_s(benchmark: BenchmarkFixture) -> float | None:
    metadata = benchmark.stats
    return float(metadata.stats.median) if metadata else None


# -------------------------------------------------------- replay against record


def _record_all(store: Store, flow: pinrun.Flow, project: Path,
                inputs: tuple[dict[str, str], ...], last: list[pinrun.RunRecord]) -> int:
    run = None
    for item in inputs:
        run = pinrun.record(flow, item, store=store, durability="none", project_root=project)
    assert run is not None
    last.append(run)
    return len(inputs)


def _measure_record(benchmark: BenchmarkFixture, corpus: Corpus, folder: Path) -> None:
    """Record the corpus's runs again, into a new store per round (set up, not timed)."""
    flow = replay_corpus.order_flow()
    rounds = iter(range(ROUNDS))
    open_stores: list[Store] = []
    last: list[pinrun.RunRecord] = []
    expected = flow_baselines.direct_runner(1)(dict(corpus.inputs[-1]))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        store = pinrun.open_store(folder / f"round-{next(rounds)}", create=True, durable=False)
        open_stores.append(store)
        pinrun.record(flow, {"order_id": "W000000"}, store=store, durability="none",
                      project_root=corpus.project)  # warm-up
        return (store, flow, corpus.project, corpus.inputs, last), {}

    def teardown(store: Store, *args: Any) -> None:
        try:  # the round's last run ended as the direct loop does
            run = last[-1]
            assert run.status == "succeeded"
            assert len(run.steps) == STEPS_PER_RUN
            assert store.get_snapshot(run.state) == expected
        finally:
            open_stores.remove(store)
            store.close()
            shutil.rmtree(store.path, ignore_errors=True)

    try:
        done = benchmark.pedantic(_record_all, setup=setup, teardown=teardown, rounds=ROUNDS)
    finally:
        for store in open_stores:
            store.close()
    assert done == len(corpus.inputs)
    assert len(last) == ROUNDS


def _replay_all(store: Store, run_ids: tuple[str, ...], code: Code, guards: Guards, *,
                project: Path, reports: list[pinrun.ReplayReport]) -> int:
    for run_id in run_ids:
        reports.append(pinrun.replay(run_id, store=store, code=code, guards=guards,
                                     project_root=project))
    return len(run_ids)


def _check_replays(reports: list[pinrun.ReplayReport], run_ids: tuple[str, ...],
                   rounds: int) -> None:
    """Every replay reproduced, every step matched, every run replayed each round."""
    assert len(reports) == rounds * len(run_ids), (len(reports), rounds, len(run_ids))
    bad = [r for r in reports if not r.reproduced]
    if bad:
        pytest.fail(f"{len(bad)} of {len(reports)} replays did not reproduce; the first:\n"
                    f"{bad[0].explain()}")
    assert all(len(r.steps) == STEPS_PER_RUN and all(s.status == "match" for s in r.steps)
               for r in reports)
    assert [r.run_id for r in reports[: len(run_ids)]] == list(run_ids)


def _measure_replay(benchmark: BenchmarkFixture, corpus: Corpus, code: Code, guards: Guards,
                    runs: int) -> None:
    run_ids = corpus.run_ids[:runs]
    reports: list[pinrun.ReplayReport] = []
    with pinrun.open_store(corpus.store_path, durable=False) as store:
        warm_up = pinrun.replay(run_ids[0], store=store, code=code, guards=guards,
                                project_root=corpus.project)
        assert warm_up.reproduced, warm_up.explain()
        done = benchmark.pedantic(_replay_all, args=(store, run_ids, code, guards),
                                  kwargs={"project": corpus.project, "reports": reports},
                                  rounds=ROUNDS)
    assert done == runs
    _check_replays(reports, run_ids, ROUNDS)


@pytest.mark.parametrize("impl", [RECORD, *REPLAYS])
def test_replay_5_steps(benchmark: BenchmarkFixture, corpora: Callable[[str, int], Corpus],
                        replay_root: Path, impl: str) -> None:
    """us per step: replaying recorded 5-step runs against recording them."""
    benchmark.group = REPLAY_GROUP
    corpus = corpora("replay", REPLAY_RUNS)
    if impl == RECORD:
        runs = REPLAY_RUNS
        _measure_record(benchmark, corpus, replay_root / "record")
    else:
        code, guards, runs = REPLAYS[impl]
        _measure_replay(benchmark, corpus, code, guards, runs)
    steps = runs * STEPS_PER_RUN
    median_s = _median_s(benchmark)
    notes: dict[str, Any] = {"runs_per_round": runs}
    if median_s is not None:
        notes["us_per_step"] = round(median_s / steps * 1e6, 1)
        notes["us_per_run"] = round(median_s / runs * 1e6, 1)
        record = RESULTS.get(REPLAY_GROUP, {}).get(RECORD)
        if record is not None and impl != RECORD:
            ratio = (median_s / steps) / (record.median_s / record.count)
            notes["time_vs_record"] = round(ratio, 2)
            notes[f"within_{TARGET_REPLAY_TIME}x_of_record"] = ratio <= TARGET_REPLAY_TIME
    report(benchmark, impl, steps, unit="steps", notes=notes)


# --------------------------------------------------------------------- verify


def _children_cpu() -> float:
    """CPU seconds of this process's children that ended (the verify workers, once their
    pool is shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _verify(store: Store, project: Path, jobs: int,
            parent_cpu: list[float] | None = None,
            workers_cpu: list[float] | None = None) -> list[dict[str, Any]]:
    """Select and verify every run; this process's CPU seconds (the parent's share: the
    selection, the seed pass and the results) appended to ``parent_cpu``, the workers'
    (their start-up included) to ``workers_cpu``."""
    cpu, children = time.process_time(), _children_cpu()
    run_ids = select_runs(store, Selection())
    results = list(run_verification(store, run_ids, code="workdir", guards="warn", jobs=jobs,
                                    project_root=project))
    if parent_cpu is not None:
        parent_cpu.append(time.process_time() - cpu)
    if workers_cpu is not None:
        workers_cpu.append(_children_cpu() - children)
    return results


def _check_verified(results: list[dict[str, Any]], corpus: Corpus) -> None:
    bad = [r for r in results if r["verdict"] != "reproduced"]
    if bad:
        pytest.fail(f"{len(bad)} of {len(results)} runs did not reproduce; the first:\n"
                    f"{bad[0].get('explanation') or bad[0]}")
    assert sorted(r["run"] for r in results) == sorted(corpus.run_ids)


def _fixed_cost_probe(store: Store, project: Path, corpus: Corpus, jobs: int) -> float:
    """Seconds to verify ``jobs`` runs on ``jobs`` workers (median of 3), not timed.

    One run per worker: the pool's start-up and each worker's first replay,
    the fixed cost of a verification.
    """
    few = list(corpus.run_ids[:jobs])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        results = list(run_verification(store, few, code="workdir", guards="warn", jobs=jobs,
                                         project_root=project))
        times.append(time.perf_counter() - start)
        assert [r["verdict"] for r in results] == ["reproduced"] * jobs
    return median(times)


def _corpus_of(corpora: Callable[[str, int], Corpus], runs: int) -> Corpus:
    """The verify corpus (``VERIFY_RUNS``) or the large one (``LARGE_RUNS``)."""
    return corpora("verify", runs) if runs == VERIFY_RUNS else corpora("large", runs)


@pytest.mark.parametrize("runs", [VERIFY_RUNS, LARGE_RUNS])
@pytest.mark.parametrize("impl", list(VERIFY_JOBS))
def test_verify(benchmark: BenchmarkFixture, corpora: Callable[[str, int], Corpus],
                impl: str, runs: int) -> None:
    """Runs/s of run_verification with 1 and 2 workers (spawned; their start-up is timed)."""
    group = benchmark.group = _verify_group(runs)
    jobs = VERIFY_JOBS[impl]
    corpus = _corpus_of(corpora, runs)
    parent_cpu: list[float] = []
    workers_cpu: list[float] = []
    with pinrun.open_store(corpus.store_path) as store:  # as the workers open it
        results = benchmark.pedantic(_verify, args=(store, corpus.project, jobs, parent_cpu,
                                                    workers_cpu),
                                     rounds=ROUNDS if runs == VERIFY_RUNS else LARGE_ROUNDS)
        _check_verified(results, corpus)
        fixed = _fixed_cost_probe(store, corpus.project, corpus, jobs)
    # The parent's CPU runs beside the workers' on a machine of few cores: with two
    # workers on two cores, every parent millisecond is one a worker waits for.
    notes: dict[str, Any] = {"jobs": jobs, "fixed_s": round(fixed, 3),
                             "parent_cpu_s": round(median(parent_cpu), 3),
                             "workers_cpu_s": round(median(workers_cpu), 3)}
    median_s = _median_s(benchmark)
    if median_s is not None:
        notes["ms_per_run"] = round(median_s / runs * 1e3, 3)
        # After the fixed cost: the rate of the runs beyond the first per worker.
        notes["ms_per_run_after_fixed"] = round(
            max(median_s - fixed, 0.0) / (runs - jobs) * 1e3, 3)
        single = RESULTS.get(group, {}).get("verify-j1")
        if single is not None and jobs > 1:
            speedup = single.median_s / median_s
            notes["speedup"] = round(speedup, 2)
            notes[f"speedup_at_least_{TARGET_SPEEDUP}"] = speedup >= TARGET_SPEEDUP
            notes["speedup_after_fixed"] = round(
                float(single.notes["ms_per_run_after_fixed"]) /
                max(notes["ms_per_run_after_fixed"], 1e-9), 2)
    report(benchmark, impl, runs, unit="runs", notes=notes)


# --------------------------------------------------------- the CLI, and memory

#: Runs a command, then prints the largest peak RSS of its children (the
#: command and what it waited for), in KiB. A fresh, small interpreter: a
#: child's ru_maxrss starts from the RSS of the process that forked it (Linux
#: carries the pre-exec high-water mark over), so reading it from the
#: benchmark process itself would report this process's RSS instead.
_RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
sys.stdout.flush()
print(f"\\npinrun-bench-peak-rss-kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
sys.exit(code)
"""
_RSS_MARK = "pinrun-bench-peak-rss-kib"

#: Verifies a corpus as ``pinrun verify -j 1`` does, but keeps no result (a
#: streaming consumer). Prints, in KiB, its own memory at the end (the store
#: still open) and its peak (/proc/self/status), and for its child processes
#: (the workers) the largest peak RSS, anonymous memory and file pages seen,
#: polled from /proc/PID/status every 50 ms while they live.
_STREAM_PROBE = """
import json, os, sys, threading
from pathlib import Path
import pinrun
from pinrun.verifier.verify import Selection, run_verification, select_runs

me, stop = str(os.getpid()), threading.Event()
children = {key: {} for key in ("VmHWM", "RssAnon", "RssFile")}

def status(pid):
    with open(f"/proc/{pid}/status") as file:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in file)}

def poll():
    while not stop.wait(0.05):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as file:
                    if file.read().rpartition(")")[2].split()[1] != me:
                        continue
                fields = status(pid)
                for key, peaks in children.items():
                    peaks[pid] = max(peaks.get(pid, 0), int(fields[key].split()[0]))
            except (OSError, KeyError, IndexError, ValueError):
                continue

threading.Thread(target=poll, daemon=True).start()
store_path, project = sys.argv[1], Path(sys.argv[2])
reproduced = 0
with pinrun.open_store(store_path) as store:
    ids = select_runs(store, Selection())
    for result in run_verification(store, ids, code="workdir", guards="warn", jobs=1,
                                   project_root=project):
        reproduced += result["verdict"] == "reproduced"
    own = status("self")  # with the store still mapped
stop.set()
print(json.dumps({"runs": len(ids), "reproduced": reproduced,
                  **{f"worker_{key}": max(peaks.values(), default=0)
                     for key, peaks in children.items()},
                  **{key: int(own[key].split()[0]) for key in ("VmHWM", "RssAnon", "RssFile")}}))
"""


def _verify_command(corpus: Corpus, jobs: int, sample: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "pinrun", "verify", "--store", str(corpus.store_path),
               "--code", "workdir", "--guards", "warn", "-j", str(jobs)]
    return command + (["--sample", str(sample)] if sample is not None else [])


def _run(command: list[str], cwd: Path) -> tuple[int, str]:
    env = {key: value for key, value in os.environ.items() if key != "PINRUN_STORE"}
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)
    return done.returncode, done.stdout.decode(errors="replace")


def _check_cli(code: int, output: str, runs: int) -> None:
    summary = f"verified {runs} run{'s' if runs != 1 else ''}: {runs} reproduced, 0 diverged"
    if code != 0 or summary not in output:
        pytest.fail(f"pinrun verify exited {code}; expected {summary!r}:\n{output[-3000:]}")


def _cli_verify(corpus: Corpus, jobs: int) -> None:
    """``python -m pinrun verify`` of the whole corpus in a subprocess; checks the verdict."""
    _check_cli(*_run(_verify_command(corpus, jobs), corpus.project), len(corpus.run_ids))


def _peak_rss_mib(command: list[str], cwd: Path, runs: int | None) -> float:
    """Run ``command`` under the RSS wrapper; its peak RSS in MiB (verdict checked if ``runs``)."""
    code, output = _run([sys.executable, "-c", _RSS_WRAPPER, *command], cwd)
    if runs is not None:
        _check_cli(code, output, runs)
    mark = output.rpartition(f"{_RSS_MARK}=")[2].split()
    if code != 0 or not mark:
        pytest.fail(f"{command} exited {code}:\n{output[-3000:]}")
    return int(mark[0]) / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("impl", list(CLI_JOBS))
def test_verify_cli(benchmark: BenchmarkFixture, corpora: Callable[[str, int], Corpus],
                    impl: str) -> None:
    """Runs/s of ``python -m pinrun verify -j 1`` and ``-j 2`` (interpreter start-up included)."""
    benchmark.group = CLI_GROUP
    jobs = CLI_JOBS[impl]
    corpus = corpora("verify", VERIFY_RUNS)
    benchmark.pedantic(_cli_verify, args=(corpus, jobs), rounds=ROUNDS)
    notes: dict[str, Any] = {"jobs": jobs}
    median_s = _median_s(benchmark)
    single = RESULTS.get(CLI_GROUP, {}).get("cli-verify-j1")
    if median_s is not None and single is not None and jobs > 1:
        notes["speedup"] = round(single.median_s / median_s, 2)
        notes[f"speedup_at_least_{TARGET_SPEEDUP}"] = single.median_s / median_s >= \
            TARGET_SPEEDUP
    report(benchmark, impl, VERIFY_RUNS, unit="runs", notes=notes)


def _stream_probe(corpus: Corpus) -> dict[str, float]:
    """Memory of a fresh process that verifies the corpus and keeps no result (MiB)."""
    code, output = _run([sys.executable, "-c", _STREAM_PROBE, str(corpus.store_path),
                         str(corpus.project)], corpus.project)
    if code != 0:
        pytest.fail(f"the streaming probe exited {code}:\n{output[-3000:]}")
    figures = json.loads(output.strip().splitlines()[-1])
    assert figures["runs"] == figures["reproduced"] == len(corpus.run_ids), figures
    return {key: round(figures[key] / 1024, 1)
            for key in ("VmHWM", "RssAnon", "RssFile", "worker_VmHWM", "worker_RssAnon",
                        "worker_RssFile")}


@pytest.mark.parametrize("impl", list(MEMORY))
def test_verify_memory(benchmark: BenchmarkFixture, corpora: Callable[[str, int], Corpus],
                       impl: str) -> None:
    """Peak RSS of ``pinrun verify -j 1`` at two corpus sizes, each in a fresh subprocess."""
    if not Path("/proc/self/status").exists():
        pytest.skip("the memory figures read Linux's ru_maxrss (KiB) and /proc/self/status")
    benchmark.group = MEMORY_GROUP
    size = MEMORY[impl]
    corpus = _corpus_of(corpora, size)
    peaks: list[float] = []

    def one() -> None:
        peaks.append(_peak_rss_mib(_verify_command(corpus, 1), corpus.project, size))

    benchmark.pedantic(one, rounds=ROUNDS if size == VERIFY_RUNS else LARGE_ROUNDS)
    # Not timed: the floor (one run verified; the interpreter and pinrun, every
    # run's ref read), and a consumer that keeps no result.
    floor = _peak_rss_mib(_verify_command(corpus, 1, sample=1), corpus.project, 1)
    stream = _stream_probe(corpus)
    store_mib = sum(f.stat().st_size for f in corpus.store_path.iterdir()) / 2**20
    notes: dict[str, Any] = {
        "runs_in_store": size,
        "store_mib": round(store_mib, 1),
        "peak_rss_mib": round(max(peaks), 1),
        "peak_rss_mib_rounds": [round(peak, 1) for peak in peaks],
        "peak_rss_mib_sample_1": round(floor, 1),
        "kib_per_run_over_sample_1": round((max(peaks) - floor) * 1024 / size, 2),
        "streaming_peak_rss_mib": stream["VmHWM"],
        "streaming_end_rss_anon_mib": stream["RssAnon"],
        "streaming_end_rss_file_mib": stream["RssFile"],
        "streaming_worker_peak_rss_mib": stream["worker_VmHWM"],
        "streaming_worker_max_rss_anon_mib": stream["worker_RssAnon"],
        "streaming_worker_max_rss_file_mib": stream["worker_RssFile"],
    }
    small = RESULTS.get(MEMORY_GROUP, {}).get(f"cli-verify-{VERIFY_RUNS}")
    if small is not None and size != VERIFY_RUNS:
        for key in ("peak_rss_mib", "streaming_peak_rss_mib", "streaming_end_rss_anon_mib",
                    "streaming_worker_peak_rss_mib"):
            notes[f"{key}_vs_small"] = round(notes[key] / float(small.notes[key]), 2)
    report(benchmark, impl, size, unit="runs", notes=notes)


# ------------------------------------------------------- worker CPU per replay

#: In a fresh interpreter (a verify worker refuses the network and processes for
#: good): replays the corpus's runs ``rounds`` times, either as pinrun's verify
#: worker does (``worker.start`` then ``worker.replay_chunk``, guards=warn) or with
#: the minimal replayer of ``replay_corpus``; prints the CPU seconds of each round.
_CPU_PROBE = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[5])
store_path, project, code, rounds = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sys.path.insert(0, str(project))
import pinrun
from benchmarks import replay_corpus
from pinrun.verifier import worker
from pinrun.verifier.verify import Selection, select_runs
with pinrun.open_store(store_path) as store:
    ids = select_runs(store, Selection())
if code == "minimal":
    replayer = replay_corpus.MinimalReplayer(store_path)
    replay = lambda chunk: [replayer.replay(run_id) for run_id in chunk]
    check = lambda out: all(out)
else:
    worker.start(store_path, worker.ReplayOptions.build(code=code, guards="warn",
                                                        project_root=project))
    replay = lambda chunk: worker.chunk_results(worker.replay_chunk(chunk), chunk)
    check = lambda out: all(r.verdict == "reproduced" for r in out)
assert check(replay(ids[:5]))  # warm-up: imports, the first replay's caches
seconds = []
for _ in range(rounds):
    start = time.process_time()
    out = replay(ids)
    seconds.append(time.process_time() - start)
    assert check(out) and len(out) == len(ids)
print(json.dumps({"runs": len(ids), "cpu_s": seconds}))
"""


@pytest.mark.parametrize("impl", list(WORKER_CPU))
def test_worker_cpu(benchmark: BenchmarkFixture, corpora: Callable[[str, int], Corpus],
                    impl: str) -> None:
    """Process CPU time per replay: pinrun's verify worker against a minimal replayer."""
    benchmark.group = CPU_GROUP
    corpus = corpora("verify", VERIFY_RUNS)
    code = WORKER_CPU[impl] or "minimal"
    figures: list[dict[str, Any]] = []
    repository = str(Path(__file__).resolve().parent.parent)

    def one() -> None:
        done, output = _run([sys.executable, "-c", _CPU_PROBE, str(corpus.store_path),
                             str(corpus.project), code, "2", repository], corpus.project)
        if done != 0:
            pytest.fail(f"the CPU probe exited {done}:\n{output[-3000:]}")
        figures.append(json.loads(output.strip().splitlines()[-1]))

    benchmark.pedantic(one, rounds=ROUNDS)
    cpu = median(seconds for figure in figures for seconds in figure["cpu_s"])
    notes: dict[str, Any] = {"cpu_us_per_replay": round(cpu / VERIFY_RUNS * 1e6, 1),
                             "cpu_rounds": len(figures) * 2}
    minimal = RESULTS.get(CPU_GROUP, {}).get("minimal-replayer")
    if minimal is not None and impl != "minimal-replayer":
        ratio = notes["cpu_us_per_replay"] / float(minimal.notes["cpu_us_per_replay"])
        notes["cpu_vs_minimal"] = round(ratio, 2)
        notes[f"within_{TARGET_WORKER_CPU}x_of_minimal"] = ratio <= TARGET_WORKER_CPU
    report(benchmark, impl, VERIFY_RUNS, unit="runs", notes=notes)


# -------------------------------------------------------------- pinned import


def _forget(modules: tuple[str, ...]) -> None:
    for name in modules:
        sys.modules.pop(name, None)


def _disk_import() -> pinrun.Flow:
    _forget(replay_corpus.IMPORT_MODULES)
    importlib.invalidate_caches()
    flow = importlib.import_module(replay_corpus.IMPORT_ENTRY_MODULE).FLOW
    assert isinstance(flow, pinrun.Flow)
    return flow


def _pinned_import(project: ImportProject) -> pinrun.Flow:
    run = project.run
    assert run.flow_pin is not None
    assert run.entry is not None
    with pinned_modules(pinned_sources(project.store, run.flow_pin), project.folder):
        return import_entry(run.entry)


def _bytecode(folder: Path) -> list[Path]:
    return sorted((folder / "__pycache__").glob("pinrun_bench_imp_*.pyc"))


def _no_setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (), {}


def _import_plan(impl: str, project: ImportProject) -> tuple[
        Callable[[], pinrun.Flow], Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
        Callable[[], None]]:
    """(the timed import, the untimed setup before each round, the clean-up after all)."""
    folder = project.folder
    if impl.startswith("pinrun-pinned-import"):
        clear: Callable[[], None] | None = None
        if impl.endswith("-cold"):
            from pinrun.flows import loader

            # The per-process cache of compiled pinned sources (since bc11139).
            clear = getattr(getattr(loader, "_compiled", None), "cache_clear", None)

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            if clear is not None:
                clear()
            return (), {}

        return (lambda: _pinned_import(project)), setup, lambda: None
    if impl == "disk-import":
        import compileall

        assert compileall.compile_dir(folder, quiet=1, maxlevels=0)
        assert len(_bytecode(folder)) == len(replay_corpus.IMPORT_MODULES)
        return _disk_import, _no_setup, lambda: None
    saved = sys.dont_write_bytecode

    def without_bytecode() -> tuple[tuple[Any, ...], dict[str, Any]]:
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        sys.dont_write_bytecode = True
        return (), {}

    def restore() -> None:
        sys.dont_write_bytecode = saved

    return _disk_import, without_bytecode, restore


@pytest.mark.parametrize("impl", IMPORTS)
def test_pinned_import(benchmark: BenchmarkFixture, import_project: ImportProject,
                       impl: str) -> None:
    """Loading a run's pinned sources from the store against importing them from disk."""
    benchmark.group = IMPORT_GROUP
    load, setup, clean_up = _import_plan(impl, import_project)
    flows: list[pinrun.Flow] = []

    def target() -> None:
        flows.append(load())

    load()  # warm-up, not timed (and with the bytecode written, for disk-import)
    try:
        benchmark.pedantic(target, setup=setup, rounds=IMPORT_ROUNDS)
    finally:
        clean_up()
    bytecode = _bytecode(import_project.folder)
    if impl == "disk-import":
        assert len(bytecode) == len(replay_corpus.IMPORT_MODULES)
    elif impl == "disk-import-source":
        assert not bytecode
    assert len(flows) == IMPORT_ROUNDS
    assert all(flow.name == "imports" and len(flow.steps) == STEPS_PER_RUN for flow in flows)
    notes: dict[str, Any] = {"modules": len(import_project.lines),
                             "lines": sum(import_project.lines.values())}
    if impl.startswith("pinrun-pinned-import"):
        # The pinned import gave fresh modules, and put the disk ones back after.
        disk = sys.modules.get(replay_corpus.IMPORT_ENTRY_MODULE)
        assert disk is None or all(flow is not getattr(disk, "FLOW", None) for flow in flows)
    median_s = _median_s(benchmark)
    if median_s is not None:
        notes["ms_per_import"] = round(median_s * 1e3, 3)
        if impl.startswith("pinrun-pinned-import"):
            for name in IMPORTS[:2]:
                other = RESULTS.get(IMPORT_GROUP, {}).get(name)
                if other is not None:
                    notes[f"time_vs_{name}"] = round(median_s / other.median_s, 2)
    report(benchmark, impl, 1, unit="imports", notes=notes)
