"""Recording an effects-heavy flow: ``ctx.effect`` calls against direct calls.

The flow (``effect_flow.EFFECT_FLOW``) has five steps, each making ``calls``
effect calls with small arguments (a short string and an int). One group,
``recording-effects``, ``RUNS`` runs per round, ``durability="none"`` into a
store opened ``durable=False`` (no fsync: what is timed is pinrun's own work):

* ``direct``: the same functions in a loop, with a stand-in ``ctx`` whose
  ``effect`` calls the function (10 calls per step);
* ``pinrun-effects-0``: ``pinrun.record`` of the flow with ``calls=0`` (the
  same five steps, no effect made);
* ``pinrun-effects-10``: the same with ``calls=10``, 50 effects per run.

Notes: us per step of each, the overhead per step over ``direct``, and the
cost of one recorded effect, ``(effects-10 - effects-0) / effects``: what an
effect adds to a step (its argument digest, its arguments kept as values,
its answer encoded and stored, the step's event log growing).

Rounds as in ``test_bench_recording.py``: a new store and one untimed
warm-up run per round; the last run's final state is checked.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pinrun
from benchmarks import effect_flow
from benchmarks._harness import RESULTS, BenchmarkFixture, report
from benchmarks.conftest import scaled

RUNS = scaled(1000)
ROUNDS = 3
STEPS = 5
CALLS = 10
REPO_ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ["direct", "pinrun-effects-0", "pinrun-effects-10"]
GROUP = f"recording-effects ({RUNS} runs x {STEPS} steps x {CALLS} effects)"


def _run_all(run_one: Callable[[dict[str, Any]], Any], batch: list[dict[str, Any]],
             last: list[Any]) -> int:
    result = None
    for inputs in batch:
        result = run_one(inputs)
    last[:] = [result]
    return len(batch)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_recording_effects(benchmark: BenchmarkFixture, fresh_dir: Callable[[], Path],
                           impl: str) -> None:
    """Steps/s of the effects flow recorded by pinrun (0 and 10 effects a step) vs direct."""
    benchmark.group = GROUP
    calls = 0 if impl == "pinrun-effects-0" else CALLS
    batch = effect_flow.make_inputs(RUNS, calls)
    expected = effect_flow.direct_runner()(batch[-1])
    last: list[Any] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        folder = fresh_dir()
        if impl == "direct":
            run_one = effect_flow.direct_runner()
        else:
            store = pinrun.open_store(folder / ".pinrun", create=True, durable=False)

            def run_one(inputs: dict[str, Any]) -> Any:
                return pinrun.record(effect_flow.EFFECT_FLOW, inputs, store=store,
                                     durability="none", project_root=REPO_ROOT)

            stores.append((store, folder))
        run_one({"order_id": "W000000", "calls": calls})
        return (run_one, batch, last), {}

    stores: list[tuple[Any, Path]] = []

    def teardown(run_one: Any, batch: list[dict[str, Any]], last: list[Any]) -> None:
        try:
            if impl == "direct":
                assert last[0] == expected
            else:
                store = stores[-1][0]
                run = last[0]
                assert run.status == "succeeded"
                assert len(run.steps) == STEPS
                assert store.get_snapshot(run.state) == expected
        finally:
            for store, folder in stores:
                store.close()
                shutil.rmtree(folder, ignore_errors=True)
            stores.clear()

    done = benchmark.pedantic(_run_all, setup=setup, teardown=teardown, rounds=ROUNDS)
    assert done == RUNS
    metadata = benchmark.stats
    steps = RUNS * STEPS
    notes: dict[str, Any] = {}
    if metadata:
        median = float(metadata.stats.median)
        notes["us_per_step"] = round(median / steps * 1e6, 2)
        peers = RESULTS.get(GROUP, {})
        direct = peers.get("direct")
        if direct is not None and impl != "direct":
            notes["overhead_us_per_step"] = round((median - direct.median_s) / steps * 1e6, 2)
        plain = peers.get("pinrun-effects-0")
        if impl == "pinrun-effects-10" and plain is not None:
            notes["us_per_effect"] = round(
                (median - plain.median_s) / (RUNS * STEPS * CALLS) * 1e6, 2)
    report(benchmark, impl, steps, unit="steps", notes=notes)
