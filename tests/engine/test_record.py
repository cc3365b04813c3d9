"""Recording runs: what is committed per step, failures, policies, and durability."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import pinrun
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.engine.run import record
from pinrun.errors import RunFailedError, StepOutputError
from pinrun.flows import Flow, MissingInputError, step
from tests.engine.test_context import FixedWorld

CALLS: list[str] = []


@step
def load(order_id: str) -> dict[str, Any]:
    """Fetch the order's items."""
    return {"items": [{"sku": "X", "qty": 2, "price": 5.0}]}


@step
def price(items: list[dict[str, Any]], ctx: pinrun.Context) -> dict[str, Any]:
    """Price the items, at a recorded exchange rate."""

    def fx(currency: str) -> float:
        CALLS.append(currency)
        return 1.1

    rate = ctx.effect("fx_rate", fx, "EUR")
    items.append({"sku": "leak", "qty": 1, "price": 100.0})  # must not leak into the state
    return {"total": round(sum(i["qty"] * i["price"] for i in items[:-1]) * rate, 2),
            "priced_at": ctx.now()}


@step
def report(total: float, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarise."""
    return {"report": f"{total} for {len(items)} item(s)"}


PRICING = Flow("pricing", [load, price, report])


def test_a_run_is_recorded_step_by_step(store: Store) -> None:
    """Each step's reads, outputs and events are stored; the final state is the run's."""
    CALLS.clear()
    run = record(PRICING, {"order_id": "A1"}, store=store, world=FixedWorld())
    assert run.status == "succeeded"
    assert [s.name for s in run.steps] == ["load", "price", "report"]
    final = store.get_snapshot(run.state)
    assert final["report"] == "11.0 for 1 item(s)"
    assert final["items"] == [{"sku": "X", "qty": 2, "price": 5.0}]  # the mutation did not leak
    price_step = run.steps[1]
    assert store.get_snapshot(price_step.inputs) == {"items": final["items"]}
    assert store.get_snapshot(price_step.outputs or run.state)["total"] == 11.0
    events = store.get_value(price_step.events)
    assert [e["kind"] for e in events] == ["effect", "now"]
    assert events[0]["value"] == 1.1
    assert CALLS == ["EUR"]
    assert load_run(store, run.id) == run
    assert store.ref(f"runs/{run.id}") == run.digest
    assert fsck(store).ok


def test_run_ids_are_time_ordered_and_resolvable_by_prefix(store: Store) -> None:
    """Run ids start with the recorded time; a unique prefix finds a run."""
    run = record(PRICING, {"order_id": "A1"}, store=store, world=FixedWorld())
    assert run.id.startswith("20260101T120001000-")
    assert load_run(store, run.id[:18]).id == run.id
    with pytest.raises(pinrun.UnknownRefError):
        load_run(store, "19990101")


def test_missing_input_fails_before_anything_is_written(store: Store) -> None:
    """A flow that would lack an input is refused with nothing stored."""
    with pytest.raises(MissingInputError):
        record(PRICING, {"customer": "c1"}, store=store)
    assert store.object_count() == 0


def test_failing_step_is_recorded_and_raised_from_its_error(store: Store) -> None:
    """The failure is committed (type, message, traceback), the state stays as it was."""

    @step
    def refuse(total: float) -> dict[str, Any]:
        raise ValueError(f"no approval for {total}")

    with pytest.raises(RunFailedError) as caught:
        record(Flow("approval", [load, price, refuse]), {"order_id": "A1"}, store=store,
               world=FixedWorld())
    assert isinstance(caught.value.__cause__, ValueError)
    run = load_run(store, caught.value.run.id)
    assert run.status == "failed"
    failed = run.failed_step
    assert failed is not None
    assert failed.name == "refuse"
    assert failed.outputs is None
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("ValueError", "no approval for 11.0")
    assert "raise ValueError" in failed.error.traceback
    assert set(store.get_snapshot(run.state)) == {"order_id", "items", "total", "priced_at"}
    assert "refuse" in str(caught.value)


def test_bad_outputs_fail_the_step_with_a_clear_reason(store: Store) -> None:
    """A non-mapping return or an unstorable value fails the step, and says why."""

    @step
    def returns_list(order_id: str) -> Any:
        return [order_id]

    @step
    def returns_object(order_id: str) -> dict[str, Any]:
        return {"handle": object()}

    with pytest.raises(RunFailedError) as caught:
        record(Flow("a", [returns_list]), {"order_id": "A1"}, store=store)
    assert isinstance(caught.value.__cause__, StepOutputError)
    with pytest.raises(RunFailedError) as caught:
        record(Flow("b", [returns_object]), {"order_id": "A1"}, store=store)
    assert isinstance(caught.value.__cause__, pinrun.UnsupportedValueError)
    assert "outputs of step 'returns_object'" in str(caught.value.__cause__)


def test_collision_policies(store: Store) -> None:
    """Overwriting a key warns (a recorded hazard) or fails, as the flow says."""

    @step
    def again(order_id: str) -> dict[str, Any]:
        return {"order_id": order_id.lower()}

    warned = record(Flow("w", [again]), {"order_id": "A1"}, store=store)
    assert warned.steps[0].hazards == ("overwrote key 'order_id'",)
    quiet = record(Flow("o", [again], on_collision="overwrite"), {"order_id": "A1"},
                   store=store)
    assert quiet.steps[0].hazards == ()
    with pytest.raises(RunFailedError, match="on_collision='error'"):
        record(Flow("e", [again], on_collision="error"), {"order_id": "A1"}, store=store)


def test_two_steps_of_one_level_writing_one_key_fail(store: Store) -> None:
    """Steps that run side by side may not write the same key."""

    @step(after=[load])
    def left(items: list[Any]) -> dict[str, Any]:
        return {"side": "left"}

    @step(after=[load])
    def right(items: list[Any]) -> dict[str, Any]:
        return {"side": "right"}

    with pytest.raises(RunFailedError, match="same level"):
        record(Flow("clash", [load, left, right]), {"order_id": "A1"}, store=store)


def test_async_steps_run(store: Store) -> None:
    """An async def step is awaited."""

    @step
    async def fetch(order_id: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"fetched": order_id}

    run = record(Flow("async", [fetch]), {"order_id": "A1"}, store=store)
    assert store.get_snapshot(run.state)["fetched"] == "A1"
