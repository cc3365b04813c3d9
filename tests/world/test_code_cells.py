"""What the hidden-state watch does not look at, seen by :class:`CodeCells` and
:meth:`Watch.blind_to`: closure cells, function attributes, objects no snapshot reads."""

from __future__ import annotations

import types

from pinrun.world.code_cells import CodeCells
from pinrun.world.hidden_state import Watch


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), vars(module))
    return module


def test_a_nonlocal_counter_changes_the_look() -> None:
    """A closure's counter a call advances holds another object after the call."""
    module = _module("cells_counter", """
def _counter():
    seen = 0
    def bump():
        nonlocal seen
        seen += 1
        return seen
    return bump
bump = _counter()
""")
    cells = CodeCells([module])
    before = cells.look()
    assert cells.blind_to(before) is None
    assert cells.same(before, cells.look())
    module.bump()
    assert not cells.same(before, cells.look())


def test_a_closure_over_a_list_is_blind() -> None:
    """A decorator's wrapper closing over a list could change it unseen: it is named."""
    module = _module("cells_list", """
import functools
def counted(func):
    calls = []
    @functools.wraps(func)
    def wrapper(*args):
        calls.append(args)
        return func(*args)
    return wrapper
@counted
def price(n):
    return n * 2
""")
    cells = CodeCells([module])
    assert cells.blind_to(cells.look()) == "cells_list.price (closure: calls)"


def test_function_and_method_attributes_are_looked_at() -> None:
    """A function attribute rebound by a call changes the look; one holding a dict, or a
    method's attribute holding a list, is blind."""
    module = _module("cells_attributes", """
def tally():
    tally.calls += 1
tally.calls = 0
def settings():
    return settings.values
settings.values = {"rate": 2}
class Shop:
    def order(self):
        return 1
Shop.order.history = []
""")
    cells = CodeCells([module])
    before = cells.look()
    module.tally()
    assert not cells.same(before, cells.look())
    assert cells.blind_to(before) == "cells_attributes.settings.values"
    only_method = _module("cells_method", """
class Shop:
    def order(self):
        return 1
Shop.order.history = []
""")
    method_cells = CodeCells([only_method])
    assert method_cells.blind_to(method_cells.look()) == "cells_method.Shop.order.history"


def test_functions_of_other_modules_are_not_looked_at() -> None:
    """An imported function (its module is not one of the watched) is not this module's."""
    module = _module("cells_imports", "from functools import reduce\nimport os.path\n")
    cells = CodeCells([module])
    assert cells.owners == []


def test_a_generator_global_is_blind_to_the_watch() -> None:
    """A module-level generator has no snapshot (its repr shows only an address): the
    watch names it as a place it cannot see into; plain values it sees."""
    module = _module("cells_generator", """
import itertools
TICKETS = (ticket for ticket in itertools.count())
RATES = {"eu": 2}
""")
    watch = Watch([module])
    assert watch.blind_to(watch.look()) == "cells_generator.TICKETS"
    plain = _module("cells_plain", "RATES = {'eu': 2}\nNAME = 'shop'\n")
    plain_watch = Watch([plain])
    assert plain_watch.blind_to(plain_watch.look()) is None
