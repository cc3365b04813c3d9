"""The names a project module bound to real world-reading functions are stood in for at
every replay, also when bound after an earlier replay without the module growing."""

from __future__ import annotations

import time
import types

from pinrun.world.guards import Guards


def test_a_global_bound_to_the_real_clock_between_two_replays_is_stood_in_for() -> None:
    """``_clock = time.time`` done while no guards were up (a recording, say), with the
    module keeping its size, is swapped for the stand-in at the next replay's guards and
    put back after them."""
    module = types.ModuleType("pinrun_test_lazy_clock")
    names = vars(module)
    names["_clock"] = None
    real = time.time
    with Guards([module], "warn"):
        assert names["_clock"] is None
    names["_clock"] = real  # the same names, one rebound
    with Guards([module], "warn"):
        stand_in = getattr(time, "time")  # noqa: B009 - read now, while the guards are up
        assert stand_in is not real
        assert names["_clock"] is stand_in
    assert names["_clock"] is real
    assert time.time is real


def test_a_clock_patched_between_two_replays_is_stood_in_for_and_put_back() -> None:
    """A test's patch of ``time.time`` (freezegun's kind) made between two guarded blocks:
    the next block's stand-in calls the patch, and the patch is back after it."""
    with Guards([], "warn"):
        pass  # the stand-ins, built for the real clock
    real = time.time

    def frozen() -> float:
        return 42.0

    time.time = frozen
    try:
        with Guards([], "warn"):
            stand_in = getattr(time, "time")  # noqa: B009 - read now, while the guards are up
            assert stand_in is not frozen
            assert stand_in() == 42.0
        assert time.time is frozen
    finally:
        time.time = real
    with Guards([], "warn"):
        assert getattr(time, "time")() != 42.0  # noqa: B009 - the real clock's stand-in
    assert time.time is real
