"""Recording overhead: pinrun.record against direct calls, ChainWeaver and DBOS.

Every implementation runs the same five step functions (``flow_baselines``)
on the same inputs, one run per order id, and must end each run with the same
state (checked after each round). The units are steps: a round of the short
flow is ``RUNS`` runs of 5 steps; a round of the long flow is ``LONG_RUNS``
runs of 50 steps (the five repeated), which spreads the per-run costs.

* **Unpersisted groups** (``recording-5-steps`` and ``recording-50-steps``,
  durability ``none``): ``direct`` (a loop calling the functions on a dict),
  ``chainweaver`` (its ``FlowExecutor``, nothing persisted), ``floor`` (the
  least a content-addressed recorder does, written in the benchmark:
  ``flow_baselines.floor_runner``; pinrun's ``overhead_vs_floor`` is its
  overhead over ``direct`` against the floor's), then
  ``pinrun-none`` (``pinrun.record(..., durability="none")`` into the default
  store, ``open_store(path, create=True)``, whose commits are synced) and
  ``pinrun-none-nosync`` (the same into a store opened with
  ``durable=False``: no fsync at all). pinrun's overhead per step is its
  median round time minus ``direct``'s, divided by the steps of the round;
  the target is under 50 us. The second goal is to stay within 2x of
  ChainWeaver's time.
* **Durable groups** (``recording-durable-5-steps`` and
  ``recording-durable-50-steps``): ``dbos-sqlite`` (a DBOS workflow of DBOS
  steps on its SQLite system database), then ``pinrun-step`` (the default
  ``durability="step"``, default store: a synced commit per step) and
  ``pinrun-run`` (one synced commit per run, for reference). Goal: more steps
  per second than DBOS. How many commits each makes per step is counted in
  an untimed probe (pinrun: LMDB's transaction id before and after; DBOS:
  SQLAlchemy ``commit`` events of connections that wrote) and reported.

A round's setup makes a new folder, opens the store (or launches DBOS on a
new database, or builds the ChainWeaver executor) and does one warm-up run,
none of it timed; teardown checks the last run's final state and closes
everything. ChainWeaver and DBOS are optional: without them, their
benchmarks are skipped and pinrun's ratios are computed against what ran.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lmdb
import pytest

import pinrun
from benchmarks import flow_baselines
from benchmarks._harness import RESULTS, BenchmarkFixture, Result, report
from benchmarks.conftest import scaled

#: Runs per round: the 5-step flow unpersisted (10,000 steps at full scale), the
#: 50-step flow unpersisted (also 10,000 steps), and both durably (1,000 steps).
RUNS = scaled(2000)
LONG_RUNS = scaled(200)
DURABLE_RUNS = scaled(200)
DURABLE_LONG_RUNS = scaled(20)
ROUNDS = 3
#: Runs of the (untimed) commit-counting probes.
PROBE_RUNS = 10
TARGET_OVERHEAD_US = 50.0
CHAINWEAVER_TIME_LIMIT = 2.0

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = {1: 5, flow_baselines.LONG_REPEATS: 5 * flow_baselines.LONG_REPEATS}

UNPERSISTED = ["direct", "chainweaver", "floor", "pinrun-none", "pinrun-none-nosync"]
DURABLE = ["dbos-sqlite", "pinrun-step", "pinrun-run"]
Durability = Literal["step", "run", "none"]
#: pinrun variants: (durability, open the store with durable=...).
PINRUN_VARIANTS: dict[str, tuple[Durability, bool]] = {
    "pinrun-none": ("none", True),
    "pinrun-none-nosync": ("none", False),
    "pinrun-step": ("step", True),
    "pinrun-run": ("run", True),
}
#: Optional baselines -> the package they need.
OPTIONAL = {"chainweaver": "chainweaver", "dbos-sqlite": "dbos"}


def _skip_if_missing(impl: str) -> None:
    package = OPTIONAL.get(impl)
    if package is not None and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed: the {impl} baseline needs it "
                    "(pip install -e '.[bench]')")


# ------------------------------------------------------------------- sessions


@dataclass
class Session:
    """One implementation, ready to run the flow: what a round times, then closes."""

    run_one: Callable[[dict[str, Any]], Any]
    #: The final state of a run, from what ``run_one`` returned.
    final_state: Callable[[Any], dict[str, Any]]
    close: Callable[[], None]
    last: Any = None


def _open_session(impl: str, repeats: int, folder: Path) -> Session:
    """Set up ``impl`` in ``folder`` and do one warm-up run (nothing here is timed)."""
    stack = ExitStack()
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    try:
        session = _start(impl, repeats, folder, stack)
        session.run_one({"order_id": "W000000"})
    except BaseException:
        stack.close()
        raise
    return session


def _start(impl: str, repeats: int, folder: Path, stack: ExitStack) -> Session:
    runner: flow_baselines.Runner
    if impl == "direct":
        runner = flow_baselines.direct_runner(repeats)
    elif impl == "chainweaver":
        runner = flow_baselines.chainweaver_runner(repeats)
    elif impl == "dbos-sqlite":
        runner = stack.enter_context(flow_baselines.dbos_runner(folder, repeats))
    elif impl == "floor":
        folder.mkdir(parents=True, exist_ok=True)
        runner = stack.enter_context(flow_baselines.floor_runner(folder, repeats))
    else:
        durability, durable = PINRUN_VARIANTS[impl]
        store = stack.enter_context(
            pinrun.open_store(folder / ".pinrun", create=True, durable=durable))
        flow = flow_baselines.PINRUN_FLOWS[repeats]

        def record(inputs: dict[str, Any]) -> pinrun.RunRecord:
            return pinrun.record(flow, inputs, store=store, durability=durability,
                                 project_root=REPO_ROOT)

        def final_state(run: pinrun.RunRecord) -> dict[str, Any]:
            assert run.status == "succeeded"
            assert len(run.steps) == STEPS[repeats]
            return store.get_snapshot(run.state)

        return Session(record, final_state, stack.close)
    return Session(runner, dict, stack.close)


def _run_all(session: Session, batch: list[dict[str, Any]]) -> int:
    last = None
    for inputs in batch:
        last = session.run_one(inputs)
    session.last = last
    return len(batch)


def _measure(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path], impl: str,
             repeats: int, runs: int) -> None:
    batch = flow_baselines.make_inputs(runs)
    expected = flow_baselines.direct_runner(repeats)(batch[-1])

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (_open_session(impl, repeats, fresh_dir()), batch), {}

    def teardown(session: Session, batch: list[dict[str, Any]]) -> None:
        try:
            assert session.final_state(session.last) == expected
        finally:
            session.close()

    done = benchmark.pedantic(_run_all, setup=setup, teardown=teardown, rounds=ROUNDS)
    assert done == runs


# --------------------------------------------------------------- commit probes


def _lmdb_txnid(store_path: Path) -> int:
    env = lmdb.open(str(store_path), readonly=True, lock=False, subdir=True, max_dbs=16)
    try:
        return int(env.info()["last_txnid"])
    finally:
        env.close()


def _pinrun_commits_per_run(impl: str, repeats: int, folder: Path) -> float:
    """LMDB write transactions per recorded run (counted, not timed)."""
    durability, durable = PINRUN_VARIANTS[impl]
    path = folder / ".pinrun"
    flow = flow_baselines.PINRUN_FLOWS[repeats]
    with pinrun.open_store(path, create=True, durable=durable) as store:
        pinrun.record(flow, {"order_id": "W000000"}, store=store, durability=durability,
                      project_root=REPO_ROOT)
    before = _lmdb_txnid(path)
    with pinrun.open_store(path, durable=durable) as store:
        for inputs in flow_baselines.make_inputs(PROBE_RUNS, prefix="P"):
            pinrun.record(flow, inputs, store=store, durability=durability,
                          project_root=REPO_ROOT)
    commits = (_lmdb_txnid(path) - before) / PROBE_RUNS
    shutil.rmtree(folder, ignore_errors=True)
    return commits


@dataclass
class _WriteCommitCounter:
    """Counts SQLAlchemy commits of connections that ran INSERT, UPDATE or DELETE."""

    commits: int = 0
    dirty: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper() in {"INSERT", "UPDATE", "DELETE"}:
            with self.lock:
                self.dirty.add(id(conn))

    def on_commit(self, conn: Any) -> None:
        with self.lock:
            if id(conn) in self.dirty:
                self.dirty.discard(id(conn))
                self.commits += 1


def _dbos_commits_per_run(repeats: int, folder: Path) -> float:
    """SQLite write transactions per DBOS workflow run (counted, not timed)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counter = _WriteCommitCounter()
    with flow_baselines.dbos_runner(folder, repeats) as workflow:
        workflow({"order_id": "W000000"})
        event.listen(Engine, "before_cursor_execute", counter.on_execute)
        event.listen(Engine, "commit", counter.on_commit)
        try:
            for inputs in flow_baselines.make_inputs(PROBE_RUNS, prefix="P"):
                workflow(inputs)
        finally:
            event.remove(Engine, "before_cursor_execute", counter.on_execute)
            event.remove(Engine, "commit", counter.on_commit)
    shutil.rmtree(folder, ignore_errors=True)
    return counter.commits / PROBE_RUNS


