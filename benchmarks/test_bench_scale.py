"""Every cost linear: listing runs, building and pinning flows, fsck and gc, at two sizes.

Each group measures the same operation at a small and a large size in the same
session; the large one is the target (named ``pinrun-...``) and its figures
are reported against the small one:

* ``runs-limit``: ``python -m pinrun runs --limit 20 --json`` in a subprocess,
  as a user runs it, against a store of ``SMALL_RUNS`` (1,000) and of
  ``LARGE_RUNS`` (100,000) recorded runs of the 5-step order flow. Target: the
  large store within 1.5x of the small one (``time_vs_small``). Wall time on a
  shared machine is noisy, so the target test also alternates the two
  commands (untimed, ``INTERLEAVED`` rounds each) and reports the median CPU
  time of the children (user + system, ``cpu_vs_small_interleaved``).
* ``flow-build``: ``pinrun.step`` on each of ``SMALL_STEPS`` (500) and
  ``LARGE_STEPS`` (5,000) functions of one generated module, then
  ``pinrun.Flow`` of them; ``flow-pin``: pinning those steps as a record does
  (:func:`~pinrun.flows.pinning.pin_steps`, the entry, every pin queued and
  committed to a store), fresh steps each round. Target: per-step cost flat
  (``per_step_vs_small`` <= 1.3).
* ``fsck-gc (fsck)`` and ``fsck-gc (gc)``: ``python -m pinrun fsck --json`` and
  ``gc --json`` on both stores: wall time, CPU time and peak RSS
  (``getrusage`` of a small wrapper's children). No target: reported.

The stores are recorded once per session, for real: ``pinrun.record`` with
``durability="none"`` into stores opened ``durable=False``, by
``BUILD_WORKERS`` processes writing to the same store (LMDB takes one writer
at a time; the recording's Python work runs in parallel). At full scale that
is a few minutes on 2 cores. ``PINRUN_BENCH_SCALE`` scales the run counts and
the step counts.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import pytest

import pinrun
from benchmarks import replay_corpus
from benchmarks._harness import RESULTS, BenchmarkFixture, report
from benchmarks.conftest import scaled
from pinrun.flows.pinning import pin_steps
from pinrun.flows.registry import find_entry, put_pins

SMALL_RUNS = scaled(1_000, minimum=100)
LARGE_RUNS = scaled(100_000, minimum=1_000)
SMALL_STEPS = scaled(500, minimum=50)
LARGE_STEPS = scaled(5_000, minimum=500)
LIMIT = 20
ROUNDS = 5
INTERLEAVED = 7
MAINTENANCE_ROUNDS = 2
BUILD_WORKERS = max(1, min(4, os.cpu_count() or 1))

RUNS_GROUP = "runs-limit (python -m pinrun runs --limit 20 --json)"
BUILD_GROUP = "flow-build (pinrun.step on each function, then pinrun.Flow)"
PIN_GROUP = "flow-pin (pin_steps, entry and put_pins, committed)"
FSCK_GROUP = "fsck-gc (python -m pinrun fsck --json)"
GC_GROUP = "fsck-gc (python -m pinrun gc --json)"

STORES = {f"runs-{SMALL_RUNS}": SMALL_RUNS, f"pinrun-runs-{LARGE_RUNS}": LARGE_RUNS}
FLOWS = {f"steps-{SMALL_STEPS}": SMALL_STEPS, f"pinrun-steps-{LARGE_STEPS}": LARGE_STEPS}


# ------------------------------------------------------------------- the stores

#: Records ``count`` runs of the order flow into an existing store (argv: the
#: project, the store, the count, an order-id prefix of its own).
_RECORDER = """
import importlib, sys, warnings
project, store_path, count, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, project)
import pinrun
flow = importlib.import_module("pinrun_bench_orders").FLOW
with pinrun.open_store(store_path, durable=False) as store:
    for n in range(count):
        run = pinrun.record(flow, {"order_id": f"{prefix}{n:07d}"}, store=store,
                            durability="none", project_root=__import__("pathlib").Path(project))
        assert run.status == "succeeded", run.status
