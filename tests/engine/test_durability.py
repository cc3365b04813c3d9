"""Durability modes, concurrency within a level, and input mutation."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.engine.run import record
from pinrun.errors import InputError, RunFailedError
from pinrun.flows import Flow, step
from tests.engine.test_context import FixedWorld
from tests.helpers import Project, start_child


@step
def load(order_id: str) -> dict[str, Any]:
    """Fetch the order's items."""
    return {"items": [{"sku": "X", "qty": 2, "price": 5.0}]}


@step
def price(items: list[dict[str, Any]], ctx: Any) -> dict[str, Any]:
    """Price the items, at a recorded exchange rate."""
    rate = ctx.effect("fx_rate", lambda currency: 1.1, "EUR")
    return {"total": round(sum(i["qty"] * i["price"] for i in items) * rate, 2),
            "priced_at": ctx.now()}


@step
def report(total: float, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarise."""
    return {"report": f"{total} for {len(items)} item(s)"}


PRICING = Flow("pricing", [load, price, report])


def _run_objects(store: Store) -> int:
    """How many run objects the store holds."""
    return sum(1 for raw, _ in store.iter_records() if store.info(Digest(raw)).kind is Kind.RUN)


@pytest.mark.parametrize("durability", ["run", "none"])
def test_every_durability_records_the_same_run(tmp_path: Path, durability: str) -> None:
    """The record's content does not depend on when it was committed."""
    with Store.open(tmp_path / "a", create=True) as step_store, \
            Store.open(tmp_path / "b", create=True) as other:
        by_step = record(PRICING, {"order_id": "A1"}, store=step_store, world=FixedWorld())
        at_end = record(PRICING, {"order_id": "A1"}, store=other, world=FixedWorld(),
                        durability=durability)  # type: ignore[arg-type]
        assert replace(at_end, timing=None, digest=None) == replace(by_step, timing=None,
                                                                    digest=None)
        assert load_run(other, at_end.id) == at_end
        assert fsck(other).ok
        # "step" stores a record with each step (a link of the chain, the last one
        # whole, saying it succeeded): one durable commit per step. "run" and "none": once.
        assert _run_objects(step_store) == len(PRICING.steps)
        assert _run_objects(other) == 1


def test_a_run_committed_at_the_end_records_its_failure(store: Store) -> None:
    """durability="run": the failure is committed with the run, then raised."""

    @step
    def refuse(total: float) -> dict[str, Any]:
        raise ValueError("no")

    flow = Flow("refusing", [*PRICING.steps[:2], refuse])
    with pytest.raises(RunFailedError) as caught:
        record(flow, {"order_id": "A1"}, store=store, durability="run")
    stored = load_run(store, caught.value.run.id)
    assert stored.status == "failed"
    assert [s.status for s in stored.steps] == ["succeeded", "succeeded", "failed"]


def test_an_interrupted_run_at_the_end_leaves_nothing(store: Store) -> None:
    """durability="run" and a KeyboardInterrupt: no run, no ref, no half a record."""

    @step
    def interrupted(items: list[Any]) -> dict[str, Any]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record(Flow("stopped", [PRICING.steps[0], interrupted]), {"order_id": "A1"},
               store=store, durability="run")
    assert store.refs("runs/") == {}
    assert store.object_count() == 0


def test_an_interrupted_run_by_step_keeps_its_finished_steps(store: Store) -> None:
    """durability="step" and a KeyboardInterrupt: the first step's commit is there."""

    @step
    def interrupted(items: list[Any]) -> dict[str, Any]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record(Flow("stopped", [PRICING.steps[0], interrupted]), {"order_id": "A1"},
               store=store)
    (name,) = store.refs("runs/")
    run = load_run(store, name.split("/", 1)[1])
    assert [s.name for s in run.steps] == ["load"]
    assert run.status == "running"
    assert not (store.path / "leases" / f"{run.id}.lock").exists()


def test_a_non_durable_store_still_gets_step_durability(tmp_path: Path) -> None:
    """A store opened durable=False records all the same (synced by the engine)."""
    with Store.open(tmp_path / "fast", create=True, durable=False) as fast:
        run = record(PRICING, {"order_id": "A1"}, store=fast)
        assert load_run(fast, run.id).status == "succeeded"


def test_an_unknown_durability_is_refused(store: Store) -> None:
    """A typo is an input error, with nothing written."""
    with pytest.raises(InputError, match="durability='always'"):
        record(PRICING, {"order_id": "A1"}, store=store, durability="always")  # type: ignore[arg-type]
    assert store.object_count() == 0


def test_mutating_an_input_is_a_recorded_hazard(store: Store) -> None:
    """The step sees a copy; the change is reported; the recorded inputs are the originals."""

    @step
    def tidy(items: list[str]) -> dict[str, Any]:
        items.sort()
        return {"count": len(items)}

    run = record(Flow("tidy", [tidy]), {"items": ["b", "a"]}, store=store)
    (only,) = run.steps
    assert only.hazards == ("mutated its input 'items' in place (the record keeps the value "
                            "it was given); return a new value instead",)
    assert store.get_snapshot(only.inputs) == {"items": ["b", "a"]}
    assert store.get_snapshot(run.state)["items"] == ["b", "a"]


def test_a_list_inside_a_tuple_is_still_a_copy(store: Store) -> None:
    """Only values nothing can change are shared with the state: a tuple holding a list
    is copied, and changing that list is a hazard the state never sees."""
    seen: dict[str, Any] = {}

    @step
    def load(order_id: str, lines: tuple[Any, ...]) -> dict[str, Any]:
        seen["order_id"] = order_id
        lines[1].append("x")
        return {"count": len(lines[1])}

    @step
    def check(lines: tuple[Any, ...], count: int) -> dict[str, Any]:
        return {"same": lines[1] == ["a"] and count == 2}

    run = record(Flow("shared", [load, check]), {"order_id": "A1", "lines": (1, ["a"])},
                 store=store)
    assert run.steps[0].hazards == ("mutated its input 'lines' in place (the record keeps "
                                    "the value it was given); return a new value instead",)
    assert store.get_snapshot(run.state)["same"] is True
    assert seen["order_id"] == "A1"


def test_a_step_that_only_reads_has_no_hazard(store: Store) -> None:
    """Reading without changing is not a mutation."""

    @step
    def count(items: list[str]) -> dict[str, Any]:
        return {"count": len(sorted(items))}

    assert record(Flow("count", [count]), {"items": ["b", "a"]}, store=store).steps[0].hazards == ()


LEFT_STARTED = "left_started"


def _handshake_flow(max_concurrency: int) -> Flow:
    events: dict[str, asyncio.Event] = {}

    def event(name: str) -> asyncio.Event:
        return events.setdefault(name, asyncio.Event())

    @step(writes=["seed"])
    def start(n: int) -> dict[str, Any]:
        events.clear()
        return {"seed": n}

    @step(after=["start"])
    async def left(seed: int) -> dict[str, Any]:
        event("left").set()
        await asyncio.wait_for(event("right").wait(), 1)
        return {"left": seed + 1}

    @step(after=["start"])
    async def right(seed: int, left: int = 0) -> dict[str, Any]:
        event("right").set()
        await asyncio.wait_for(event("left").wait(), 1)
        return {"right": seed + 2, "saw_left": left}

    return Flow("handshake", [start, left, right], max_concurrency=max_concurrency)


def test_async_steps_of_a_level_run_concurrently_and_merge_in_order(store: Store) -> None:
    """Each waits for the other, so this only finishes when they run side by side."""
    run = record(_handshake_flow(2), {"n": 1}, store=store)
    assert [s.name for s in run.steps] == ["start", "left", "right"]
    state = store.get_snapshot(run.state)
    assert (state["left"], state["right"]) == (2, 3)
    assert state["saw_left"] == 0  # siblings read the state as the level began


def test_without_concurrency_the_same_flow_runs_one_step_at_a_time(store: Store) -> None:
    """max_concurrency=1 runs them in turn: the handshake times out and the run fails."""
    with pytest.raises(RunFailedError) as caught:
        record(_handshake_flow(1), {"n": 1}, store=store)
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_threads_recording_at_once_all_succeed(store: Store) -> None:
    """Four threads record into one store; every run is whole and the store checks out."""
    import threading

    failures: list[BaseException] = []

    def work() -> None:
        try:
            for n in range(5):
                record(PRICING, {"order_id": f"T{n}"}, store=store)
        except BaseException as exc:  # handed to the main thread, which asserts none
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    runs = [load_run(store, name.split("/", 1)[1]) for name in store.refs("runs/")]
    assert len(runs) == 20
    assert {run.status for run in runs} == {"succeeded"}
    assert fsck(store).ok


CONCURRENT = """
import sys
sys.path.insert(0, sys.argv[1])
import importlib
from pinrun.artifacts.store import Store
from pinrun.engine.run import record
flow = importlib.import_module(sys.argv[2]).flow
with Store.open(sys.argv[3]) as store:
    for n in range(8):
        record(flow, {"n": n}, store=store, durability=sys.argv[4])
"""

SIMPLE = """
import pinrun

@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}

flow = pinrun.Flow("simple", [double])
"""


@pytest.mark.parametrize("durability", ["step", "run"])
def test_processes_recording_at_once_all_succeed(project: Project, project_store: Store,
                                                 durability: str) -> None:
    """Two processes record into one store at the same time: 16 whole runs."""
    project.write("simple", SIMPLE)
    children = [start_child(CONCURRENT, str(project.root), f"{project.package}.simple",
                            str(project_store.path), durability) for _ in range(2)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    runs = [load_run(project_store, name.split("/", 1)[1])
            for name in project_store.refs("runs/")]
    assert len(runs) == 16
    assert {run.status for run in runs} == {"succeeded"}
    assert fsck(project_store).ok
