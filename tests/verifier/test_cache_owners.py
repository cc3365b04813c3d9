"""Caches have owners: a pinned replay in a process that recorded, or that replays many runs."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Literal

import pytest

import pinrun
from pinrun.artifacts import _codec_registry
from pinrun.artifacts.store import Store
from tests.helpers import Project, project_cli

CodeSource = Literal["pinned", "workdir"]
PINNED: CodeSource = "pinned"
WORKDIR: CodeSource = "workdir"

MODELS = """
import dataclasses
import enum

import pydantic

import pinrun


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Order(pydantic.BaseModel):
    id: str
    qty: int
    color: Color = Color.RED


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return type(other) is Money and other.cents == self.cents

    __hash__ = None


# Registered on import: the pinned copy of this module registers its own Money.
pinrun.register_type(Money, __name__ + ".money", lambda m: m.cents, Money)
"""

FLOWS = """
import pinrun

from {package}.models import Color, Money, Order, Point


@pinrun.step
def make(n: int, start: Point) -> dict:
    return {{"point": Point(n + start.x, n + 1), "color": Color.RED,
             "order": Order(id="A", qty=n), "price": Money(n * 100)}}


@pinrun.step
def use(point: Point, color: Color, order: Order, price: Money) -> dict:
    # The classes the replayed code holds are the ones decoded values have.
    assert isinstance(point, Point) and isinstance(order, Order), (type(point), type(order))
    assert isinstance(price, Money) and color is Color.RED, (type(price), color)
    return {{"moved": Point(point.x + 1, point.y), "colors": [color, Color.BLUE],
             "bigger": order.model_copy(update={{"qty": order.qty + 1}}),
             "more": Money(price.cents + 1), "red": order.color is Color.RED}}


flow = pinrun.Flow("shapes", [make, use])
"""


def _write(project: Project) -> None:
    project.write("models", MODELS)
    project.write("flows", FLOWS.format(package=project.package))


def test_pinned_replay_after_record_in_one_process_reproduces(
        project: Project, project_store: Store) -> None:
    """Dataclass, Enum, pydantic and registered-type state: record, then replay pinned in
    the same process (twice, once repeated 3 times) and workdir: every replay reproduces."""
    _write(project)
    point = project.load("models", "Point")
    run = pinrun.record(project.load("flows"), {"n": 3, "start": point(1, 2)},
                        store=project_store)
    assert run.status == "succeeded"
    for code, repeat in ((PINNED, 1), (PINNED, 1), (WORKDIR, 1), (PINNED, 3)):
        report = pinrun.replay(run.id, store=project_store, code=code, repeat=repeat)
        assert report.reproduced, report.explain()
    # Once the pinned modules are gone, stored values decode to the loaded classes again.
    outputs = project_store.get_snapshot(run.steps[-1].outputs)  # type: ignore[arg-type]
    assert type(outputs["more"]) is project.load("models", "Money")
    assert type(outputs["moved"]) is point


def test_registrations_of_pinned_code_leave_with_it(
        project: Project, project_store: Store) -> None:
    """A type registered by pinned code is registered while that code lives, not after:
    replaying again and again does not pile registrations (nor pinned modules) up."""
    _write(project)
    name = f"{project.package}.models.money"
    run = pinrun.record(project.load("flows"), {"n": 1, "start": project.load("models",
                                                                            "Point")(0, 0)},
                        store=project_store)
    counts = []
    for replays in (2, 4):
        for _ in range(replays):
            assert pinrun.replay(run.id, store=project_store, code="pinned").reproduced
        gc.collect()
        counts.append(len(_codec_registry._live(name)))
    # The loaded module's, and at most the last replay's (a replay's module-locality
    # cache keeps the module objects it saw last, one per name).
    assert counts[0] == counts[1] <= 2, counts
    live = _codec_registry.codec_for_name(name)
    assert live is not None
    assert live.cls is project.load("models", "Money")


def test_another_class_may_not_take_a_registered_name(project: Project) -> None:
    """Loading the same class again may register its name; another class still may not."""
    _write(project)
    money = project.load("models", "Money")

    class Money:
        pass

    with pytest.raises(ValueError, match="already registered for Money"):
        pinrun.register_type(Money, f"{project.package}.models.money", lambda m: 0,
                             lambda p: Money())
    assert _codec_registry.codec_for_type(money) is not None


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_verify_pinned_with_workers_reproduces(project: Project, jobs: str,
                                               tmp_path: Path) -> None:
    """`pinrun verify --code pinned -j1/-j2` over several runs of that flow: a worker
    replays one run after another with fresh pinned modules, and every one reproduces."""
    _write(project)
    assert project_cli(project, "init").returncode == 0
    with Store.open(project.root / ".pinrun") as store:
        point = project.load("models", "Point")
        for n in range(4):
            pinrun.record(project.load("flows"), {"n": n, "start": point(n, 0)}, store=store)
    out = tmp_path / "verify.json"
    done = project_cli(project, "verify", "--code", "pinned", "-j", jobs, "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 reproduced, 0 diverged" in done.stdout
    assert [r["verdict"] for r in json.loads(out.read_text())["results"]] == ["reproduced"] * 4
