"""pinrun's data classes behave as ``dataclasses.dataclass`` makes them."""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import field
from typing import Any

import pytest

from pinrun.data_classes import data_class


def _pair(**options: Any) -> tuple[type, type]:
    """The same class body, made by dataclasses and by data_class."""

    def body(decorate: Any) -> type:
        @decorate
        class Item:
            name: str
            price: float = 0.0
            tags: list[str] = field(default_factory=list, compare=False)
            note: str = field(default="", repr=False)
            weight: int = field(default=0, hash=False)

        return Item

    return body(dataclasses.dataclass(**options)), body(data_class(**options))


@pytest.mark.parametrize("options", [{}, {"frozen": True}, {"frozen": True, "eq": False},
                                     {"eq": False}, {"repr": False}, {"frozen": True,
                                                                      "slots": True}])
def test_methods_answer_as_the_generated_ones(options: dict[str, Any]) -> None:
    """Equality, hash, repr, freezing and fields are dataclasses' own answers."""
    theirs, ours = _pair(**options)
    for cls in (theirs, ours):
        assert [f.name for f in dataclasses.fields(cls)] == ["name", "price", "tags", "note",
                                                            "weight"]
    made = [(cls("a", 1.5, ["x"], "n", 3), cls("a", 1.5, ["y"], "m", 4), cls("b"),
             cls("a", math.nan)) for cls in (theirs, ours)]
    for (a, b, c, d), (e, f, g, h) in [made]:
        same_a, same_d, same_e, same_h = a, d, e, h
        assert (a == b, a == c, a == same_a, d == same_d, a != b) == \
            (e == f, e == g, e == same_e, h == same_h, e != f)
        assert (a == "a") == (e == "a")
        if options.get("repr", True):
            assert repr(a) == repr(e)
        assert (theirs.__hash__ is None) == (ours.__hash__ is None)
        if theirs.__hash__ is not None and options.get("eq", True):
            assert (hash(a), hash(d)) == (hash(e), hash(h))
        if options.get("frozen"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                e.name = "z"
            assert getattr(theirs, "__dataclass_params__").frozen  # noqa: B009 (not typed)
            assert getattr(ours, "__dataclass_params__").frozen  # noqa: B009
        assert dataclasses.replace(e, name="q").name == "q"
        assert copy.deepcopy(e) == e or not options.get("eq", True)
        assert dataclasses.asdict(e) == dataclasses.asdict(a)


def test_methods_the_body_defines_are_kept() -> None:
    """A body's own __eq__, __hash__ and __repr__ stay, as with dataclasses; a body with
    __eq__ alone is unhashable unless frozen."""

    @data_class(frozen=True)
    class Own:
        size: int

        def __repr__(self) -> str:
            return "own"

        def __hash__(self) -> int:
            return 7

    assert (repr(Own(1)), hash(Own(1)), Own(1) == Own(1), Own(1) == Own(2)) == \
        ("own", 7, True, False)

    @data_class
    class Mutable:
        size: int

    assert getattr(Mutable, "__hash__") is None  # noqa: B009 (mypy: it is a method)

    @data_class
    class Equal:  # noqa: PLW1641 (dataclasses makes it unhashable: what is checked)
        size: int

        def __eq__(self, other: object) -> bool:
            return True

    assert Equal(1) == Equal(2)
    assert getattr(Equal, "__hash__") is None  # noqa: B009 (mypy: it is a method)


def test_a_repr_that_meets_itself_shows_dots() -> None:
    """An object inside itself is shown as ..., as dataclasses shows it."""

    @data_class
    class Node:
        items: list[Any]

    node = Node([])
    node.items.append(node)
    assert repr(node) == "test_a_repr_that_meets_itself_shows_dots.<locals>.Node(items=[...])"


def _frozen_pair() -> tuple[type, type]:
    """A frozen class made by dataclasses and by data_class, each with a plain subclass."""

    def body(decorate: Any) -> type:
        @decorate
        class Point:
            x: int
            y: int = 0
            label: str = field(default="", compare=False)

        return Point

    return body(dataclasses.dataclass(frozen=True)), body(data_class(frozen=True))


def _outcome(action: Any) -> tuple[str, str]:
    try:
        action()
    except Exception as exc:  # what each raises is what is compared
        return type(exc).__name__, str(exc)
    return "ok", ""


def test_frozen_setattr_and_delattr_answer_as_the_generated_ones() -> None:
    """A frozen data class's __setattr__ and __delattr__ are shared closures, not
    compiled, and raise or pass on exactly as dataclasses' generated ones."""
    theirs, ours = _frozen_pair()
    if sys.version_info < (3, 13):  # where dataclasses' maker is the one replaced
        for name in ("__setattr__", "__delattr__"):
            # The generated ones are compiled from text ("<string>"); these are closures.
            assert getattr(ours, name).__code__.co_filename.endswith("data_classes.py")
            assert getattr(theirs, name).__code__.co_filename == "<string>"
    for name in ("__setattr__", "__delattr__"):
        assert getattr(ours, name).__qualname__ == f"{ours.__qualname__}.{name}"
        assert getattr(ours, name).__name__ == name
        assert getattr(ours, name).__module__ == ours.__module__
    maker = getattr(dataclasses, "_frozen_get_del_attr", None)  # private: not typed
    assert maker is None or maker.__module__ == "dataclasses"  # its own, back after the call

    def outcomes(cls: type) -> list[tuple[str, str]]:
        sub = type("Sub", (cls,), {})  # a plain subclass: its own names may be set
        point, child = cls(1, 2), sub(1, 2)
        found = []
        for target in (point, child):
            for name in ("x", "label", "other"):
                found.append(_outcome(lambda t=target, n=name: setattr(t, n, 5)))
                found.append(_outcome(lambda t=target, n=name: delattr(t, n)))
        found.append((repr(vars(child)), ""))
        return found

    assert outcomes(ours) == outcomes(theirs)
    assert ("FrozenInstanceError", "cannot assign to field 'x'") in outcomes(ours)


def test_frozen_inheritance_checks_hold() -> None:
    """dataclasses' checks between frozen and unfrozen classes hold for data_class."""
    _, base = _frozen_pair()

    @data_class(frozen=True)
    class Labelled(base):  # type: ignore[valid-type,misc]  # a class made at run time
        extra: int = 0

    item = Labelled(1, extra=2)
    assert (item.x, item.extra) == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'extra'"):
        item.extra = 3  # type: ignore[misc]  # frozen: what is checked
    with pytest.raises(TypeError, match="non-frozen"):
        @data_class
        class Thawed(base):  # type: ignore[valid-type,misc]
            more: int = 0


def test_an_init_whose_text_pinrun_compiled_is_not_compiled_again() -> None:
    """A class whose __init__ text is in pinrun._data_class_code gets that compiled code,
    run as dataclasses runs its own: the class's module, annotations, own defaults."""

    def body(decorate: Any) -> type:
        @decorate
        class Scope:  # the fields (names, no defaults) of a pinrun.flows.fingerprint class
            bindings: dict[str, Any]
            cells: dict[str, Any]
            values: tuple[Any, ...]

        return Scope

    theirs, ours = body(dataclasses.dataclass(frozen=True)), body(data_class(frozen=True))
    init, own = vars(ours)["__init__"], vars(theirs)["__init__"]
    if sys.version_info < (3, 12):  # where dataclasses' text is the one pinrun compiled
        assert init.__code__.co_filename.endswith("_data_class_code.py")
    assert own.__code__.co_filename == "<string>"
    assert (init.__module__, init.__qualname__, init.__globals__ is globals()) == \
        (__name__, f"{ours.__qualname__}.__init__", True)
    assert init.__annotations__ == own.__annotations__
    assert init.__code__.co_code == own.__code__.co_code
    item = ours({"a": 1}, {}, values=(2,))
    assert (item.bindings, item.cells, item.values) == ({"a": 1}, {}, (2,))
    with pytest.raises(TypeError) as ours_error:
        ours({})
    with pytest.raises(TypeError) as their_error:
        theirs({})
    assert str(ours_error.value) == str(their_error.value)


def test_an_init_with_defaults_takes_the_class_own() -> None:
    """Defaults and default factories are the class's, not those of the pinrun class
    whose __init__ text it shares."""
    _, ours = _pair(frozen=True)
    made = ours("a")
    assert (made.price, made.tags, made.note, made.weight) == (0.0, [], "", 0)
    assert made.tags is not ours("b").tags


@pytest.mark.skipif(sys.version_info >= (3, 12),
                    reason="the table holds 3.11's texts (CI runs 3.11); elsewhere a text "
                           "not in it is compiled as before, which costs speed only")
def test_every_pinrun_data_class_init_is_compiled_ahead() -> None:
    """pinrun._data_class_code holds the __init__ text of every data class pinrun makes
    (else: python -m tests.data_class_code), each compiled from that very text."""
    from pinrun import _data_class_code
    from tests.data_class_code import gathered

    missing = [text.split("\n")[1] for text in gathered() if text not in _data_class_code.MADE]
    assert missing == [], "run python -m tests.data_class_code"
    for text, function in _data_class_code.MADE.items():
        space: dict[str, Any] = {}
        # As dataclasses compiles it: without this module's __future__ annotations.
        exec(compile(text, "<string>", "exec", dont_inherit=True), {}, space)
        assert _same_code(space["__create_fn__"].__code__, function.__code__), text


def _same_code(one: Any, other: Any) -> bool:
    """Whether two code objects are the same but for where they were compiled."""
    if (one.co_code, one.co_names, one.co_varnames, one.co_freevars, one.co_cellvars) != \
            (other.co_code, other.co_names, other.co_varnames, other.co_freevars,
             other.co_cellvars):
        return False
    if len(one.co_consts) != len(other.co_consts):
        return False
    return all(_same_code(a, b) if hasattr(a, "co_code") else a == b and type(a) is type(b)
               for a, b in zip(one.co_consts, other.co_consts, strict=True))
