"""The code fingerprint: which edits change it, which do not, and what it refuses.

Most tests write a small project into a temporary folder (the project root)
and import it. An "edit" imports each variant from a fresh folder under the
same module names, so between two variants only the code differs. The
fixture package ``tests/flows/fpfixtures`` holds steps for the constructs
that need no editing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import blake3
import pytest

from pinrun.errors import FingerprintError, InputError
from pinrun.flows.fingerprint import (
    Fingerprint,
    fingerprint,
    is_project_local,
    normalized_source_tree,
)
from tests.flows.fpfixtures import helpers, steps
from tests.helpers import SRC

FIXTURES = Path(steps.__file__).parent
STEPS = "tests.flows.fpfixtures.steps"
HELPERS = "tests.flows.fpfixtures.helpers"


class Project:
    """Writes small projects as text and imports them, each variant from its own folder."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0

    @contextlib.contextmanager
    def loaded(self, files: Mapping[str, str]) -> Iterator[Path]:
        """Write ``files`` (path -> source) into a fresh root on sys.path; unload afterwards."""
        self.count += 1
        root = self.base / f"variant{self.count}"
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
        try:
            yield root
        finally:
            sys.path.remove(str(root))
            for name, module in list(sys.modules.items()):
                file = getattr(module, "__file__", None)
                if isinstance(file, str) and Path(file).is_relative_to(root):
                    del sys.modules[name]

    def fingerprint(self, files: Mapping[str, str], step: str = "steps.step",
                    hash_includes: Sequence[object] = ()) -> Fingerprint:
        """Load ``files`` and fingerprint ``step`` (``module.attribute``) with the root."""
        module_name, _, attribute = step.rpartition(".")
        with self.loaded(files) as root:
            module = importlib.import_module(module_name)
            return fingerprint(getattr(module, attribute), root, hash_includes)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A temporary project root to write and import step modules in."""
    return Project(tmp_path)


# ------------------------------------------------------------- edits

BASE = '''
    def register(**options):
        return lambda func: func

    RATE = 0.2

    @register(name="price")
    def step(amount, quantity=1):
        """Price one order line."""
        total = amount * quantity
        return {"total": round(total * (1 + RATE), 2), "currency": "EUR"}
'''

SAME_CODE = {
    "comments": '''
        def register(**options):
            return lambda func: func

        RATE = 0.2  # the tax rate

        @register(name="price")
        def step(amount, quantity=1):
            """Price one order line."""
            # the line total before tax
            total = amount * quantity  # no discount yet
            return {"total": round(total * (1 + RATE), 2), "currency": "EUR"}
    ''',
    "layout-and-quotes": """
        def register(**options):
            return lambda func: func
        RATE = 0.2
        @register(name = 'price')
        def step(
            amount,
            quantity = 1,
        ):
            '''Price one order line.'''
            total = (amount *
                     quantity)
            return {
                'total': round(total * (1 + RATE), 2),
                "currency": u"EU" "R",
            }
    """,
    "docstring-changed": BASE.replace("Price one order line.", "Price a line, tax included."),
    "docstring-removed": BASE.replace('        """Price one order line."""\n', ""),
    "decorator-options": BASE.replace('name="price"', 'name="pricing", retries=3'),
}

OTHER_CODE = {
    "operator": BASE.replace("amount * quantity", "amount + quantity"),
    "constant": BASE.replace(", 2)", ", 3)"),
    "int-to-float": BASE.replace("(1 + RATE)", "(1.0 + RATE)"),
    "int-to-bool": BASE.replace("quantity=1", "quantity=True"),
    "called-name": BASE.replace("round(", "max("),
    "default": BASE.replace("quantity=1", "quantity=2"),
    "string": BASE.replace('"EUR"', '"USD"'),
}


@pytest.mark.parametrize("edited", SAME_CODE.values(), ids=SAME_CODE.keys())
def test_comments_layout_and_docstrings_keep_the_fingerprint(project: Project,
                                                             edited: str) -> None:
    """Comments, line breaks, spacing, quote style, docstrings and decorators change nothing."""
    assert edited != BASE
    assert project.fingerprint({"steps.py": edited}) == project.fingerprint({"steps.py": BASE})


@pytest.mark.parametrize("edited", OTHER_CODE.values(), ids=OTHER_CODE.keys())
def test_logic_edits_change_the_fingerprint(project: Project, edited: str) -> None:
    """An operator, a constant (or its type), a called name or a default changes it."""
    assert edited != BASE
    before = project.fingerprint({"steps.py": BASE})
    assert project.fingerprint({"steps.py": edited}).digest != before.digest


def test_digest_is_64_lowercase_hex_and_names_the_module(project: Project) -> None:
    """The digest is BLAKE3-256 hex; the step's own module is listed."""
    found = project.fingerprint({"steps.py": BASE})
    assert re.fullmatch(r"[0-9a-f]{64}", found.digest)
    assert found.modules == frozenset({"steps"})
    assert found.references == ()