"""


@dataclass(frozen=True)
class RunStore:
    """A store of recorded runs of the order flow, in the order project."""

    project: Path
    path: Path
    runs: int
    build_s: float


def _child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PINRUN_STORE"}
    env["PYTHONHASHSEED"] = "0"  # as pinrun run starts a recording
    return env


def _build_store(project: Path, name: str, runs: int) -> RunStore:
    path = project / "stores" / name
    pinrun.open_store(path, create=True, durable=False).close()
    started = time.perf_counter()
    shares = [runs // BUILD_WORKERS + (index < runs % BUILD_WORKERS)
              for index in range(BUILD_WORKERS)]
    children = [subprocess.Popen([sys.executable, "-c", _RECORDER, str(project), str(path),
                                  str(share), f"W{index}-"], env=_child_env(), cwd=project,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for index, share in enumerate(shares) if share]
    for child in children:
        output = child.communicate()[0]
        if child.returncode != 0:
            pytest.fail(f"recording the benchmark store failed:\n{output.decode()[-3000:]}")
    with pinrun.open_store(path, durable=False) as store:
        assert len(store.refs("runs/")) == runs
    return RunStore(project, path, runs, time.perf_counter() - started)


@pytest.fixture(scope="session")
def run_stores(session_dir: Path) -> Callable[[int], RunStore]:
    """``get(runs)``: a store of that many recorded runs, built once per session."""
    project = replay_corpus.write_order_project(session_dir / "scale-orders")
    cache: dict[int, RunStore] = {}

    def get(runs: int) -> RunStore:
        if runs not in cache:
            cache[runs] = _build_store(project, f"runs-{runs}", runs)
        return cache[runs]

    return get


# ------------------------------------------------------------ commands, timed


@dataclass(frozen=True)
class Ran:
    """One subprocess: its wall and CPU seconds (user + system), and output."""

    wall_s: float
    cpu_s: float
    output: str


def _run(command: list[str], cwd: Path) -> Ran:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=_child_env(), capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        pytest.fail(f"{command} exited {done.returncode}:\n{done.stderr.decode()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Ran(wall, cpu, done.stdout.decode())


def _runs_command(store: RunStore) -> list[str]:
    return [sys.executable, "-m", "pinrun", "runs", "--store", str(store.path),
            "--limit", str(LIMIT), "--json"]


def _list_runs(store: RunStore) -> Ran:
    ran = _run(_runs_command(store), store.project)
    listed = json.loads(ran.output)
    assert len(listed) == LIMIT
    assert all(item["status"] == "succeeded" for item in listed)
    return ran


def _median_s(benchmark: BenchmarkFixture) -> float | None:
    stats = benchmark.stats
    return float(stats.stats.median) if stats else None


@pytest.mark.parametrize("impl", list(STORES))
def test_runs_limit(benchmark: BenchmarkFixture, run_stores: Callable[[int], RunStore],
                    impl: str) -> None:
    """``pinrun runs --limit 20`` against 1k and 100k runs: the large within 1.5x."""
    benchmark.group = RUNS_GROUP
    runs = STORES[impl]
    store = run_stores(runs)
    cpu: list[float] = []

    def once() -> None:
        cpu.append(_list_runs(store).cpu_s)

    benchmark.pedantic(once, rounds=ROUNDS, warmup_rounds=1)
    notes: dict[str, Any] = {"runs_in_store": runs, "cpu_s_median": round(median(cpu), 4),
                             "store_build_s": round(store.build_s, 1)}
    small = RESULTS.get(RUNS_GROUP, {}).get(f"runs-{SMALL_RUNS}")
    median_s = _median_s(benchmark)
    if runs == LARGE_RUNS and small is not None and median_s is not None:
        notes["time_vs_small"] = round(median_s / small.median_s, 3)
        # Untimed: the two sizes alternated, so both see the same load.
        small_store = run_stores(SMALL_RUNS)
        pairs = [(_list_runs(small_store).cpu_s, _list_runs(store).cpu_s)
                 for _ in range(INTERLEAVED)]
        notes["cpu_s_small_interleaved"] = round(median(p[0] for p in pairs), 4)
        notes["cpu_s_large_interleaved"] = round(median(p[1] for p in pairs), 4)
        notes["cpu_vs_small_interleaved"] = round(
            notes["cpu_s_large_interleaved"] / notes["cpu_s_small_interleaved"], 3)
        notes["within_1_5x"] = notes["time_vs_small"] <= 1.5
    report(benchmark, impl, LIMIT, unit="runs", notes=notes)


# ------------------------------------------------------------------ big flows


def _chain_module(steps: int) -> str:
    """``steps`` small step functions, each reading the key the one before wrote."""
    lines = ['"""A chain of steps (generated for the flow-build benchmark)."""', "",
             "from __future__ import annotations", "", "from typing import Any", "",
             "RATE = 2", ""]
    for index in range(steps):
        lines += ["", f"def s{index}(x{index}: int) -> dict[str, Any]:",
                  f'    """Step {index}."""',
                  f"    return {{'x{index + 1}': x{index} * RATE + {index}}}", ""]
    lines += ["", f"FUNCTIONS = [globals()[f's{{i}}'] for i in range({steps})]"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ChainProject:
    """A project folder with a module of ``steps`` step functions, imported."""

    folder: Path
    functions: tuple[Callable[..., Any], ...]


@pytest.fixture(scope="session")
def chain_projects(session_dir: Path) -> Iterator[Callable[[int], ChainProject]]:
    """``get(steps)``: the project of a chain of that many functions, imported once."""
    import importlib

    made: dict[int, ChainProject] = {}
    modules: list[str] = []

    def get(steps: int) -> ChainProject:
        if steps not in made:
            folder = session_dir / f"chain-{steps}"
            folder.mkdir()
            module = f"pinrun_bench_chain{steps}"
            (folder / f"{module}.py").write_text(_chain_module(steps))
            sys.path.insert(0, str(folder))
            modules.append(module)
            functions = tuple(importlib.import_module(module).FUNCTIONS)
            made[steps] = ChainProject(folder, functions)
        return made[steps]

    yield get
    for project in made.values():
        if str(project.folder) in sys.path:
            sys.path.remove(str(project.folder))
    for module in modules:
        sys.modules.pop(module, None)


def _build_flow(project: ChainProject) -> pinrun.Flow:
    return pinrun.Flow("chain", [pinrun.step(func) for func in project.functions])


def _per_step_notes(benchmark: BenchmarkFixture, group: str, steps: int,
                    cpu: list[float]) -> dict[str, Any]:
    notes: dict[str, Any] = {"steps": steps,
                             "cpu_us_per_step": round(median(cpu) / steps * 1e6, 2)}
    median_s = _median_s(benchmark)
    if median_s is not None:
        notes["us_per_step"] = round(median_s / steps * 1e6, 2)
    small = RESULTS.get(group, {}).get(f"steps-{SMALL_STEPS}")
    if steps == LARGE_STEPS and small is not None and "us_per_step" in notes:
        notes["per_step_vs_small"] = round(notes["us_per_step"] / small.notes["us_per_step"], 3)
        notes["cpu_per_step_vs_small"] = round(
            notes["cpu_us_per_step"] / small.notes["cpu_us_per_step"], 3)
        notes["flat_within_1_3x"] = notes["per_step_vs_small"] <= 1.3
    return notes


@pytest.mark.parametrize("impl", list(FLOWS))
def test_flow_build(benchmark: BenchmarkFixture,
                    chain_projects: Callable[[int], ChainProject], impl: str) -> None:
    """Steps and a Flow of 500 and of 5,000 functions: the cost per step flat."""
    benchmark.group = BUILD_GROUP
    steps = FLOWS[impl]
    project = chain_projects(steps)
    cpu: list[float] = []

    def once() -> None:
        started = time.process_time()
        flow = _build_flow(project)
        cpu.append(time.process_time() - started)
        assert len(flow.levels) == steps

    benchmark.pedantic(once, rounds=ROUNDS, warmup_rounds=1)
    report(benchmark, impl, steps, unit="steps",
           notes=_per_step_notes(benchmark, BUILD_GROUP, steps, cpu))


@pytest.mark.parametrize("impl", list(FLOWS))
def test_flow_pin(benchmark: BenchmarkFixture, chain_projects: Callable[[int], ChainProject],
                  tmp_path: Path, impl: str) -> None:
    """Pinning a flow of 500 and of 5,000 steps as a record does: the cost per step flat."""
    benchmark.group = PIN_GROUP
    steps = FLOWS[impl]
    project = chain_projects(steps)
    cpu: list[float] = []
    store = pinrun.open_store(tmp_path / ".pinrun", create=True, durable=False)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (_build_flow(project),), {}  # fresh steps: nothing pinned yet

    def once(flow: pinrun.Flow) -> None:
        started = time.process_time()
        pins = pin_steps(flow.steps, project.folder)
        entry = find_entry(flow, project.folder)
        with store.batch() as batch:
            put_pins(batch, flow, pins, entry, project.folder)
        cpu.append(time.process_time() - started)

    try:
        benchmark.pedantic(once, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    finally:
        store.close()
    report(benchmark, impl, steps, unit="steps",
           notes=_per_step_notes(benchmark, PIN_GROUP, steps, cpu))


# ------------------------------------------------------------------ fsck and gc

#: Runs a command, then prints its peak RSS (the largest of the children), in KiB.
#: A fresh, small interpreter: a child's ru_maxrss starts from the RSS of the
#: process that forked it, so reading it from the benchmark process would not do.
_RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(f"pinrun-bench-peak-rss-kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
sys.exit(code)
"""


