"""Effects called from threads and async tasks, in any order, recorded and replayed."""

from __future__ import annotations

import asyncio
import itertools
import sys

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.call_values import ARGUMENT_LIMIT
from pinrun.engine.context import recorded_events
from pinrun.engine.records import load_run
from pinrun.engine.run import record
from pinrun.verifier.replayer import replay
from tests.engine.effect_order import set_order
from tests.helpers import Project

FANNED = """
import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

import pinrun
from tests.engine.effect_order import turn

CALLS = []


def fetch(item):
    CALLS.append(item)
    return {"item": item, "price": len(item) * 10}


@pinrun.step
def fan_out(items: list, ctx: pinrun.Context) -> dict:
    def one(item):
        with turn(item):
            return ctx.effect("fetch", fetch, item)

    with ThreadPoolExecutor(8) as pool:
        return {"prices": list(pool.map(one, items))}


threaded = pinrun.Flow("threaded", [fan_out])


async def quote(item, started, other):
    CALLS.append(item)
    started.set()
    await asyncio.wait_for(other.wait(), 5)  # only returns if the other call runs meanwhile
    return len(item)


@pinrun.step
async def both(items: list, ctx: pinrun.Context) -> dict:
    first, second = asyncio.Event(), asyncio.Event()
    # The events ride in a partial: an effect's own arguments are values it is matched on.
    a, b = await asyncio.gather(
        ctx.effect("quote", functools.partial(quote, started=first, other=second), items[0]),
        ctx.effect("quote", functools.partial(quote, started=second, other=first), items[1]))
    rate = ctx.effect("rate", fetch, "EUR")
    return {"a": a, "b": b, "rate": rate["price"]}


@pinrun.step(after=[])
async def other(items: list, ctx: pinrun.Context) -> dict:
    await asyncio.sleep(0.01)
    return {"n": len(items), "at": ctx.now().isoformat()}


gathered = pinrun.Flow("gathered", [both, other], max_concurrency=2)


def measure(blob, tag):
    return len(blob)


@pinrun.step
def big(blob: str, ctx: pinrun.Context) -> dict:
    return {"size": ctx.effect("store", measure, blob, tag="x")}


large = pinrun.Flow("large", [big])
"""

ITEMS = ["ab", "c", "def", "ghij", "k", "lmnop", "qr", "stu"]


@pytest.fixture
def fanned(project: Project) -> Project:
    """The project's ``fanned`` module (threads, gather, a large argument)."""
    project.write("fanned", FANNED)
    return project


def _calls(project: Project) -> list[str]:
    calls: list[str] = sys.modules[f"{project.package}.fanned"].CALLS
    return calls


def test_threads_calling_effects_in_any_order_reproduce(fanned: Project,
                                                        project_store: Store) -> None:
    """8 threads call ctx.effect in one order when recorded and in 5 others on replay:
    each call gets its own answer, and the effects are never called again."""
    set_order(ITEMS)
    run = record(fanned.load("fanned", "threaded"), {"items": ITEMS}, store=project_store)
    assert sorted(_calls(fanned)) == sorted(ITEMS)
    recorded = recorded_events(project_store, run.steps[0].events)
    assert [event.call for event in recorded] == [
        {"args": [item], "kwargs": {}} for item in ITEMS]
    orders = [list(reversed(ITEMS)), ITEMS[1::2] + ITEMS[::2],
              *itertools.islice(itertools.permutations(ITEMS), 1000, 3000, 1000),
              ITEMS[4:] + ITEMS[:4]]
    assert len(orders) == 5
    for index, order in enumerate(orders):
        set_order(order)
        report = replay(run.id, store=project_store,
                        code="pinned" if index % 2 else "workdir")
        assert report.reproduced, report.explain()
    assert sorted(_calls(fanned)) == sorted(ITEMS)  # never called on replay