def test_async_and_sync_steps_differ(project: Project) -> None:
    """An async def is fingerprinted, and differs from the same body as a plain def."""
    plain = project.fingerprint({"steps.py": "def step(x):\n    return x\n"})
    asynchronous = project.fingerprint({"steps.py": "async def step(x):\n    return x\n"})
    assert plain.digest != asynchronous.digest
    assert fingerprint(steps.fetch_total, FIXTURES).modules == {STEPS}


# ------------------------------------------------------ other modules

HELPER = "RATE = 0.2\n\ndef net(x):\n    return x * (1 - RATE)\n"
CALLERS = {
    "from-import": {"steps.py": "from helpers import net\n\ndef step(x):\n    return net(x)\n"},
    "module-attribute": {"steps.py": "import helpers\n\ndef step(x):\n    return helpers.net(x)\n"},
    "package-chain": {
        "steps.py": "import pkg.sub.helpers\n\ndef step(x):\n    return pkg.sub.helpers.net(x)\n",
        "pkg/__init__.py": "", "pkg/sub/__init__.py": "",
    },
}


def _with_helper(caller: Mapping[str, str], helper_source: str) -> dict[str, str]:
    path = "pkg/sub/helpers.py" if "pkg/__init__.py" in caller else "helpers.py"
    return {**caller, path: helper_source}


@pytest.mark.parametrize("caller", CALLERS.values(), ids=CALLERS.keys())
def test_editing_a_helper_in_another_module_changes_it(project: Project,
                                                       caller: dict[str, str]) -> None:
    """A helper's logic counts, whether imported by name or reached through its module."""
    base = project.fingerprint(_with_helper(caller, HELPER))
    logic = project.fingerprint(_with_helper(caller, HELPER.replace("1 - RATE", "1 + RATE")))
    comment = project.fingerprint(_with_helper(caller, "# helpers\n" + HELPER))
    constant = project.fingerprint(_with_helper(caller, HELPER.replace("0.2", "0.25")))
    assert logic.digest != base.digest
    assert constant.digest != base.digest
    assert comment == base
    helper_module = "pkg.sub.helpers" if "pkg/__init__.py" in caller else "helpers"
    assert f"{helper_module}.net" in base.references
    assert {"steps", helper_module} <= base.modules


def test_editing_a_class_the_step_uses_changes_it(project: Project) -> None:
    """A project class counts with its whole body: editing a method changes the step."""
    helper = "class Pricer:\n    def price(self, x):\n        return x * 2\n"
    step = "from helpers import Pricer\n\ndef step(x):\n    return Pricer().price(x)\n"
    base = project.fingerprint({"steps.py": step, "helpers.py": helper})
    edited = project.fingerprint({"steps.py": step, "helpers.py": helper.replace("2", "3")})
    assert edited.digest != base.digest
    assert base.references == ("helpers.Pricer",)
    uses_class = fingerprint(steps.uses_class, FIXTURES)
    assert uses_class.references == (f"{HELPERS}.Money",)


CONSTANTS = """
    RATE = 0.2
    COUNT = 1
    OTHER = 1
    SETTINGS = {"currency": "EUR", "digits": 2}
    TAGS = frozenset({"a", "b"})

    def step(x):
        return x * RATE * COUNT, SETTINGS["currency"], TAGS
"""


