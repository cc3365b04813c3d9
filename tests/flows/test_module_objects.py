"""Module-level objects in a fingerprint: each rule, and that runtime state never counts."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from pinrun.errors import StepDefinitionError
from pinrun.flows.fingerprint import Fingerprint, fingerprint
from pinrun.flows.pinning import pin_step
from pinrun.flows.step import step
from tests.flows.test_fingerprint import Project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A temporary project root to write and import step modules in."""
    return Project(tmp_path)


def _print(project: Project, steps: str, **files: str) -> Fingerprint:
    return project.fingerprint({"steps.py": textwrap.dedent(steps),
                                **{f"{name}.py": textwrap.dedent(text)
                                   for name, text in files.items()}})


OBJECTS = '''
    import logging, re
    from pathlib import Path
    from zoneinfo import ZoneInfo

    log = logging.getLogger(__name__)
    PATTERN = re.compile(r"a+", re.I)
    ROOT = Path("data")
    ZONE = ZoneInfo("UTC")

    def step(x):
        log.info("x")
        return PATTERN.match(x), ROOT / x, ZONE.key
'''


@pytest.mark.parametrize(("old", "new", "changes"), [
    ("getLogger(__name__)", 'getLogger("other")', False),
    ('r"a+"', 'r"b+"', True),
    ("re.I)", "re.M)", True),
    ('Path("data")', 'Path("other")', True),
    ('ZoneInfo("UTC")', 'ZoneInfo("Europe/Paris")', True),
], ids=["logger-ignored", "pattern", "flags", "path", "zone"])
def test_fixed_objects_count_by_what_identifies_them(project: Project, old: str, new: str,
                                                     changes: bool) -> None:
    """Loggers are ignored; patterns by pattern and flags; paths by text; zones by key."""
    base = _print(project, OBJECTS)
    assert base.state == ()
    assert (_print(project, OBJECTS.replace(old, new)).digest != base.digest) is changes


def test_a_path_counts_by_text_not_by_how_it_was_built(project: Project) -> None:
    """``Path("a") / "b"`` and ``Path("a/b")`` are one path."""
    body = "\n\ndef step():\n    return ROOT\n"
    joined = _print(project, 'from pathlib import Path\nROOT = Path("a") / "b"' + body)
    literal = _print(project, 'from pathlib import Path\nROOT = Path("a/b")' + body)
    assert joined == literal


STATE = '''
    import dataclasses

    @dataclasses.dataclass
    class Counter:
        n: int = 0

    LIMITS = {"a": 1}
    SEEN: list[str] = []
    COUNTER = Counter()

    def step(x):
        SEEN.append(x)
        COUNTER.n += 1
        return LIMITS["a"]
'''


def test_mutable_state_counts_by_definition_not_contents(project: Project) -> None:
    """Filling a cache changes nothing; editing its definition in the source does."""
    with project.loaded({"steps.py": textwrap.dedent(STATE)}) as root:
        module = importlib.import_module("steps")
        before = fingerprint(module.step, root)
        for item in ("x", "y", "z"):
            module.step(item)
        module.LIMITS["b"] = 2
        after = fingerprint(module.step, root)
    assert after == before
    assert before.state == (("steps", "COUNTER"), ("steps", "LIMITS"), ("steps", "SEEN"))
    assert _print(project, STATE).digest == before.digest
    edited = _print(project, STATE.replace('{"a": 1}', '{"a": 2}'))
    assert edited.digest != before.digest
    retyped = _print(project, STATE.replace("SEEN: list[str] = []", "SEEN: set[str] = set()")
                     .replace("SEEN.append", "SEEN.add"))
    assert retyped.digest != before.digest


def test_a_global_rebound_by_a_function_counts_by_definition_alone(project: Project) -> None:
    """``global _client`` lazily set: its type changes at run time, the fingerprint does not."""
    source = '''
        _client = None

        def get():
            global _client
            if _client is None:
                _client = object()
            return _client

        def step():
            return get() is _client
    '''
    with project.loaded({"steps.py": textwrap.dedent(source)}) as root:
        module = importlib.import_module("steps")
        before = fingerprint(module.step, root)
        module.step()
        assert fingerprint(module.step, root) == before
    assert ("steps", "_client") in before.state