def test_an_unanswered_call_shows_its_values(fanned: Project, project_store: Store) -> None:
    """A call the recording has no answer for names its arguments and the recorded ones."""
    set_order(ITEMS)
    run = record(fanned.load("fanned", "threaded"), {"items": ITEMS}, store=project_store)
    fanned.edit("fanned", 'ctx.effect("fetch", fetch, item)',
                'ctx.effect("fetch", fetch, item.upper() if item == "k" else item)')
    set_order(ITEMS)
    report = replay(run.id, store=project_store, code="workdir")
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    assert "it called effect fetch('K'), which the recording has no answer for" in \
        first.message
    assert "the recording's unanswered calls of 'fetch' are fetch('k')" in first.message
    # What differs is named, not two argument digests.
    assert "the nearest differs in argument 1: 'k' -> 'K'" in first.message


def test_async_effects_stay_concurrent_and_reproduce(fanned: Project,
                                                     project_store: Store) -> None:
    """`await ctx.effect` on async functions under gather runs them concurrently when
    recording (each waits for the other), and replays with either code without them."""
    flow = fanned.load("fanned", "gathered")
    run = record(flow, {"items": ["x", "yz"]}, store=project_store)
    assert run.status == "succeeded"
    assert sorted(map(str, _calls(fanned))) == ["EUR", "x", "yz"]  # each called once
    events = recorded_events(project_store, run.steps[0].events)
    assert sorted((e.name, e.value) for e in events) == [
        ("quote", 1), ("quote", 2), ("rate", {"item": "EUR", "price": 30})]
    for code in ("pinned", "workdir"):
        report = replay(run.id, store=project_store, code=code)
        assert report.reproduced, report.explain()
    assert len(_calls(fanned)) == 3


def test_an_async_effect_in_a_sync_step_is_refused(project: Project,
                                                   project_store: Store) -> None:
    """A sync step cannot await: an async effect function there fails the step clearly."""
    project.write("syncasync", """
        import pinrun

        async def fetch():
            return 1

        @pinrun.step
        def plain(ctx: pinrun.Context) -> dict:
            return {"x": ctx.effect("fetch", fetch)}

        flow = pinrun.Flow("syncasync", [plain])
    """)
    with pytest.raises(pinrun.RunFailedError) as failed:
        record(project.load("syncasync"), {}, store=project_store)
    assert "only an async step can await" in str(failed.value.__cause__)


def test_large_arguments_keep_a_preview(fanned: Project, project_store: Store) -> None:
    """Arguments over the limit are kept as a preview and a size; the call still replays."""
    blob = "z" * (ARGUMENT_LIMIT + 10)
    run = record(fanned.load("fanned", "large"), {"blob": blob}, store=project_store)
    event, = recorded_events(project_store, load_run(project_store, run.id).steps[0].events)
    assert event.call is not None
    assert event.call["size"] > ARGUMENT_LIMIT
    assert event.call["preview"].startswith("[['zzz")
    assert len(event.call["preview"]) <= 200
    assert replay(run.id, store=project_store, code="workdir").reproduced


def test_record_async_keeps_the_event_loop_responsive(project: Project,
                                                      project_store: Store) -> None:
    """While `await pinrun.record_async(...)` runs a slow step, a heartbeat keeps ticking."""
    project.write("slow", """
        import threading
        import pinrun

        @pinrun.step
        def slow(n: int) -> dict:
            threading.Event().wait(0.5)
            return {"m": n + 1}

        flow = pinrun.Flow("slow", [slow])
    """)
    flow = project.load("slow")

    async def main() -> tuple[int, pinrun.RunRecord]:
        ticks = 0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        beating = asyncio.create_task(heartbeat())
        run = await pinrun.record_async(flow, {"n": 1}, store=project_store)
        stop.set()
        await beating
        return ticks, run

    ticks, run = asyncio.run(main())
    assert run.status == "succeeded"
    # A blocked loop ticks once; a free one about 50 times in 0.5 s (10 is far from both).
    assert ticks >= 10


def test_a_call_no_longer_made_is_named_with_its_values(fanned: Project,
                                                        project_store: Store) -> None:
    """A recorded effect the replayed step never asks for is named with its arguments."""
    set_order(ITEMS)
    run = record(fanned.load("fanned", "threaded"), {"items": ITEMS}, store=project_store)
    fanned.edit("fanned", "list(pool.map(one, items))",
                'list(pool.map(one, [i for i in items if i not in ("k", "qr")]))')
    set_order([item for item in ITEMS if item not in ("k", "qr")])
    report = replay(run.id, store=project_store, code="workdir")
    first = report.first_divergence
    assert first is not None
    assert first.message == ("the recording has effect fetch('k') (and 1 more), which the "
                             "replayed step never asked for")