@pytest.mark.parametrize(("old", "new", "changes"), [
    ("RATE = 0.2", "RATE = 0.3", True),
    ("COUNT = 1", "COUNT = 1.0", True),
    ("COUNT = 1", "COUNT = True", True),
    ('"EUR"', '"USD"', True),
    ('{"a", "b"}', '{"a", "c"}', True),
    # A dict counts by its definition: its iteration order is part of what it is.
    ('{"currency": "EUR", "digits": 2}', '{"digits": 2, "currency": "EUR"}', True),
    ("OTHER = 1", "OTHER = 2", False),
    ("OTHER = 1", "OTHER = object()", False),
], ids=["float", "int-to-float", "int-to-bool", "dict", "frozenset", "dict-order", "unread",
        "unread-object"])
def test_module_constants_count_only_when_read(project: Project, old: str, new: str,
                                               changes: bool) -> None:
    """A module constant the step reads is part of it (by value); one it does not read is not."""
    base = project.fingerprint({"steps.py": CONSTANTS})
    edited = project.fingerprint({"steps.py": CONSTANTS.replace(old, new)})
    assert (edited.digest != base.digest) is changes


def test_constant_read_through_a_module_counts(project: Project) -> None:
    """``helpers.RATE`` read through a project module is a constant the step reads."""
    step = "import helpers\n\ndef step(x):\n    return x * helpers.RATE\n"
    base = project.fingerprint({"steps.py": step, "helpers.py": "RATE = 0.2\n"})
    edited = project.fingerprint({"steps.py": step, "helpers.py": "RATE = 0.5\n"})
    assert edited.digest != base.digest
    assert base.modules == {"steps", "helpers"}


def test_a_project_value_brings_its_class(project: Project) -> None:
    """A global dataclass instance counts by value, and its class's methods count as code."""
    helper = textwrap.dedent("""
        import dataclasses

        @dataclasses.dataclass(frozen=True)
        class Settings:
            rate: float

            def scaled(self, x):
                return x * self.rate

        SETTINGS = Settings(0.5)
    """)
    step = "from helpers import SETTINGS\n\ndef step(x):\n    return SETTINGS.scaled(x)\n"
    base = project.fingerprint({"steps.py": step, "helpers.py": helper})
    value = project.fingerprint({"steps.py": step,
                                 "helpers.py": helper.replace("(0.5)", "(0.7)")})
    method = project.fingerprint({"steps.py": step,
                                  "helpers.py": helper.replace("x * self", "x / self")})
    assert len({base.digest, value.digest, method.digest}) == 3
    assert base.references == ("helpers.Settings",)


def test_closure_values_count() -> None:
    """Two steps made by one factory differ by the value they close over."""
    two = fingerprint(steps.scale_by_two, FIXTURES)
    three = fingerprint(steps.scale_by_three, FIXTURES)
    assert two.digest != three.digest
    assert two == fingerprint(steps.make_scaler(2), FIXTURES)


# --------------------------------------------------- what is refused

def test_module_level_objects_count_by_their_definition(project: Project) -> None:
    """A client object, a lock or a partial is no longer refused: its definition counts."""
    files = {"steps.py": "client = object()\n\ndef step(x):\n    return client, x\n"}
    base = project.fingerprint(files)
    assert base.state == ()  # an object() cannot be encoded: no hidden state to compare
    edited = project.fingerprint({"steps.py": files["steps.py"].replace("object()",
                                                                        "object(  )  # same")})
    assert edited == base
    other = project.fingerprint({"steps.py": files["steps.py"].replace("object()", "dict()")})
    assert other.digest != base.digest
    helper = {"steps.py": "from helpers import fetch\n\ndef step(x):\n    return fetch(x)\n",
              "helpers.py": "import threading\nlock = threading.Lock()\n\n"
                            "def fetch(x):\n    with lock:\n        return x\n"}
    locked = project.fingerprint(helper)
    assert locked.modules == {"steps", "helpers"}
    relocked = project.fingerprint({**helper, "helpers.py": helper["helpers.py"].replace(
        "threading.Lock()", "threading.RLock()")})
    assert relocked.digest != locked.digest
    assert len(fingerprint(steps.calls_lock_user, FIXTURES).digest) == 64
    assert len(fingerprint(steps.uses_partial, FIXTURES).digest) == 64