def test_state_imported_from_another_module_counts_by_its_own_definition(
        project: Project) -> None:
    """``from cache import SEEN`` counts by SEEN's definition in cache.py."""
    steps = "from cache import SEEN\n\ndef step(x):\n    SEEN.append(x)\n"
    base = _print(project, steps, cache="SEEN = []\n")
    edited = _print(project, steps, cache="SEEN = [1]\n")
    assert edited.digest != base.digest
    assert base.state == (("cache", "SEEN"),)
    assert base.modules == {"steps", "cache"}


def test_objects_count_by_definition_and_type(project: Project) -> None:
    """A client of a project class counts by its construction and by the class's code."""
    client = '''
        class Client:
            def get(self, x):
                return x * 2

        CLIENT = Client()
    '''
    steps = "from client import CLIENT\n\ndef step(x):\n    return CLIENT.get(x)\n"
    base = _print(project, steps, client=client)
    method = _print(project, steps, client=client.replace("x * 2", "x * 3"))
    assert method.digest != base.digest
    assert "client.Client" in base.references


def test_ignore_globals_leaves_names_out(project: Project) -> None:
    """An ignored name's definition does not count; ignoring it is itself in the fingerprint."""
    files = {"steps.py": "import helpers\nclient = object()\n\n"
                         "def step():\n    return client, helpers.POOL\n",
             "helpers.py": "POOL = []\n"}
    edited = {"steps.py": files["steps.py"].replace("object()", "dict()"),
              "helpers.py": "POOL = [1]\n"}
    ignore = ["client", "helpers.POOL"]
    with project.loaded(files) as root:
        base = fingerprint(importlib.import_module("steps").step, root, (), ignore)
        plain = fingerprint(importlib.import_module("steps").step, root)
    with project.loaded(edited) as root:
        after = fingerprint(importlib.import_module("steps").step, root, (), ignore)
    assert after == base
    assert plain.digest != base.digest
    assert base.state == ()


@pytest.mark.parametrize("names", ["client", ["not a name"], [""], [1], ["a..b"]])
def test_ignore_globals_is_checked(names: object) -> None:
    """ignore_globals= takes a list of names or dotted module names, nothing else."""
    with pytest.raises(StepDefinitionError, match="ignore_globals="):
        step(ignore_globals=names)(lambda: None)  # type: ignore[call-overload]  # bad input on purpose


def test_pins_carry_the_state_and_are_not_remade_as_state_changes(project: Project) -> None:
    """A pinned step names its hidden state; filling the cache reuses the cached pin."""
    source = "import pinrun\nSEEN = []\n\n@pinrun.step\ndef remember(x: int) -> dict:\n" \
             "    SEEN.append(x)\n    return {'n': len(SEEN)}\n"
    with project.loaded({"steps.py": source}) as root:
        module = importlib.import_module("steps")
        first = pin_step(module.remember, root)
        module.remember(1)
        assert pin_step(module.remember, root) is first
        assert first.state == (("steps", "SEEN"),)
        setattr(module, "SEEN", [])  # noqa: B010 - rebound: pinned afresh, to the same digest
        again = pin_step(module.remember, root)
        assert again is not first
        assert again.step_digest == first.step_digest
    assert "steps" not in sys.modules


def test_fractions_are_immutable_values() -> None:
    """A Fraction (and a tuple of them, a subclass's) is a scalar, as a Decimal is; a list
    of them is state (fractions is looked up only once it is loaded)."""
    import fractions

    from pinrun.flows.module_objects import is_immutable

    class Ratio(fractions.Fraction):
        pass

    assert is_immutable(fractions.Fraction(1, 3))
    assert is_immutable((fractions.Fraction(1, 3), Ratio(2, 5), frozenset({Ratio(1, 2)})))
    assert not is_immutable([fractions.Fraction(1, 3)])
    assert not is_immutable((fractions.Fraction(1, 3), []))
