"""Steps and flows: what a decorated function declares, and how a flow orders its steps."""

from __future__ import annotations

from typing import Any

import pytest

import pinrun
from pinrun.flows import Flow, FlowDefinitionError, MissingInputError, StepDefinitionError, step


@step
def load(order_id: str) -> dict[str, Any]:
    """Fetch the order's items."""
    return {"items": [{"qty": 2, "price": 5.0}], "customer": "c1"}


@step
def price(items: list[dict[str, Any]], ctx: Any, discount: float = 0.0) -> dict[str, Any]:
    """Price the items."""
    return {"total": sum(i["qty"] * i["price"] for i in items) * (1 - discount)}


@step(name="report")
def summarize(total: float, state: Any) -> dict[str, Any]:
    """Summarise."""
    return {"summary": f"{total:.2f}"}


def test_parameters_name_what_a_step_reads() -> None:
    """Parameters are state keys (defaults make them optional); ctx and state are special."""
    assert (price.requires, price.optional) == (("items",), ("discount",))
    assert price.wants_context
    assert not price.wants_state
    assert summarize.wants_state
    assert summarize.requires == ("total",)
    assert summarize.name == "report"
    assert price.reads == ("items", "discount")


def test_writes_are_read_off_return_literals() -> None:
    """The keys a step writes come from its `return {...}` literals when they are plain."""
    assert load.writes == frozenset({"items", "customer"})
    assert price.writes == frozenset({"total"})

    @step
    def computed(x: int) -> dict[str, int]:
        return dict.fromkeys(["y"], x)  # a call, not a literal: keys unknown

    assert computed.writes is None

    @step(writes=["y"])
    def declared(x: int) -> dict[str, int]:
        return dict.fromkeys(["y"], x)

    assert declared.writes == frozenset({"y"})


def test_a_step_stays_directly_callable() -> None:
    """Calling a step calls the function: unit tests need no pinrun machinery."""
    assert price([{"qty": 1, "price": 2.0}], ctx=None) == {"total": 2.0}
    assert load("A1")["customer"] == "c1"


def test_async_steps_are_recognised() -> None:
    """An async def step is marked async."""

    @step
    async def fetch(url: str) -> dict[str, str]:
        return {"body": url}

    assert fetch.is_async
    assert not load.is_async


def test_unusable_signatures_are_refused_with_a_reason() -> None:
    """*args, **kwargs, positional-only parameters and non-functions cannot be steps."""
    with pytest.raises(StepDefinitionError, match=r"\*args"):

        @step
        def star(*args: Any) -> dict[str, Any]:
            return {}

    with pytest.raises(StepDefinitionError, match=r"\*kwargs"):

        @step
        def stars(**kwargs: Any) -> dict[str, Any]:
            return {}

    with pytest.raises(StepDefinitionError, match="positional-only"):

        @step
        def positional(x: int, /) -> dict[str, Any]:
            return {}

    with pytest.raises(StepDefinitionError, match="plain functions"):
        step(print)
    def plain() -> dict[str, Any]:
        return {}

    with pytest.raises(StepDefinitionError, match="version"):
        step(version="")(plain)


def test_plain_list_is_sequential() -> None:
    """Steps without `after` run one per level, in list order."""
    flow = Flow("pricing", [load, price, summarize])
    assert [[s.name for s in level] for level in flow.levels] == [["load"], ["price"],
                                                                  ["report"]]
    assert flow.dependencies(price) == ("load",)


def test_after_builds_levels_in_declaration_order() -> None:
    """`after` lets independent steps share a level, kept in declaration order."""

    @step
    def start(x: int) -> dict[str, int]:
        return {"a": x}

    @step(after=[start])
    def left(a: int) -> dict[str, int]:
        return {"l": a}

    @step(after=["start"])
    def right(a: int) -> dict[str, int]:
        return {"r": a}

    @step(after=[left, right])
    def join(l: int, r: int) -> dict[str, int]:  # noqa: E741 - the key is named l
        return {"j": l + r}

    flow = Flow("diamond", [start, right, left, join])
    assert [[s.name for s in level] for level in flow.levels] == [["start"], ["right", "left"],
                                                                  ["join"]]


def test_bad_flows_are_refused() -> None:
    """Duplicate names, unknown dependencies, cycles, bad policies: clear errors."""
    with pytest.raises(FlowDefinitionError, match="unique"):
        Flow("f", [load, load])
    with pytest.raises(FlowDefinitionError, match="not a step of this flow"):
        Flow("f", [step(after=["ghost"])(lambda x: {"y": x})])

    @step(after=["b"])
    def a(x: int) -> dict[str, int]:
        return {"y": x}

    @step(after=["a"])
    def b(y: int) -> dict[str, int]:
        return {"x": y}

    with pytest.raises(FlowDefinitionError, match="cycle"):
        Flow("f", [a, b])
    with pytest.raises(FlowDefinitionError, match="on_collision"):
        Flow("f", [load], on_collision="ignore")  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError, match="no steps"):
        Flow("f", [])
    with pytest.raises(FlowDefinitionError, match="not a step"):
        Flow("f", [print])  # type: ignore[list-item]


def test_flows_are_immutable() -> None:
    """A flow cannot be changed after it is built."""
    flow = Flow("pricing", [load, price])
    with pytest.raises(AttributeError, match="immutable"):
        flow.name = "other"


def test_missing_input_is_reported_before_anything_runs() -> None:
    """A key no input or earlier step provides is named with its step, up front."""
    flow = Flow("pricing", [load, price, summarize])
    flow.check_inputs(["order_id"])
    with pytest.raises(MissingInputError) as caught:
        flow.check_inputs(["customer_id"])
    assert (caught.value.step, caught.value.key) == ("load", "order_id")
    assert "--set" in str(caught.value)
    skipping = Flow("partial", [price, summarize])
    with pytest.raises(MissingInputError) as caught:
        skipping.check_inputs([])
    assert caught.value.key == "items"


def test_inputs_checked_once_per_set_of_keys() -> None:
    """A flow checks a set of input keys once (it is immutable, so is the answer): the same
    keys again, in any order, pass without looking at the steps; other keys are checked
    (and a missing one still raised) as before."""
    flow = Flow("pricing", [load, price, summarize])
    flow.check_inputs(["order_id"])

    class Untouchable(tuple):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            raise AssertionError("the levels were walked again")

    walked = flow.levels
    object.__setattr__(flow, "levels", Untouchable(walked))
    flow.check_inputs(iter(["order_id"]))
    flow.check_inputs({"order_id": 1}.keys())
    with pytest.raises(AssertionError, match="walked again"):
        flow.check_inputs(["order_id", "extra"])
    object.__setattr__(flow, "levels", walked)
    with pytest.raises(MissingInputError):
        flow.check_inputs(["customer_id"])
    with pytest.raises(MissingInputError):
        flow.check_inputs(["customer_id"])  # (a failed check is not kept as passed)


def test_unknown_writes_never_cause_false_alarms() -> None:
    """After a step whose writes are unknown, later requirements are not flagged."""

    @step
    def opaque(order_id: str) -> dict[str, Any]:
        result: dict[str, Any] = {"items": []}
        return result

    Flow("f", [opaque, price]).check_inputs(["order_id"])


def test_public_names() -> None:
    """step and Flow are part of the public pinrun API."""
    assert pinrun.step is step
    assert pinrun.Flow is Flow