def test_a_step_bound_to_an_object_is_refused_with_advice() -> None:
    """A step bound to an instance that is not a value cannot be identified: say what to do."""
    with pytest.raises(FingerprintError, match="is bound to an object") as caught:
        fingerprint(steps.Pricer().price, FIXTURES)
    assert isinstance(caught.value, InputError)
    assert "version=" in str(caught.value)


def test_attribute_names_and_unbound_names_are_not_globals(project: Project) -> None:
    """co_names also holds attribute names: ``obj.client`` does not read a global ``client``."""
    files = {"steps.py": "client = object()\n\n"
                         "def step(obj):\n    return obj.client, obj.not_bound_anywhere\n"}
    assert project.fingerprint(files).references == ()


def test_class_attributes_are_not_globals(project: Project) -> None:
    """A name a class body assigns is a class attribute, even if a global has that name."""
    files = {"steps.py": textwrap.dedent("""
        client = object()

        class Api:
            client = "https://example.invalid"

            def url(self):
                return self.client

        def step():
            return Api().url()
    """)}
    assert project.fingerprint(files).references == ("steps.Api",)


def test_an_object_read_through_a_project_module(project: Project) -> None:
    """``helpers.client`` read through a project module counts by its definition there."""
    files = {"steps.py": "import helpers\n\ndef step():\n    return helpers.client\n",
             "helpers.py": "import types\nclient = types.SimpleNamespace()\n"}
    base = project.fingerprint(files)
    edited = project.fingerprint({**files, "helpers.py": files["helpers.py"] + "client.x = 1\n"})
    assert base.modules == {"steps", "helpers"}
    assert edited.digest != base.digest


def test_code_without_source_is_refused(project: Project) -> None:
    """A function with no source file (made by exec) cannot be fingerprinted."""
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec("def step(x):\n    return x\n", namespace)
    with pytest.raises(FingerprintError, match="source code is not available") as caught:
        fingerprint(namespace["step"], project.base)
    assert caught.value.global_name is None
    with pytest.raises(FingerprintError, match="not a Python function"):
        fingerprint(len, project.base)


# ------------------------------------------- the environment, by name

def test_stdlib_and_installed_code_is_named_not_read() -> None:
    """json, math and blake3 are included by name only, and do not fail."""
    found = fingerprint(steps.uses_stdlib, FIXTURES)
    assert found.references == ()
    assert found.modules == {STEPS}


def test_the_name_of_an_environment_function_counts(project: Project) -> None:
    """Importing ``sqrt`` from cmath instead of math changes the step."""
    body = "\n\ndef step(x):\n    return sqrt(x)\n"
    real = project.fingerprint({"steps.py": "from math import sqrt" + body})
    complex_ = project.fingerprint({"steps.py": "from cmath import sqrt" + body})
    assert real.digest != complex_.digest


def test_named_callables_and_type_aliases_are_named(project: Project) -> None:
    """A numpy ufunc and a typing alias are included by name, not refused."""
    files = {"steps.py": textwrap.dedent("""
        from typing import Optional, cast
        from numpy import sqrt

        Items = list[dict[str, int]]
        MaybeInt = Optional[int]

        def step(x):
            return sqrt(x), cast(Items, x), cast(MaybeInt, x)
    """)}
    assert project.fingerprint(files).references == ()
    other = project.fingerprint({"steps.py": files["steps.py"].replace("str, int", "str, str")})
    assert other.digest != project.fingerprint(files).digest


# ------------------------------------------------ recursion and shapes

def test_mutual_recursion_terminates_and_is_stable() -> None:
    """Two project functions that call each other are folded in once each, stably."""
    first = fingerprint(steps.parity, FIXTURES)
    assert first.references == (f"{HELPERS}.is_even", f"{HELPERS}.is_odd")
    assert fingerprint(steps.parity, FIXTURES) == first
    assert fingerprint(helpers.is_even, FIXTURES).references == (f"{HELPERS}.is_odd",)
    assert fingerprint(steps.recursive, FIXTURES).references == ()


