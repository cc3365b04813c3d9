"""Large values: a 100 MiB ``bytes`` value and a state of 100,000 keys.

* ``bytes-100mib``: ``put_blob`` (the store's own write of the same 100 MiB,
  handed over ready, one synced commit) is the baseline; ``step-body`` is the
  step's own making of the bytes (BLAKE3's output stream), for reference.
  ``pinrun-record-step`` and ``pinrun-record-none`` record a flow whose first
  step returns the bytes and whose second reads them (durability ``"step"``
  and ``"none"``). Target: >= 0.25x put_blob's throughput
  (``ratio_vs_put_blob``; ``ratio_vs_put_blob_less_step`` leaves the step's
  own time out). Peak RSS is measured in a fresh subprocess doing only that
  (``peak_rss_mib``, ``peak_rss_vs_value``; target <= 3x the value).
* ``wide-state``: ``encode-once`` (``codec.encode`` of the 100k-key map) is
  the baseline; ``pinrun-wide-top`` records a flow writing 100k top-level
  keys and a step reading them all, ``pinrun-wide-nested`` one writing a key
  holding the 100k-key map and a step reading it (durability ``"step"``).
  Target: ``cost_vs_encode_once`` <= 10, read as CPU:
  ``cpu_cost_vs_encode_interleaved`` times five encodes in each round's
  setup and takes the median of the rounds' ratios (``cpu_cost_vs_encode_once``
  divides by the ``encode-once`` test's CPU instead, measured minutes
  earlier; its ~30 ms moves with the machine). ``step-bodies`` times the two
  steps' own work (making the map, summing it), for reference
  (``cost_less_step_bodies_vs_encode_once`` leaves it out). ``peak_rss_mib``
  is the peak RSS of a fresh process making the same recording (no target).

Each round gets a new store with one small warm-up run (not timed), so
process-wide first-time costs (the environment capture, the pins) are not
counted and nothing the timed run writes is in the store already. CPU time
(``cpu_s``, the median round) is reported beside wall time, since the
machine may be shared.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

import pinrun
from benchmarks import values_flows as vf
from benchmarks._harness import RESULTS, BenchmarkFixture, report
from pinrun.artifacts import codec

REPO_ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
MiB = 1 << 20
BYTES_GROUP = "bytes-100mib"
WIDE_GROUP = "wide-state"

_RSS_CHILD = """
import sys
import pinrun
from benchmarks import values_flows as vf
from pathlib import Path
what, store_path, durability = sys.argv[1:4]
with pinrun.open_store(store_path, create=True) as store:
    if what == "put_blob":
        data = vf.make_bytes()
        with store.batch() as batch:
            batch.put_blob(data)
    elif what in ("wide", "nested"):
        flow = vf.wide_flow if what == "wide" else vf.nested_flow
        run = pinrun.record(flow, {"keys": vf.WIDE_KEYS}, store=store, project_root=Path.cwd())
        assert run.status == "succeeded"
    else:
        run = pinrun.record(vf.bytes_flow, {"size": vf.BYTES_SIZE}, store=store,
                            durability=durability, project_root=Path.cwd())
        assert run.status == "succeeded"
