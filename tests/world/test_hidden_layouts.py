"""A hidden-state layout dropped from the per-process map leaves no reference cycle: the
collector must never be what frees it (a worker would pay a full collection for it)."""

from __future__ import annotations

import gc
import types

from pinrun.world import hidden_state
from pinrun.world.hidden_state import Watch


def test_a_dropped_layout_is_freed_without_the_collector() -> None:
    """Layouts made for a module that lives on, then dropped (the map cleared, as when it
    is full, or the places forgotten): nothing of pinrun's is left for the collector."""
    module = types.ModuleType("layouts_probe")
    exec("RATES = {'eu': 2}\nNAMES = ['a']\n", vars(module))
    Watch([module]).look()
    assert any(layout.modules and layout.modules[0]() is module
               for layout in hidden_state._LAYOUTS.values())
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        hidden_state._LAYOUTS.clear()
        Watch([module]).look()
        hidden_state.forget_places([module])
        gc.collect()
        garbage = [type(item).__qualname__ for item in gc.garbage
                   if type(item).__module__.startswith("pinrun")]
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    assert garbage == []
    assert module.RATES == {'eu': 2}  # alive to the end: its layouts went first
