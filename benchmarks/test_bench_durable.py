"""Durable steps: what ``durability="step"`` costs against the disk's own floor, and
whether a step late in a long run costs what an early one does.

* ``durable-floor``: ``append-fsync`` (the physical floor of a durable step:
  append one step's bytes to a file and ``fdatasync`` it, 1,000 times) next
  to ``pinrun-step`` (1,000 steps of the 5-step order flow recorded with the
  default ``durability="step"`` into the default, synced store). Reported:
  us per step (wall, and CPU time of the process), pinrun's time over the
  floor's, and, from an untimed probe, device flushes, page-write calls and
  KiB written per step (counted with ``strace`` when it is installed:
  ``fdatasync``/``fsync``/``msync``, ``pwrite64``/``writev`` calls). Also
  reported, for both: the median round's system CPU (the kernel's part of
  each flush is charged to the process as system time) and how often the
  process blocked per step (voluntary context switches: a flush on ext4
  blocks two or three times, the device's write, its cache flush and, now
  and then, the inode's block), which is what makes the code after a flush
  run slower than the same code unsynced.
* ``durable-long``: ``steps-in-5-step-runs`` (the baseline: 1,000 durable
  steps as runs of 5) against ``pinrun-steps-in-one-long-run`` (one run of
  ``LONG_STEPS`` steps, 5,000 at full scale, the same step function over and
  over). Target: a step of the long run costs at most 1.3x a step of the
  short runs (linear in the run's length). Also reported: the store file's
  growth per step and the bytes of run records on disk after the run.

Each round opens a new store in a new folder; the flows are built outside
the timed call. Timings are never asserted.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pinrun
from benchmarks import flow_baselines
from benchmarks._harness import BenchmarkFixture, report
from benchmarks.conftest import scaled
from pinrun.artifacts.digest import Kind

ROUNDS = 3
FLOOR_STEPS = scaled(1000)
SHORT_RUNS = scaled(200)
LONG_STEPS = scaled(5000)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Bytes appended per step by the floor: about what a step's commit adds (a link, a tree).
FLOOR_BYTES = 1024


def _long_flow(steps: int) -> pinrun.Flow:
    bump = flow_baselines.FUNCTIONS[2]  # tax(subtotal, region) -> {"tax": ...}
    first = pinrun.step(name="load")(flow_baselines.FUNCTIONS[0])
    price = pinrun.step(name="price")(flow_baselines.FUNCTIONS[1])
    return pinrun.Flow(f"long-{steps}", [first, price, *(
        pinrun.step(name=f"tax_{n:05d}")(bump) for n in range(steps - 2))],
        on_collision="overwrite")


def _append_fsync(folder: Path, steps: int) -> int:
    path = folder / "log"
    record = b"x" * (FLOOR_BYTES - 1) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(steps):
            os.write(fd, record)
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return steps


def _recorder(flow: pinrun.Flow, inputs: list[dict[str, Any]]) -> Callable[[Any], int]:
    return lambda store: _record_runs(store, flow, inputs)


def _record_runs(store: pinrun.Store, flow: pinrun.Flow, inputs: list[dict[str, Any]]) -> int:
    steps = 0
    for item in inputs:
        run = pinrun.record(flow, item, store=store, project_root=REPO_ROOT)
        assert run.status == "succeeded"
        steps += len(run.steps)
    return steps


def _rounds(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
            work: Callable[[Any], int], *, store: bool,
            warm: pinrun.Flow | None = None) -> tuple[int, dict[str, Any]]:
    """``ROUNDS`` timed calls of ``work`` on a new folder (or a new store in it, opened,
    and warmed with one untimed run of ``warm``, outside the timed call)."""
    sizes: list[int] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = fresh_dir()
        if not store:
            return (folder,), {}
        opened = pinrun.open_store(folder / ".pinrun", create=True)
        if warm is not None:  # pins stored, the file started: what a worker has done
            pinrun.record(warm, {"order_id": "W000000"}, store=opened, durability="none",
                          project_root=REPO_ROOT)
        return (opened,), {}

    def teardown(target: Any) -> None:
        if isinstance(target, pinrun.Store):
            target.close()
            folder = target.path.parent
        else:
            folder = target
        data = folder / ".pinrun" / "data.mdb"
        sizes.append(data.stat().st_size if data.exists() else 0)
        shutil.rmtree(folder, ignore_errors=True)

    # Per round: CPU time (user and system), system CPU, voluntary context switches.
    rounds: list[tuple[float, float, int]] = []

    def timed(target: Any) -> int:
        began, usage = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        try:
            return work(target)
        finally:
            ended = resource.getrusage(resource.RUSAGE_SELF)
            rounds.append((time.process_time() - began, ended.ru_stime - usage.ru_stime,
                           ended.ru_nvcsw - usage.ru_nvcsw))

    done = benchmark.pedantic(timed, setup=setup, teardown=teardown, rounds=ROUNDS)
    # CPU time (this process, user and system) of the median round: steadier than wall
    # time on a shared machine, and it holds the kernel's share of each commit's writes.
    # (The system part is sampled at the kernel's clock ticks: a share, not a timing.)
    cpu_s, sys_s, waits = sorted(rounds)[len(rounds) // 2]
    return done, {"store_bytes": sizes[-1], "cpu_s": cpu_s, "sys_s": sys_s, "waits": waits}


def _flushes_per_step(flow: str, runs: int) -> float | None:
    """Device flushes per durable step, counted by strace in a child (None without it)."""
    counted = _syscalls_per_step(flow, runs)
    return None if counted is None else counted["flushes"]


def _syscalls_per_step(flow: str, runs: int) -> dict[str, float] | None:
    """Per durable step, counted by strace in a child: device flushes, page-write calls
    (each a separate write to the device), and KiB written (None without strace)."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    code = (
        "import sys, tempfile, warnings; warnings.simplefilter('ignore');"
        f"sys.path.insert(0, {str(REPO_ROOT)!r});"
        "import pinrun; from benchmarks import flow_baselines;"
        "from benchmarks.test_bench_durable import _long_flow;"
        f"flow = flow_baselines.ORDER_FLOW if {flow!r} == 'short' else _long_flow({runs});"
        "folder = tempfile.mkdtemp();"
        "store = pinrun.open_store(folder + '/.pinrun', create=True);"
        "pinrun.record(flow, {'order_id': 'W0'}, store=store, durability='none');"
        "print('MARK', flush=True);"
        f"n = {runs} if {flow!r} == 'short' else 1;"
        "[pinrun.record(flow, {'order_id': f'P{i}'}, store=store) for i in range(n)];"
        "print('MARK', flush=True); store.close()")
    done = subprocess.run([strace, "-f", "-e", "trace=fdatasync,fsync,msync,write,pwrite64,writev",
                           sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
    lines = done.stderr.splitlines()
    marks = [i for i, line in enumerate(lines) if "MARK" in line]
    between = lines[marks[0] + 1:marks[1]]
    calls = [(line.split("(")[0].split()[-1], line.rpartition("= ")[2]) for line in between]
    flushes = sum(1 for name, _ in calls if name in ("fdatasync", "fsync", "msync"))
    written = [int(result) for name, result in calls
               if name in ("pwrite64", "writev") and result.isdigit()]
    steps = runs * 5 if flow == "short" else runs
    return {"flushes": flushes / steps,
            "page_writes": sum(1 for n in written if n >= 4096) / steps,
            "kib_written": sum(written) / 1024 / steps}


@pytest.mark.parametrize("impl", ["append-fsync", "pinrun-step"])
def test_durable_floor(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
                       impl: str) -> None:
    """A durable step against one append + fdatasync (the floor)."""
    benchmark.group = "durable-floor"
    if impl == "append-fsync":
        done, notes = _rounds(benchmark, fresh_dir, lambda f: _append_fsync(f, FLOOR_STEPS),
                              store=False)
    else:
        inputs = flow_baselines.make_inputs(FLOOR_STEPS // 5)
        done, notes = _rounds(benchmark, fresh_dir, _recorder(flow_baselines.ORDER_FLOW, inputs),
                              store=True, warm=flow_baselines.ORDER_FLOW)
        counted = _syscalls_per_step("short", 20)
        if counted is not None:
            notes.update({f"{name}_per_step": value for name, value in counted.items()})
    notes["us_per_step"] = benchmark.stats.stats.median / done * 1e6
    notes["cpu_us_per_step"] = notes.pop("cpu_s") / done * 1e6
    notes["sys_cpu_us_per_step"] = notes.pop("sys_s") / done * 1e6
    notes["blocked_per_step"] = notes.pop("waits") / done
    report(benchmark, impl, done, unit="steps", notes=notes)


@pytest.mark.parametrize("impl", ["steps-in-5-step-runs", "pinrun-steps-in-one-long-run"])
def test_durable_long(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
                      impl: str) -> None:
    """A step of one 5,000-step run against a step of 5-step runs, both durable."""
    benchmark.group = "durable-long"
    flow = flow_baselines.ORDER_FLOW if impl == "steps-in-5-step-runs" \
        else _long_flow(LONG_STEPS)
    inputs = flow_baselines.make_inputs(SHORT_RUNS) if impl == "steps-in-5-step-runs" \
        else [{"order_id": "L000001"}]
    done, notes = _rounds(benchmark, fresh_dir, _recorder(flow, inputs), store=True, warm=flow)
    notes["us_per_step"] = benchmark.stats.stats.median / done * 1e6
    notes["cpu_us_per_step"] = notes.pop("cpu_s") / done * 1e6
    notes["sys_cpu_us_per_step"] = notes.pop("sys_s") / done * 1e6
    notes["blocked_per_step"] = notes.pop("waits") / done
    notes["store_bytes_per_step"] = notes["store_bytes"] / done
    if impl.startswith("pinrun"):
        notes["run_record_bytes"] = _run_record_bytes(fresh_dir())
        notes["flushes_per_step"] = _flushes_per_step("long", min(LONG_STEPS, 500))
    report(benchmark, impl, done, unit="steps", notes=notes)


def _run_record_bytes(folder: Path) -> int:
    """Bytes of run records left in the store after one long run (links and the whole)."""
    with pinrun.open_store(folder / ".pinrun", create=True) as store:
        pinrun.record(_long_flow(min(LONG_STEPS, 500)), {"order_id": "L1"}, store=store,
                      project_root=REPO_ROOT)
        total = sum(store.info(digest).raw_size for digest in _run_objects(store))
    shutil.rmtree(folder, ignore_errors=True)
    return total


def _run_objects(store: pinrun.Store) -> list[Any]:
    from pinrun.artifacts.digest import Digest

    return [Digest(raw) for raw, _ in store.iter_records()
            if store.info(Digest(raw)).kind is Kind.RUN]