def _maintenance(store: RunStore, command: str) -> tuple[Ran, float]:
    """``python -m pinrun COMMAND --json`` on the store: its run and peak RSS (MiB)."""
    ran = _run([sys.executable, "-c", _RSS_WRAPPER, sys.executable, "-m", "pinrun", command,
                "--store", str(store.path), "--json"], store.project)
    peak = int(ran.output.rpartition("pinrun-bench-peak-rss-kib=")[2].split()[0])
    return ran, peak / 1024


@pytest.mark.parametrize("command", ["fsck", "gc"])
@pytest.mark.parametrize("impl", list(STORES))
def test_fsck_gc(benchmark: BenchmarkFixture, run_stores: Callable[[int], RunStore],
                 command: str, impl: str) -> None:
    """``pinrun fsck`` and ``pinrun gc`` at 1k and 100k runs: time, CPU and peak RSS."""
    if not Path("/proc/self/status").exists():
        pytest.skip("peak RSS is read from Linux's ru_maxrss (KiB)")
    group = FSCK_GROUP if command == "fsck" else GC_GROUP
    benchmark.group = group
    runs = STORES[impl]
    store = run_stores(runs)
    figures: list[tuple[float, float]] = []

    def once() -> None:
        ran, peak = _maintenance(store, command)
        figures.append((ran.cpu_s, peak))

    benchmark.pedantic(once, rounds=MAINTENANCE_ROUNDS)
    store_mib = sum(f.stat().st_size for f in store.path.iterdir()) / 2**20
    with pinrun.open_store(store.path, readonly=True) as opened:
        objects = opened.object_count()
    notes: dict[str, Any] = {
        "runs_in_store": runs, "objects": objects, "store_mib": round(store_mib, 1),
        "cpu_s_median": round(median(cpu for cpu, _ in figures), 3),
        "peak_rss_mib": round(max(peak for _, peak in figures), 1),
    }
    small = RESULTS.get(group, {}).get(f"runs-{SMALL_RUNS}")
    median_s = _median_s(benchmark)
    if runs == LARGE_RUNS and small is not None and median_s is not None:
        scale = LARGE_RUNS / SMALL_RUNS
        notes["time_vs_small"] = round(median_s / small.median_s, 2)
        notes["cpu_vs_small"] = round(notes["cpu_s_median"] / small.notes["cpu_s_median"], 2)
        notes["peak_rss_vs_small"] = round(notes["peak_rss_mib"] / small.notes["peak_rss_mib"],
                                           2)
        # Per run over per run: 1.0 is linear (start-up makes the small one dearer).
        notes["cpu_per_run_vs_small"] = round(notes["cpu_vs_small"] / scale, 3)
    report(benchmark, impl, runs, unit="runs", notes=notes)