def _commits_per_run(impl: str, repeats: int, folder: Path) -> float | None:
    if impl.startswith("pinrun"):
        return _pinrun_commits_per_run(impl, repeats, folder)
    if impl == "dbos-sqlite":
        return _dbos_commits_per_run(repeats, folder)
    return None


# ----------------------------------------------------------------------- notes


def _unpersisted_notes(group: str, impl: str, median_s: float, steps: int) -> dict[str, Any]:
    notes: dict[str, Any] = {"us_per_step": round(median_s / steps * 1e6, 2)}
    peers = RESULTS.get(group, {})
    direct = peers.get("direct")
    if direct is not None and impl != "direct":
        overhead = (median_s - direct.median_s) / steps * 1e6
        notes["overhead_us_per_step"] = round(overhead, 2)
        notes["times_direct"] = round(median_s / direct.median_s, 1)
        if impl.startswith("pinrun"):
            notes["target_overhead_us"] = TARGET_OVERHEAD_US
            notes["meets_overhead_target"] = overhead < TARGET_OVERHEAD_US
    floor = peers.get("floor")
    if floor is not None and direct is not None and impl.startswith("pinrun"):
        # Overheads over the plain loop: how far pinrun is from the physical floor.
        notes["overhead_vs_floor"] = round(
            (median_s - direct.median_s) / max(floor.median_s - direct.median_s, 1e-9), 2)
    chainweaver = peers.get("chainweaver")
    if chainweaver is not None and impl.startswith("pinrun"):
        ratio = median_s / chainweaver.median_s
        notes["time_vs_chainweaver"] = round(ratio, 2)
        notes["within_2x_of_chainweaver"] = ratio <= CHAINWEAVER_TIME_LIMIT
    return notes


