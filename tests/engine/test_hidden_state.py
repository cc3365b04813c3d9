"""Module state a codec cannot encode is still watched: an object's attributes (slots,
and a lock among them), a random generator's state (numpy's legacy one too), a deque,
a counter built in C. A worker carrying it from run to run is told so when it
records, and a replay that diverges because of it names it."""

from __future__ import annotations

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.verifier.replayer import replay
from tests.helpers import Project

WORKER = """
import collections
import itertools
import random
import threading

import numpy

import pinrun


class Counter:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1
        return self.n


class Slotted:
    __slots__ = ("n",)

    def __init__(self):
        self.n = 0


class Client:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0


COUNTER = Counter()
RNG = random.Random(0)
SLOTTED = Slotted()
CLIENT = Client()
TICKS = itertools.count()
RECENT = collections.deque(maxlen=3)
LEGACY = numpy.random.RandomState(1)


@pinrun.step
def churn(n: int) -> dict:
    SLOTTED.n += 1
    with CLIENT.lock:
        CLIENT.calls += 1
    RECENT.append(n)
    return {"m": n + next(TICKS) + int(LEGACY.randint(0, 6))}


@pinrun.step
def count(x: int) -> dict:
    return {"n": COUNTER.bump() + x}


@pinrun.step
def draw(n: int) -> dict:
    return {"roll": RNG.randint(1, 6) + n}


flow = pinrun.Flow("worker", [count, draw, churn])
"""


def test_objects_and_generators_at_module_level_are_hidden_state(
        project: Project, project_store: Store) -> None:
    """Two runs in one process: both pin the same code, each records a hazard for the
    object and the generator it changed, and replaying run 2 names module state."""
    project.write("worker", WORKER)
    flow = project.load("worker")
    runs = [pinrun.record(flow, {"x": 1}, store=project_store) for _ in range(2)]
    assert [s.code for s in runs[0].steps] == [s.code for s in runs[1].steps]
    for run in runs:
        hazards = {step.name: " ".join(step.hazards) for step in run.steps}
        assert f"module state: {project.package}.worker.COUNTER changed" in hazards["count"]
        assert f"module state: {project.package}.worker.RNG changed" in hazards["draw"]
        for name in ("SLOTTED", "CLIENT", "TICKS", "RECENT", "LEGACY"):
            assert f"module state: {project.package}.worker.{name} changed" in hazards["churn"]
    report = pinrun.replay(runs[1].id, store=project_store, code="pinned")
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    assert first.name == "count"
    assert any(cause.kind == "module state" and "COUNTER" in cause.message
               for cause in first.causes), [str(c) for c in first.causes]


ODD = """
import functools

import pinrun


class Base:
    __slots__ = ("v",)


class Shadowed(Base):
    @property
    def v(self):
        raise ValueError("no v")


class Grumpy:
    __slots__ = ("q",)

    def __getattr__(self, name):
        raise KeyError(name)


class Loud:
    def __repr__(self):
        raise RuntimeError("no repr")


class Lazy:
    @functools.cached_property
    def total(self):
        return 42


SHADOWED, GRUMPY, LOUD, LAZY = Shadowed(), Grumpy(), Loud(), Lazy()


@pinrun.step
def look(n: int) -> dict:
    return {"seen": [n, type(SHADOWED).__name__, type(GRUMPY).__name__,
                     type(LOUD).__name__, LAZY.total]}


flow = pinrun.Flow("odd", [look])
"""


def test_odd_objects_never_break_recording_and_memoizing_is_no_hidden_state(
        project: Project, project_store: Store) -> None:
    """Objects whose properties, __getattr__ or __repr__ raise are recorded around (no
    crash); a cached_property computed on first read is no hidden state."""
    project.write("odd", ODD)
    run = pinrun.record(project.load("odd"), {"n": 1}, store=project_store)
    assert run.status == "succeeded"
    assert not [h for h in run.steps[0].hazards if "module state" in h]


OWNED = """
import functools

import pinrun
from PKG.helpers import Registry, remember, settings


@pinrun.step
def churn(n: int) -> dict:
    settings()["tags"].append(n)
    return {"count": remember(n), "items": Registry.add(n)}


@functools.lru_cache(maxsize=None)
def square(x):
    return x * x


@pinrun.step
def pure(n: int) -> dict:
    return {"square": square(n)}


flow = pinrun.Flow("owned", [churn, pure])
"""

HELPERS = """
import functools


def remember(x, seen=[]):
    seen.append(x)
    return len(seen)


class Registry:
    items = []
    name = "registry"

    @classmethod
    def add(cls, item):
        cls.items.append(item)
        return list(cls.items)


@functools.lru_cache(maxsize=None)
def settings():
    return {"tags": []}
"""


def test_recording_names_defaults_class_attributes_and_caches_by_owner(
        project: Project, project_store: Store) -> None:
    """A step changing a default argument, a class attribute and a cached result in a helper
    module: each is a hazard on its record, named by its owner; a pure cache is none."""
    project.write("helpers", HELPERS)
    project.write("owned", OWNED.replace("PKG", project.package))
    flow = project.load("owned")
    pinrun.record(flow, {"n": 1}, store=project_store)  # fills the cache: no hazard for it
    run = pinrun.record(flow, {"n": 2}, store=project_store)
    hazards = {step.name: step.hazards for step in run.steps}
    helpers = f"{project.package}.helpers"
    assert not hazards["pure"]
    for expected in (f"default argument: {helpers}.remember(seen=...) changed",
                     f"module state: {helpers}.Registry.items changed",
                     f"cache: {helpers}.settings() holds a result changed in place"):
        assert any(hazard.startswith(expected) for hazard in hazards["churn"]), \
            (expected, hazards["churn"])


def test_a_module_level_pool_is_not_hidden_state(project: Project, project_store: Store) -> None:
    """A module-level ThreadPoolExecutor, lock and queue used by a step are machinery, not
    hidden state: no hazard when recorded nor when replayed."""
    project.write("pooled", """
        import queue
        import threading
        from concurrent.futures import ThreadPoolExecutor

        import pinrun

        POOL = ThreadPoolExecutor(2)
        LOCK = threading.Lock()
        JOBS = queue.Queue()


        def square(a):
            return a * a


        @pinrun.step
        def pooled(a: int) -> dict:
            with LOCK:
                JOBS.put(a)
                JOBS.get()
            return {"p": POOL.submit(square, a).result()}


        flow = pinrun.Flow("pooled", [pooled])
        """)
    run = record(project.load("pooled"), {"a": 3}, store=project_store)
    assert run.steps[0].hazards == ()
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()
    assert report.steps[0].hazards == []
