"""Large flows: levels and dependencies computed in linear time give what the definition
says, and pinning many steps of one module at once pins each as pinning it alone does."""

from __future__ import annotations

import functools
import inspect
import random
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pinrun.errors import FlowDefinitionError, StaleSourceError
from pinrun.flows import Flow, step
from pinrun.flows.code_reading import source_text
from pinrun.flows.pinning import _PINS, pin_step, pin_steps
from pinrun.flows.step import Step
from tests.helpers import Project


def _noop() -> dict[str, int]:
    return {}


def _step(name: str, after: list[str] | None = None) -> Step:
    return step(name=name, after=after, writes=())(_noop)


def _reference_levels(steps: list[Step]) -> list[list[str]]:
    """The definition, computed naively: a step's level is one more than the deepest of
    the steps it runs after (the step before it, unless after=)."""
    depends = {item.name: (item.after if item.after is not None else
                           ([steps[index - 1].name] if index else []))
               for index, item in enumerate(steps)}
    level: dict[str, int] = {}
    while len(level) < len(steps):
        for item in steps:
            if item.name not in level and all(dep in level for dep in depends[item.name]):
                level[item.name] = 1 + max((level[dep] for dep in depends[item.name]),
                                           default=-1)
    return [[item.name for item in steps if level[item.name] == depth]
            for depth in range(max(level.values()) + 1)]


def test_levels_of_random_dags_follow_the_definition() -> None:
    """On random DAGs (steps with and without after=, declared in any order), each level
    holds the steps the definition puts there, in declaration order."""
    rng = random.Random(13)
    for _ in range(40):
        count = rng.randint(1, 60)
        order = [f"s{index}" for index in range(count)]  # s_i may only run after s_j, j < i
        declared = order[:]
        rng.shuffle(declared)
        steps: list[Step] = []
        for name in declared:
            index = int(name[1:])
            after = (sorted(rng.sample(order[:index], rng.randint(0, min(index, 4))))
                     if index and rng.random() < 0.8 else [] if not index else None)
            if after is None and steps and int(steps[-1].name[1:]) > index:
                after = []  # "after the step before it" would point forward: no edge
            steps.append(_step(name, after))
        flow = Flow("dag", steps)
        assert [[item.name for item in level] for level in flow.levels] == \
            _reference_levels(steps)
        for item in steps:
            expected = item.after if item.after is not None else (
                (steps[steps.index(item) - 1].name,) if steps.index(item) else ())
            assert flow.dependencies(item) == tuple(expected)


def test_a_long_chain_declared_backwards_builds() -> None:
    """5,000 steps each running after the one declared next: no recursion limit, and one
    step per level, last declared first."""
    count = 5000
    steps = [_step(f"s{index}", [f"s{index + 1}"] if index + 1 < count else [])
             for index in range(count)]
    flow = Flow("backwards", steps)
    assert [level[0].name for level in flow.levels] == [f"s{i}" for i in reversed(range(count))]
    assert all(len(level) == 1 for level in flow.levels)


def test_definition_errors_name_the_first_culprit() -> None:
    """Duplicates name the first duplicate name in sorted order; cycles name a step on the
    cycle (also a step that runs after itself); unknown dependencies name both steps."""
    with pytest.raises(FlowDefinitionError, match="'b' is used twice"):
        Flow("f", [_step("c"), _step("b"), _step("c"), _step("b")])
    with pytest.raises(FlowDefinitionError, match="cycle through 'a'"):
        Flow("f", [_step("a", ["c"]), _step("b", ["a"]), _step("c", ["b"])])
    with pytest.raises(FlowDefinitionError, match="cycle through 'x'"):
        Flow("f", [_step("start"), _step("x", ["x"])])
    with pytest.raises(FlowDefinitionError, match="'b' runs after 'nope'"):
        Flow("f", [_step("a"), _step("b", ["nope"])])


def _chain_module(count: int) -> str:
    lines = ["import pinrun", "", "SCALE = 2", ""]
    for index in range(count):
        lines += [f"def s{index}(x{index}):", f"    return {{'x{index + 1}': x{index} * SCALE}}",
                  ""]
    lines += [f"flow = pinrun.Flow('chain', [pinrun.step(globals()[f's{{i}}']) "
              f"for i in range({count})])"]
    return "\n".join(lines) + "\n"