def test_methods_nested_functions_lambdas_and_wrapped_helpers() -> None:
    """Methods, static methods, nested functions, lambdas and cached helpers are followed."""
    net = (f"{HELPERS}.net",)
    assert fingerprint(steps.Pricer.price, FIXTURES).references == net
    assert fingerprint(steps.Pricer.static_price, FIXTURES).references == net
    assert fingerprint(steps.uses_nested, FIXTURES).references == net
    assert fingerprint(steps.uses_lambda, FIXTURES).references == (f"{STEPS}.<lambda>",)
    assert fingerprint(steps.uses_cached, FIXTURES).references == (f"{HELPERS}.cached_square",)
    assert fingerprint(steps.uses_enum, FIXTURES).references == (f"{HELPERS}.Color",)


def test_pinrun_steps_stand_for_their_functions() -> None:
    """A Step object is fingerprinted as its function, as the step or as a global it calls."""
    assert fingerprint(steps.net_price, FIXTURES) == fingerprint(steps.net_price.func, FIXTURES)
    assert fingerprint(steps.calls_step, FIXTURES).references == (f"{HELPERS}.net",
                                                                  f"{STEPS}.net_price")


def test_editing_a_module_level_lambda_changes_it(project: Project) -> None:
    """A lambda bound to a global is fingerprinted from its source line."""
    step = "\n\ndef step(x):\n    return double(x)\n"
    base = project.fingerprint({"steps.py": "double = lambda x: x * 2" + step})
    edited = project.fingerprint({"steps.py": "double = lambda x: x * 3" + step})
    assert edited.digest != base.digest


def test_hash_includes_are_folded_in(project: Project) -> None:
    """Extra values change the digest; a project module counts with its whole source."""
    files = {"steps.py": "def step(x):\n    return x\n", "data.py": "def unused():\n    pass\n"}
    plain = project.fingerprint(files)
    assert project.fingerprint(files, hash_includes=[]) == plain
    v1 = project.fingerprint(files, hash_includes=["model-v1", json.dumps])
    v2 = project.fingerprint(files, hash_includes=["model-v2", json.dumps])
    assert len({plain.digest, v1.digest, v2.digest}) == 3
    with project.loaded(files) as root:
        data = importlib.import_module("data")
        with_module = fingerprint(importlib.import_module("steps").step, root, [data])
    with project.loaded({**files, "data.py": "def unused():\n    return 1\n"}) as root:
        data = importlib.import_module("data")
        edited = fingerprint(importlib.import_module("steps").step, root, [data])
    assert with_module.modules == {"steps", "data"}
    assert edited.digest != with_module.digest
    with pytest.raises(FingerprintError, match=r"lists hash_includes\[0\] \(an object\)"):
        project.fingerprint(files, hash_includes=[object()])


def test_a_long_elif_chain_does_not_hit_the_recursion_limit(project: Project) -> None:
    """Code that nests hundreds of levels deep (a long elif chain) is fingerprinted."""
    branches = "".join(f"    elif x == {i}:\n        return {i}\n" for i in range(1, 600))
    source = "def step(x):\n    if x == 0:\n        return 0\n" + branches
    assert len(project.fingerprint({"steps.py": source}).digest) == 64


# ----------------------------------------------------- reproducibility

PROCESS_FILES = {
    "helpers.py": """
        RATE = 0.2

        def net(x):
            return x * (1 - RATE)

        def is_even(n):
            return True if n == 0 else is_odd(n - 1)

        def is_odd(n):
            return False if n == 0 else is_even(n - 1)

        class Pricer:
            def price(self, amount):
                return net(amount) * 2
    """,
    "steps.py": """
        import helpers
        from helpers import Pricer, is_even

        TAGS = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})
        NAMES = {"x", "y", "z", "w"}
        LIMITS = {"zeta": 1, "eta": 2, "theta": 3}

        def step(order):
            if is_even(len(order)) and order["tag"] in TAGS and order["tag"] not in NAMES:
                return Pricer().price(order["amount"]) * LIMITS["eta"] + helpers.net(1)
            return 0
    """,
}

CHILD = """
import importlib, sys
from pathlib import Path
from pinrun.flows.fingerprint import fingerprint
print(fingerprint(importlib.import_module("steps").step, Path(sys.argv[1])).digest)
"""


