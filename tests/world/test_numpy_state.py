"""numpy's global generator's state read from memory: equal while untouched, different
after any draw, seed or cached Gaussian change, and the same verdicts as get_state()."""

from __future__ import annotations

from collections.abc import Callable

import numpy
import pytest

from pinrun.world import code_state, numpy_state

GLOBAL = numpy.random.mtrand._rand


def test_the_read_is_proven_on_this_numpy() -> None:
    """Proven here (the test suite's numpy): the fast read is what the check uses."""
    assert numpy_state.raw_numpy_state(GLOBAL) is not None
    assert numpy_state._PROOF[0][0]


CHANGES: dict[str, Callable[[], object]] = {
    "a draw": numpy.random.random,
    "an integer": lambda: numpy.random.randint(10),
    "a normal (cached Gaussian made)": numpy.random.standard_normal,
    "another seed": lambda: numpy.random.seed(987),
    "a shuffle": lambda: numpy.random.shuffle([1, 2, 3]),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_each_change_of_the_global_generator_is_seen(name: str) -> None:
    """The fast read and get_state() agree that the state changed, and that setting the
    saved state back makes it equal again."""
    saved = numpy.random.get_state()
    before, slow_before = numpy_state.raw_numpy_state(GLOBAL), GLOBAL.get_state()
    try:
        assert numpy_state.raw_numpy_state(GLOBAL) == before
        CHANGES[name]()
        slow_after = GLOBAL.get_state()
        changed = numpy_state.raw_numpy_state(GLOBAL) != before
        slow_changed = any(
            bool(numpy.any(numpy.asarray(a) != numpy.asarray(b)))
            for a, b in zip(slow_before, slow_after, strict=True))
        assert changed
        assert slow_changed
    finally:
        numpy.random.set_state(saved)
    assert numpy_state.raw_numpy_state(GLOBAL) == before


def test_only_the_cached_gaussian_changing_is_seen() -> None:
    """The second of two normals uses the cached one: the words stay, the cache goes."""
    saved = numpy.random.get_state()
    try:
        numpy.random.seed(3)
        numpy.random.standard_normal()
        first = numpy_state.raw_numpy_state(GLOBAL)
        numpy.random.standard_normal()
        second = numpy_state.raw_numpy_state(GLOBAL)
        assert first is not None
        assert second is not None
        assert first[1] == second[1]  # the words did not move
        assert first != second
    finally:
        numpy.random.set_state(saved)


def test_another_bit_generator_is_another_state() -> None:
    """The same words in another bit generator object: not the same state."""
    saved = numpy.random.get_state()
    try:
        numpy.random.seed(11)
        before = numpy_state.raw_numpy_state(GLOBAL)
        other = numpy.random.RandomState(numpy.random.MT19937())
        other.set_state(GLOBAL.get_state())
        state = numpy_state.raw_numpy_state(other)
        assert state is not None
        assert before is not None
        assert state[1] == before[1]
        assert state != before
    finally:
        numpy.random.set_state(saved)


def _a_draw_changes_the_process_state() -> None:
    """A draw from the global generator makes process_state differ; its state set back,
    equal again."""
    before = code_state.process_state()
    saved = numpy.random.get_state()
    try:
        numpy.random.random()
        assert code_state.process_state() != before
    finally:
        numpy.random.set_state(saved)
    assert code_state.process_state() == before


def test_other_generators_are_left_to_get_state() -> None:
    """A Generator, a RandomState over another bit generator: no fast read (None), and
    process_state still sees the global generator's draws."""
    assert numpy_state.raw_numpy_state(numpy.random.default_rng(1)) is None
    assert numpy_state.raw_numpy_state(numpy.random.RandomState(numpy.random.PCG64(1))) is None
    _a_draw_changes_the_process_state()


def test_an_unproven_read_falls_back_to_get_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the proof fails (another layout), the check compares get_state()'s words."""
    monkeypatch.setattr(numpy_state, "_PROOF", [(False, 0, 0)])
    assert numpy_state.raw_numpy_state(GLOBAL) is None
    _a_draw_changes_the_process_state()