def test_pinning_steps_together_pins_each_as_alone(project: Project) -> None:
    """pin_steps gives every step of a 120-step module the pin pin_step gives it alone
    (same step object, same code objects, bytes for bytes)."""
    project.write("chain", _chain_module(120))
    flow = project.load("chain")
    together = pin_steps(flow.steps, project.root)
    assert list(together) == [item.name for item in flow.steps]
    for item in flow.steps:
        together_pin = together[item.name]
        _PINS.pop(item, None)  # pinned afresh, alone
        alone = pin_step(item, project.root)
        assert alone is not together_pin
        assert alone.value == together_pin.value
        assert alone.step_payload == together_pin.step_payload
        assert alone.code_payloads == together_pin.code_payloads
        assert alone.code_digests == together_pin.code_digests
        assert alone.state == together_pin.state
    assert isinstance(_PINS, weakref.WeakKeyDictionary)


def test_pinning_steps_together_still_refuses_an_edited_file(project: Project) -> None:
    """A module edited after import is refused by pin_steps as by pin_step, even when a
    step of it was pinned before (its module read again, not remembered)."""
    path: Path = project.write("chain", _chain_module(20))
    flow = project.load("chain")
    pin_steps(flow.steps[:5], project.root)
    path.write_text(path.read_text().replace("* SCALE", "+ SCALE"))
    with pytest.raises(StaleSourceError, match="changed after it was imported"):
        pin_steps(flow.steps[5:], project.root)


def test_pinning_a_flow_again_reuses_its_kept_pins(project: Project,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow pinned again while its code holds gets the very pins it got, with no shared
    pinning set up; a step whose global changed since is pinned anew, alone among them."""
    from pinrun.flows import pinning

    project.write("chain", _chain_module(6))
    flow = project.load("chain")
    first = pin_steps(flow.steps, project.root)
    real_pin_all = pinning._pin_all

    def refuse(*args: Any) -> Any:
        raise AssertionError("every pin was kept: nothing to pin together")

    monkeypatch.setattr(pinning, "_pin_all", refuse)
    again = pin_steps(tuple(flow.steps), project.root)
    assert all(again[name] is first[name] for name in first)
    monkeypatch.setattr(pinning, "_pin_all", real_pin_all)
    namespace = flow.steps[0].func.__globals__
    namespace["SCALE"] += 1
    changed = pin_steps(iter(flow.steps), project.root)
    assert changed.keys() == first.keys()
    assert all(changed[name] is not first[name] for name in first)
    assert all(changed[name].value["fingerprint"] != first[name].value["fingerprint"]
               for name in first)


def _wrapped(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)
    return wrapper


@_wrapped
def _decorated(n: int) -> int:
    """A decorated function: its source is the decorated one's, decorator line included."""
    return n + 1


async def _coroutine() -> int:
    return 1


def test_source_text_is_what_inspect_getsource_gives() -> None:
    """source_text equals inspect.getsource for every function of several modules
    (methods, nested functions, lambdas, decorated and async functions) and for classes,
    and raises as it does for generated code."""
    from pinrun.flows import code_reading, fingerprint, pinning
    from pinrun.flows import step as step_module

    def nested() -> Callable[[int], int]:
        return lambda n: n * 2

    objects: list[Any] = [_decorated, _coroutine, nested, nested(), _wrapped, Flow, Step,
                          code_reading._LinesFrom, test_source_text_is_what_inspect_getsource_gives]
    for module in (code_reading, fingerprint, pinning, step_module):
        for value in vars(module).values():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                objects.append(value)
            elif inspect.isclass(value) and value.__module__ == module.__name__:
                objects += [value, *(member for member in vars(value).values()
                                     if inspect.isfunction(member))]
    assert len(objects) > 40
    for obj in objects:
        try:
            expected = inspect.getsource(obj)
        except (OSError, TypeError) as exc:  # generated (a dataclass's __init__): no source
            with pytest.raises(type(exc)):
                source_text(obj)
            continue
        assert source_text(obj) == expected, obj
        assert source_text(obj) == expected, obj  # (the second time, as kept)


def test_a_functions_text_is_found_once_per_read_of_its_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked again, source_text gives the text it found without tokenizing the function
    again; once the file changed on disk (read again), it gives the new text."""
    import importlib.util
    import linecache

    path = tmp_path / "shop_texts.py"
    path.write_text("def total(n):\n    return n + 1\n")
    spec = importlib.util.spec_from_file_location("shop_texts", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: list[int] = []
    real = inspect.getblock

    def getblock(lines: Any) -> Any:
        found.append(1)
        return real(lines)

    monkeypatch.setattr(inspect, "getblock", getblock)
    assert source_text(module.total) == "def total(n):\n    return n + 1\n"
    assert source_text(module.total) == "def total(n):\n    return n + 1\n"
    assert len(found) == 1
    path.write_text("def total(n):\n    return n + 2  # changed on disk\n")
    linecache.checkcache(str(path))
    assert source_text(module.total) == "def total(n):\n    return n + 2  # changed on disk\n"
    assert len(found) == 2