def _marginal_s(short: Result, long: Result) -> tuple[float, float]:
    """(seconds per extra step, fixed seconds per run), from a 5-step and a 50-step result."""
    short_steps, long_steps = STEPS[1], STEPS[flow_baselines.LONG_REPEATS]
    short_run = short.median_s / (short.count / short_steps)
    long_run = long.median_s / (long.count / long_steps)
    marginal = (long_run - short_run) / (long_steps - short_steps)
    return marginal, short_run - short_steps * marginal


def _amortization_notes(short_group: str, long_group: str, impl: str,
                        long: Result) -> dict[str, Any]:
    """Cost per extra step and per run, from the same implementation's two flow lengths."""
    short = RESULTS.get(short_group, {}).get(impl)
    if short is None:
        return {}
    marginal, fixed = _marginal_s(short, long)
    notes = {"marginal_us_per_step": round(marginal * 1e6, 2),
             "fixed_us_per_run": round(fixed * 1e6, 1)}
    direct_short = RESULTS.get(short_group, {}).get("direct")
    direct_long = RESULTS.get(long_group, {}).get("direct")
    if impl != "direct" and direct_short is not None and direct_long is not None:
        direct_marginal, _ = _marginal_s(direct_short, direct_long)
        notes["marginal_overhead_us_per_step"] = round((marginal - direct_marginal) * 1e6, 2)
    return notes


