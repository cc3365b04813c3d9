"""The world's C speedups: the audit hook's gate, and reads made without audit events.

Python calls every audit hook for every audit event in the process, and raises one
for each ``id()`` and each read of a function's ``__code__``: pinrun's hook, once
installed, must cost next to nothing for the events it does not watch, and the
walk of the kept code's check must not raise dozens of them.
"""

from __future__ import annotations

import copy
import sys
import types
from typing import Any

import pytest

from pinrun.world import _speedups, calls, refusal
from pinrun.world._speedups import Gate, address, function_parts, object_bytes


def test_the_gate_calls_its_handler_only_for_watched_events() -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    watched: dict[str, object] = {"socket.connect": object()}
    others: dict[str, object] = {}
    gate = Gate(watched, others, lambda event, args: seen.append((event, args)))
    gate("builtins.id", (1,))
    gate("socket.connec", ())  # same first letter, another length
    gate("socket.connect", ("a", 1))
    assert seen == [("socket.connect", ("a", 1))]
    # A name added to a dict later is watched from then on (the sieve is made again).
    others["open"] = object()
    gate("open", ("f",))
    gate("os.listdir", ())
    assert [event for event, _ in seen] == ["socket.connect", "open"]


def test_the_gate_passes_names_it_cannot_sieve_to_the_handler() -> None:
    seen: list[str] = []
    gate = Gate({"é.event": 1}, {}, lambda event, args: seen.append(event))
    gate("é.event", ())
    gate("ü", ())  # looked up (no match): the handler is not called
    gate("builtins.id", ())
    assert seen == ["é.event"]
    assert Gate({}, {}, lambda event, args: seen.append("odd"))(3, ()) is None  # type: ignore[arg-type]
    assert seen[-1] == "odd"  # not a str: the handler decides


def test_the_gate_raises_what_its_handler_raises() -> None:
    def refuse(event: str, args: tuple[Any, ...]) -> None:
        raise PermissionError(event)

    with pytest.raises(PermissionError, match=r"subprocess\.Popen"):
        Gate({"subprocess.Popen": 1}, {}, refuse)("subprocess.Popen", ())
    with pytest.raises(TypeError):
        Gate({}, {}, refuse)("one")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Gate({}, {}, "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        copy.copy(Gate({}, {}, refuse))


def test_the_installed_hook_is_the_gate_over_the_world_handler() -> None:
    """The world's hook is a gate over its handler and the live dicts of the events it
    watches (``watch_events`` adds to the second one)."""
    refusal._install_hook()
    hook = refusal._HOOK[0]
    assert isinstance(hook, Gate)
    assert hook.handler is refusal._audit
    assert hook.watched is calls.EVENTS
    assert hook.others is refusal._OTHER_EVENTS
    assert "subprocess.Popen" in hook.watched
    assert "builtins.id" not in hook.watched


def test_address_is_id() -> None:
    for value in (object(), [], "text", 12345678901234567890, None, sys):
        assert address(value) == id(value)


def test_object_bytes_reads_what_ctypes_reads_and_only_within_the_object() -> None:
    import ctypes
    import random

    generator = random.Random(3)
    size = type(generator).__basicsize__ - object.__basicsize__
    assert object_bytes(generator, object.__basicsize__, size) == ctypes.string_at(
        id(generator) + object.__basicsize__, size)
    for offset, count in ((0, 8), (object.__basicsize__, size + 1), (-8, 8),
                          (object.__basicsize__, -1), (type(generator).__basicsize__ + 8, 0)):
        with pytest.raises(ValueError, match="within the object"):
            object_bytes(generator, offset, count)
    # Objects allocated smaller than their type's basic size (a short str, a type), or
    # with per-item storage (an int): refused whatever the offset.
    for value in ("ab", int, 7, (1, 2)):
        with pytest.raises(ValueError, match="within the object"):
            object_bytes(value, object.__basicsize__, 8)


def _plain() -> int:
    return 1


def test_function_parts_are_the_attributes_python_reads() -> None:
    tally = 0

    def counted(step: str, *, times: int = 2) -> int:
        return tally + times

    counted.note = "kept"  # type: ignore[attr-defined]
    made = types.FunctionType(_plain.__code__, {"__name__": "elsewhere"})
    functions: list[types.FunctionType] = [counted, _plain, made, lambda x=[1]: x]  # type: ignore[list-item]
    for func in functions:
        parts = function_parts(func)
        assert parts[0] is func.__globals__
        assert parts[1] is func.__code__
        assert parts[2] is func.__defaults__
        assert parts[3] is func.__kwdefaults__
        assert parts[4] is func.__closure__
        assert parts[5] is None or parts[5] is func.__dict__
        assert (parts[5] or {}) == func.__dict__
    with pytest.raises(TypeError):
        function_parts(len)  # type: ignore[arg-type]


def test_the_speedups_module_was_built() -> None:
    """CI builds them (a compiler is there): their absence would hide a broken build."""
    assert _speedups.__file__ is not None
    assert not _speedups.__file__.endswith(".py")


def test_all_hold_is_true_only_when_every_place_holds_its_object() -> None:
    """A dict's or a class view's name holds its object (by identity); a missing name,
    an equal but other object, or one place of many that changed does not hold."""
    from pinrun.world._speedups import all_hold

    class Owner:
        method = staticmethod(len)

    space = {"a": [1], "b": "text"}
    names, objects = ("a", "b", "method"), (space["a"], space["b"], Owner.__dict__["method"])
    spaces = (space, space, vars(Owner))
    assert all_hold(spaces, names, objects)
    assert all_hold((), (), ())
    assert not all_hold(spaces, names, ([1], space["b"], objects[2]))  # equal, not the same
    assert not all_hold((space,), ("missing",), (None,))
    assert not all_hold((vars(Owner),), ("missing",), (None,))
    with pytest.raises(TypeError):
        all_hold((space,), ("a", "b"), (1,))
    with pytest.raises(TypeError):
        all_hold([space], ["a"], [space["a"]])  # type: ignore[arg-type]


def test_the_guards_see_a_stand_in_place_changed_with_and_without_c(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The guards rebuild their stand-ins when a module no longer holds the real object
    they were built for (a test's monkeypatch): the C check and the Python one agree."""
    import time

    from pinrun.world import guards

    built = guards._stand_ins()
    for compiled in (guards._all_hold, None):
        monkeypatch.setattr(guards, "_all_hold", compiled)
        assert built.holds()
        with monkeypatch.context() as patched:
            patched.setattr(time, "time", lambda: 0.0)
            assert not built.holds()
        assert built.holds()