def test_an_effects_exception_comes_back_as_it_was_raised(project: Project,
                                                          project_store: Store) -> None:
    """A recorded KeyError('k1') or OSError(2, ...) is raised again with its own
    arguments, so code reading them reproduces (rebuilt from str() it did not)."""
    project.write("raising", """
        import pinrun

        def lookup(key):
            raise KeyError(key)

        def opener(path):
            raise FileNotFoundError(2, "No such file", path)

        @pinrun.step
        def read(ctx: pinrun.Context) -> dict:
            try:
                ctx.effect("lookup", lookup, "k1")
            except KeyError as error:
                first = repr(error)
            try:
                ctx.effect("open", opener, "/nope")
            except OSError as error:
                second = [error.errno, error.strerror, error.filename]
            return {"first": first, "second": second}

        flow = pinrun.Flow("raising", [read])
    """)
    run = record(project.load("raising"), {}, store=project_store)
    for code in ("pinned", "workdir"):
        report = replay(run.id, store=project_store, code=code)
        assert report.reproduced, report.explain()


def test_a_failed_steps_traceback_starts_in_the_step(project: Project,
                                                     project_store: Store) -> None:
    """The recorded traceback begins at the step's own frame: pinrun's frames that
    called it say nothing about the error."""
    project.write("failing", """
        import pinrun

        @pinrun.step
        def broken(n: int) -> dict:
            raise ValueError(f"bad {n}")

        flow = pinrun.Flow("failing", [broken])
    """)
    with pytest.raises(pinrun.RunFailedError) as failed:
        record(project.load("failing"), {"n": 1}, store=project_store)
    error = failed.value.run.steps[0].error
    assert error is not None
    frames = [line for line in error.traceback.splitlines() if line.startswith("  File ")]
    assert len(frames) == 1
    assert frames[0].endswith(", in broken")
    assert "failing.py" in frames[0]


DEALT = """
import threading
from concurrent.futures import ThreadPoolExecutor

import pinrun
from tests.engine.effect_order import turn


@pinrun.step
def deal(items: list, ctx: pinrun.Context) -> dict:
    together = threading.Barrier(len(items))  # one thread per item

    def one(item):
        together.wait(10)
        with turn(item):
            return item, ctx.random().randint(0, 10**9)

    with ThreadPoolExecutor(4) as pool:
        return {"seeds": dict(pool.map(one, items))}


@pinrun.step(after=[deal])
def once(items: list, ctx: pinrun.Context) -> dict:
    seed = ctx.random().randint(0, 10**9)  # asked once, then passed on: no hazard

    def one(item):
        return item, seed + len(item)

    with ThreadPoolExecutor(4) as pool:
        return {"spread": dict(pool.map(one, items))}


dealt = pinrun.Flow("dealt", [deal, once])
"""


def test_answers_dealt_to_threads_in_another_order_are_named(project: Project,
                                                             project_store: Store) -> None:
    """Threads that each ask ctx.random() get the recorded seeds in the order they ask:
    asked in another order, the outputs differ and the cause says the same answers went
    out in another order; a seed asked once and passed on is no hazard."""
    project.write("dealt", DEALT)
    items = ITEMS[:4]
    set_order(items)
    run = record(project.load("dealt", "dealt"), {"items": items}, store=project_store)
    set_order(items)
    same = replay(run.id, store=project_store, code="workdir")
    assert same.reproduced, same.explain()
    assert any("ctx.random() answered 4 threads or tasks in turn" in hazard
               for hazard in same.steps[0].hazards), same.steps[0].hazards
    assert same.steps[1].hazards == []
    set_order(list(reversed(items)))
    report = replay(run.id, store=project_store, code="workdir")
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    assert first.name == "deal"
    order = [cause for cause in first.causes if cause.kind == "answer order"]
    assert len(order) == 1
    assert order[0].message.startswith("ctx.random() answered 4 threads or tasks in turn")