def _add_notes(benchmark: BenchmarkFixture, result: Result, notes: dict[str, Any]) -> None:
    """Notes that need the result itself: into extra_info and the summary."""
    benchmark.extra_info.update(notes)
    result.notes.update(notes)


def _group(kind: str, repeats: int, runs: int) -> str:
    steps = STEPS[repeats]
    return f"recording-{kind}{steps}-steps ({runs} runs x {steps} steps)"


# ----------------------------------------------------------------- benchmarks


def _run_group(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path], impl: str, *,
               kind: str, repeats: int, runs: int,
               notes_for: Callable[[str, float, int], dict[str, Any]]) -> None:
    """Measure one implementation in its group; ``notes_for(group, median, steps)`` adds notes."""
    _skip_if_missing(impl)
    group = benchmark.group = _group(kind, repeats, runs)
    commits = _commits_per_run(impl, repeats, fresh_dir())
    _measure(benchmark, fresh_dir, impl, repeats, runs)
    steps = runs * STEPS[repeats]
    metadata = benchmark.stats
    notes = notes_for(group, float(metadata.stats.median), steps) if metadata else {}
    if commits is not None:
        notes["commits_per_run"] = round(commits, 2)
        notes["commits_per_step"] = round(commits / STEPS[repeats], 3)
    result = report(benchmark, impl, steps, unit="steps", notes=notes)
    if result is not None and repeats > 1:
        first = _group(kind, 1, RUNS if kind == "" else DURABLE_RUNS)
        _add_notes(benchmark, result, _amortization_notes(first, group, impl, result))


def _unpersisted(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path], impl: str,
                 repeats: int, runs: int) -> None:
    _run_group(benchmark, fresh_dir, impl, kind="", repeats=repeats, runs=runs,
               notes_for=lambda group, median_s, steps: _unpersisted_notes(
                   group, impl, median_s, steps))


def _durable(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path], impl: str,
             repeats: int, runs: int) -> None:
    def notes_for(group: str, median_s: float, steps: int) -> dict[str, Any]:
        notes: dict[str, Any] = {"us_per_step": round(median_s / steps * 1e6, 1)}
        dbos = RESULTS.get(group, {}).get("dbos-sqlite")
        if dbos is not None and impl.startswith("pinrun"):
            notes["faster_than_dbos"] = median_s < dbos.median_s
        return notes

    _run_group(benchmark, fresh_dir, impl, kind="durable-", repeats=repeats, runs=runs,
               notes_for=notes_for)


@pytest.mark.parametrize("impl", UNPERSISTED)
def test_recording_5_steps(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
                           impl: str) -> None:
    """Steps/s of the 5-step flow: pinrun durability="none" vs direct calls and ChainWeaver."""
    _unpersisted(benchmark, fresh_dir, impl, 1, RUNS)


@pytest.mark.parametrize("impl", UNPERSISTED)
def test_recording_50_steps(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
                            impl: str) -> None:
    """Steps/s of the 50-step flow (per-run costs spread), same implementations."""
    _unpersisted(benchmark, fresh_dir, impl, flow_baselines.LONG_REPEATS, LONG_RUNS)


@pytest.mark.parametrize("impl", DURABLE)
def test_recording_durable_5_steps(benchmark: BenchmarkFixture,
                                   fresh_dir: Callable[[], Path], impl: str) -> None:
    """Durable steps/s of the 5-step flow: pinrun durability="step" vs DBOS on SQLite."""
    _durable(benchmark, fresh_dir, impl, 1, DURABLE_RUNS)


@pytest.mark.parametrize("impl", DURABLE)
def test_recording_durable_50_steps(benchmark: BenchmarkFixture,
                                    fresh_dir: Callable[[], Path], impl: str) -> None:
    """Durable steps/s of the 50-step flow: pinrun durability="step" vs DBOS on SQLite."""
    _durable(benchmark, fresh_dir, impl, flow_baselines.LONG_REPEATS, DURABLE_LONG_RUNS)