def test_same_code_same_digest_in_fresh_processes(project: Project) -> None:
    """Two interpreters with different hash seeds, and this one, agree on the digest."""
    with project.loaded(PROCESS_FILES) as root:
        digests = set()
        for seed in ("1", "2"):
            env = dict(os.environ, PYTHONHASHSEED=seed,
                       PYTHONPATH=os.pathsep.join([str(SRC), str(root)]))
            child = subprocess.run([sys.executable, "-c", CHILD, str(root)], env=env,
                                   capture_output=True, text=True, timeout=120, check=False)
            assert child.returncode == 0, child.stderr
            digests.add(child.stdout.strip())
    here = project.fingerprint(PROCESS_FILES)
    assert digests == {here.digest}
    assert here.references == ("helpers.Pricer", "helpers.is_even", "helpers.is_odd",
                               "helpers.net")


# -------------------------------------------------------- normalization

def test_normalized_tree_of_a_small_function() -> None:
    """No positions, no empty fields, typed constants: the structure written out by hand."""
    assert normalized_source_tree("def f(x): return x + 1") == {
        "_type": "Module",
        "body": [{
            "_type": "FunctionDef",
            "name": "f",
            "args": {"_type": "arguments", "args": [{"_type": "arg", "arg": "x"}]},
            "body": [{
                "_type": "Return",
                "value": {
                    "_type": "BinOp",
                    "left": {"_type": "Name", "id": "x", "ctx": "Load"},
                    "op": "Add",
                    "right": {"_type": "Constant", "value": ("int", 1)},
                },
            }],
        }],
    }


def _walk(structure: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(structure, dict):
        for key, value in structure.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(structure, list):
        for item in structure:
            yield from _walk(item)


def test_normalized_tree_has_no_positions_or_empty_fields() -> None:
    """A larger snippet: no position or type_comment keys, no None or [] field values."""
    source = textwrap.dedent('''
        """Module docstring."""
        import os
        class A(Base, metaclass=M):
            """Class docstring."""
            x: int = 1
            async def run(self, *args, key=None, **kw):
                async with lock:
                    return [y async for y in args if y] or {**kw, "k": ...}
    ''')
    pairs = list(_walk(normalized_source_tree(source)))
    keys = {key for key, _ in pairs}
    assert not keys & {"lineno", "col_offset", "end_lineno", "end_col_offset", "type_comment",
                       "kind", "type_params", "decorator_list", "returns"}
    assert all(value is not None and value != [] for _, value in pairs)
    assert ("value", ("str", "Module docstring.")) not in pairs
    assert ("value", ("ellipsis", None)) in pairs


def test_constants_keep_their_type() -> None:
    """1, 1.0 and True are three different constants; u"a" and 'a' are one."""
    trees = [normalized_source_tree(f"x = {literal}") for literal in ("1", "1.0", "True")]
    assert len({json.dumps(tree) for tree in trees}) == 3
    assert normalized_source_tree('x = u"a"') == normalized_source_tree("x = 'a'")


def test_fstring_parts_are_merged_the_same_way_everywhere() -> None:
    """Empty literal parts (3.12 adds one to some format specs) are dropped, neighbours merged."""
    tree = normalized_source_tree('f"{x:>{w}}"')
    joined = tree["body"][0]["value"]
    spec = joined["values"][0]["format_spec"]
    assert spec["values"] == [
        {"_type": "Constant", "value": ("str", ">")},
        {"_type": "FormattedValue", "conversion": -1,
         "value": {"_type": "Name", "ctx": "Load", "id": "w"}},
    ]


# -------------------------------------------------------------- locality

def test_is_project_local(project: Project) -> None:
    """Standard library and installed packages are never local; the project's own code is."""
    everything = Path("/")
    assert not is_project_local(json, everything)
    assert not is_project_local(blake3, everything)
    assert not is_project_local(sys, everything)  # built in: no file at all
    files = {"mine.py": "", ".venv/lib/site-packages/vendored.py": ""}
    with project.loaded(files) as root:
        mine = importlib.import_module("mine")
        assert is_project_local(mine, root)
        assert not is_project_local(mine, root / "elsewhere")
        vendored_root = root / ".venv" / "lib" / "site-packages"
        sys.path.insert(0, str(vendored_root))
        try:
            assert not is_project_local(importlib.import_module("vendored"), root)
        finally:
            sys.path.remove(str(vendored_root))
