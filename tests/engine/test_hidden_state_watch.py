"""The hidden-state watch (:mod:`pinrun.world.hidden_state`) on a module of its own: what
it finds, what it names, and what it never looks into."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from pinrun.world.hidden_state import Watch

SOURCE = '''
import functools
import logging
import re

log = logging.getLogger("watched")
PATTERN = re.compile("a+")
LIMIT = 3
COUNT = 0
SEEN = []


class Registry:
    items = []
    name = "registry"

    def add(self, item, bag=[]):
        bag.append(item)


class Empty:
    pass


SPARE = Empty()


def remember(x, seen=[], *, also={}):
    seen.append(x)
    also[x] = True


def bump():
    global COUNT
    COUNT += 1


@functools.lru_cache(maxsize=None)
def square(x):
    return x * x


@functools.lru_cache(maxsize=4)
def settings(name):
    return {"name": name, "tags": []}
'''


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    """A fresh module holding one of each kind of place."""
    made = types.ModuleType("watched_mod")
    sys.modules[made.__name__] = made
    exec(compile(SOURCE, "<watched_mod>", "exec"), vars(made))
    try:
        yield made
    finally:
        del sys.modules[made.__name__]


def _named(watch: Watch, change: object) -> list[str]:
    before = watch.look()
    assert callable(change)
    change()
    return [str(found) for found in watch.changes(before, watch.look())]


def test_places_are_named_by_owner(module: types.ModuleType) -> None:
    """Globals, class attributes, mutable defaults (keyword-only too) and caches are found;
    functions and classes themselves are code, not places."""
    owners = [place.owner for place in Watch([module]).places]
    for owner in ("watched_mod.SEEN", "watched_mod.COUNT", "watched_mod.Registry.items",
                  "watched_mod.Registry.add(bag=...)", "watched_mod.remember(seen=...)",
                  "watched_mod.remember(also=...)", "watched_mod.square()",
                  "watched_mod.settings()", "watched_mod.SPARE"):
        assert owner in owners, owners
    assert "watched_mod.remember" not in owners
    assert "watched_mod.Registry" not in owners


def test_each_kind_of_change_is_named(module: types.ModuleType) -> None:
    """A list, a class attribute, a default, a rebound number, an object gaining an
    attribute: each named once, by its owner."""
    watch = Watch([module])
    assert _named(watch, lambda: module.SEEN.append(1)) == [
        "module state: watched_mod.SEEN changed"]
    assert _named(watch, lambda: module.Registry.items.append(1)) == [
        "module state: watched_mod.Registry.items changed"]
    assert _named(watch, lambda: module.remember(1)) == [
        "default argument: watched_mod.remember(seen=...) changed",
        "default argument: watched_mod.remember(also=...) changed"]
    assert _named(watch, module.bump) == ["module state: watched_mod.COUNT changed"]
    assert _named(watch, lambda: setattr(module.SPARE, "x", 1)) == [
        "module state: watched_mod.SPARE changed"]


def test_a_pure_cache_filling_up_is_no_hazard(module: types.ModuleType) -> None:
    """Filling a cache is named as what it holds, never as a hazard; calling it again
    with cached arguments changes nothing."""
    watch = Watch([module])
    before = watch.look()
    module.square(2)
    filled = watch.look()
    (change,) = watch.changes(before, filled)
    assert str(change) == "cache: watched_mod.square() holds 1 entry (was 0)"
    assert not change.hazard
    module.square(2)
    assert watch.changes(filled, watch.look()) == []


def test_a_cached_result_changed_in_place_is_a_hazard(module: types.ModuleType) -> None:
    """A bounded cache whose result is changed in place after it was cached: a hazard."""
    watch = Watch([module])
    module.settings("a")
    before = watch.look()
    module.settings("a")["tags"].append("x")
    (change,) = watch.changes(before, watch.look())
    assert str(change) == "cache: watched_mod.settings() holds a result changed in place"
    assert change.hazard


def test_quiet_values_and_loggers_never_change(module: types.ModuleType) -> None:
    """Looking twice with nothing run in between finds nothing, a logger's level set
    finds nothing, and the since-first check names who changed what in which repetition."""
    watch = Watch([module])
    first = watch.look()
    module.log.setLevel("DEBUG")
    assert watch.changes(first, watch.look()) == []
    assert watch.since_first("step", first, 1) == []
    module.SEEN.append(1)
    changed = watch.look()
    watch.note(watch.changes(first, changed), ["step"], 1)
    (named,) = watch.since_first("step", changed, 2)
    assert str(named) == ("module state: watched_mod.SEEN changed by step 'step' in "
                          "repetition 1, read again in repetition 2")


def _fresh(name: str, source: str) -> types.ModuleType:
    made = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), vars(made))
    return made


def test_a_value_that_changes_type_in_a_flat_container_is_a_change() -> None:
    """1 -> 1.0 in a dict, 0 -> False in a list, {1} -> {True}: equal to Python, but not
    the same state (they show differently); each is named as changed."""
    made = _fresh("flat_types_mod", "STATS = {'n': 1}\nFLAGS = [0]\nKEYS = {1}\n")
    watch = Watch([made])
    before = watch.look()
    made.STATS["n"] = 1.0
    made.FLAGS[0] = False
    made.KEYS.clear()
    made.KEYS.add(True)
    owners = {change.owner for change in watch.changes(before, watch.look())}
    assert owners == {"flat_types_mod.STATS", "flat_types_mod.FLAGS", "flat_types_mod.KEYS"}


def test_a_flat_container_that_takes_an_object_or_a_container_is_a_change() -> None:
    """A flat dict that gains an object of the project's, a flat list that gains a list:
    each named as changed (and watched from then on), an unchanged one not."""
    made = _fresh("flat_objects_mod", "class Item:\n    pass\n\n\n"
                                      "TABLE = {'a': 1}\nROWS = [1, 2]\nSAME = ['x']\n")
    watch = Watch([made])
    before = watch.look()
    made.TABLE["b"] = made.Item()
    made.ROWS.append([3])
    after = watch.look()
    assert {change.owner for change in watch.changes(before, after)} == {
        "flat_objects_mod.TABLE", "flat_objects_mod.ROWS"}
    made.ROWS[2].append(4)
    assert {change.owner for change in watch.changes(after, watch.look())} == {
        "flat_objects_mod.ROWS"}


def test_a_module_object_that_cannot_be_hashed_is_watched() -> None:
    """A module object of a class defining ``__eq__`` without ``__hash__`` (unhashable):
    watched all the same, its changes named."""

    class Unhashable(types.ModuleType):  # noqa: PLW1641 - unhashable is the point
        def __eq__(self, other: object) -> bool:
            return self is other

    made = Unhashable("unhashable_mod")
    exec(compile("SEEN = []\n", "<unhashable_mod>", "exec"), vars(made))
    watch = Watch([made])
    before = watch.look()
    vars(made)["SEEN"].append(1)
    assert [str(change) for change in watch.changes(before, watch.look())] == [
        "module state: unhashable_mod.SEEN changed"]


def test_a_new_nan_object_in_a_flat_container_is_no_change() -> None:
    """A NaN replaced by another NaN (unequal to itself in Python) is the same state."""
    made = _fresh("flat_nan_mod", "LAST = {'x': float('nan')}\n")
    watch = Watch([made])
    before = watch.look()
    made.LAST["x"] = float("nan")
    assert watch.changes(before, watch.look()) == []
    made.LAST["x"] = 2.0
    assert [change.owner for change in watch.changes(before, watch.look())] == [
        "flat_nan_mod.LAST"]


def test_a_watch_keeps_no_module_it_looked_at_alive() -> None:
    """Once a module (pinned code loads new ones for every replay) is gone, what its
    globals held is freed: the watch's shared layout does not keep it."""
    import gc
    import weakref

    made = _fresh("layout_mod", "class Big:\n    pass\n\nBIG = Big()\nTABLE = {'a': 1}\n")
    held = weakref.ref(made.BIG)
    Watch([made]).look()
    del made
    gc.collect()
    assert held() is None


def test_a_place_classified_again_by_another_watch_is_seen_again() -> None:
    """A global bound away and back to the same list, with another watch of other
    module sets classifying it in between, still has its later changes named."""
    made = _fresh("shared_place_mod", "X = ['a', {'k': [1]}]\n")
    other = _fresh("shared_other_mod", "Y = 1\n")
    first, second = Watch([made]), Watch([made, other])
    names = vars(made)
    original = names["X"]
    first.look()
    names["X"] = 5
    second.look()  # the shared place is classified for the int
    names["X"] = original
    before = first.look()
    original[1]["k"].append(2)
    assert [change.owner for change in first.changes(before, first.look())] == [
        "shared_place_mod.X"]