# VmHWM: this process image's own peak (ru_maxrss would start from the RSS of the
# pytest process that forked it).
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def _peak_rss_mib(what: str, folder: Path, durability: str = "step") -> float:
    """Peak RSS of a fresh process doing only ``what`` (put_blob, or a recording: of the
    bytes flow, or of the ``wide`` or ``nested`` one)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run([sys.executable, "-c", _RSS_CHILD, what, str(folder / "rss-store"),
                           durability], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024


def _timed(target: Callable[..., Any], cpu: list[float]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        started = time.process_time()
        try:
            return target(*args)
        finally:
            cpu.append(time.process_time() - started)
    return run


def _encode_cpu(value: Any, times: int = 5) -> float:
    """The median CPU seconds of ``times`` encodes of ``value`` (one is ~30 ms: noisy)."""
    spent = []
    for _ in range(times):
        started = time.process_time()
        codec.encode(value)
        spent.append(time.process_time() - started)
    return statistics.median(spent)


def _store(folder: Path) -> Any:
    return pinrun.open_store(folder / ".pinrun", create=True)


# ------------------------------------------------------------------ bytes


@pytest.fixture(scope="module")
def blob() -> bytes:
    """The 100 MiB handed to put_blob (made once)."""
    return vf.make_bytes()


@pytest.mark.parametrize("impl", ["put_blob", "step-body", "pinrun-record-step",
                                  "pinrun-record-none"])
def test_bytes_100mib(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
                      blob: bytes, impl: str) -> None:
    """One 100 MiB bytes value: stored by put_blob, made by the step, recorded."""
    benchmark.group = BYTES_GROUP
    cpu: list[float] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        store = _store(fresh_dir())
        if impl.startswith("pinrun"):
            pinrun.record(vf.bytes_flow, {"size": 1024}, store=store, project_root=REPO_ROOT)
        return (store,), {}

    def teardown(store: Any) -> None:
        store.close()

    def put(store: Any) -> None:
        with store.batch() as batch:
            batch.put_blob(blob)

    def body(store: Any) -> None:
        vf.make_bytes()

    durability: Literal["step", "none"] = "none" if impl.endswith("none") else "step"

    def record(store: Any) -> None:
        run = pinrun.record(vf.bytes_flow, {"size": vf.BYTES_SIZE}, store=store,
                            durability=durability, project_root=REPO_ROOT)
        assert run.status == "succeeded"
        assert store.get_snapshot(run.state)["length"] == vf.BYTES_SIZE

    target = {"put_blob": put, "step-body": body}.get(impl, record)
    benchmark.pedantic(_timed(target, cpu), setup=setup, teardown=teardown, rounds=ROUNDS)
    notes: dict[str, Any] = {"cpu_s": round(statistics.median(cpu), 4)}
    if impl != "step-body":
        rss = _peak_rss_mib("record" if impl.startswith("pinrun") else "put_blob",
                            fresh_dir(), durability)
        notes["peak_rss_mib"] = round(rss, 1)
        notes["peak_rss_vs_value"] = round(rss * MiB / vf.BYTES_SIZE, 2)
    peers = RESULTS.get(BYTES_GROUP, {})
    if impl.startswith("pinrun") and benchmark.stats:
        median = float(benchmark.stats.stats.median)
        if "put_blob" in peers and "step-body" in peers:
            less_step = median - peers["step-body"].median_s
            notes["ratio_vs_put_blob_less_step"] = round(peers["put_blob"].median_s /
                                                         less_step, 3)
        if "put_blob" in peers:
            put_cpu = peers["put_blob"].notes.get("cpu_s")
            if put_cpu:
                notes["cpu_ratio_vs_put_blob"] = round(put_cpu / notes["cpu_s"], 3)
    report(benchmark, impl, vf.BYTES_SIZE, unit="bytes", notes=notes)


# ------------------------------------------------------------------ wide state


@pytest.mark.parametrize("impl", ["encode-once", "step-bodies", "pinrun-wide-top",
                                  "pinrun-wide-nested"])
def test_wide_state(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
                    impl: str) -> None:
    """100,000 keys: encoded once, recorded as top-level keys, recorded as one nested map."""
    benchmark.group = WIDE_GROUP
    cpu: list[float] = []
    table = vf.make_table()
    flow = vf.wide_flow if impl == "pinrun-wide-top" else vf.nested_flow

    encode_cpu: list[float] = []  # one encode's CPU, measured in each round's setup

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        store = _store(fresh_dir())
        if impl.startswith("pinrun"):
            pinrun.record(flow, {"keys": 10}, store=store, project_root=REPO_ROOT)
            encode_cpu.append(_encode_cpu(table))
        return (store,), {}

    def teardown(store: Any) -> None:
        store.close()

    def encode(store: Any) -> None:
        codec.encode(table)

    def bodies(store: Any) -> None:
        made = vf.make_table()
        sum(value["qty"] for value in made.values())

    def record(store: Any) -> None:
        run = pinrun.record(flow, {"keys": vf.WIDE_KEYS}, store=store, project_root=REPO_ROOT)
        assert store.get_snapshot(run.state)["total"] == sum(i % 7 for i in
                                                             range(vf.WIDE_KEYS))

    target = {"encode-once": encode, "step-bodies": bodies}.get(impl, record)
    benchmark.pedantic(_timed(target, cpu),
                       setup=setup, teardown=teardown, rounds=ROUNDS)
    notes: dict[str, Any] = {"cpu_s": round(statistics.median(cpu), 4)}
    if impl.startswith("pinrun"):
        notes["peak_rss_mib"] = round(_peak_rss_mib(
            "wide" if impl == "pinrun-wide-top" else "nested", fresh_dir()), 1)
    once = RESULTS.get(WIDE_GROUP, {}).get("encode-once")
    if impl.startswith("pinrun") and once is not None and benchmark.stats:
        notes["cost_vs_encode_once"] = round(float(benchmark.stats.stats.median) /
                                             once.median_s, 1)
        once_cpu = once.notes.get("cpu_s")
        if once_cpu:
            notes["cpu_cost_vs_encode_once"] = round(notes["cpu_s"] / once_cpu, 1)
        body = RESULTS.get(WIDE_GROUP, {}).get("step-bodies")
        if body is not None:
            notes["cost_less_step_bodies_vs_encode_once"] = round(
                (float(benchmark.stats.stats.median) - body.median_s) / once.median_s, 1)
    if impl.startswith("pinrun"):
        # The same ratio with the encode measured in each round, just before its
        # recording: a machine that runs slower in one phase of the session moves both.
        notes["cpu_cost_vs_encode_interleaved"] = round(statistics.median(
            spent / encoded for spent, encoded in zip(cpu, encode_cpu, strict=True)), 2)
        notes["encode_cpu_s_interleaved"] = round(statistics.median(encode_cpu), 4)
    report(benchmark, impl, vf.WIDE_KEYS, unit="keys", notes=notes)
