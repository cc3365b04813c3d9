"""The exception tree: one module, drawn in its docstring, exported, and picklable."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
from typing import Any

import pytest

import pinrun
from pinrun import errors
from pinrun.artifacts.digest import Digest
from pinrun.world.refusal import GuardedCall

D = Digest(bytes(range(32)))


def _every_pinrun_module() -> list[str]:
    names = ["pinrun"]
    for info in pkgutil.walk_packages(pinrun.__path__, "pinrun."):
        names.append(info.name)
    return names


def _all_error_classes() -> set[type[errors.PinrunError]]:
    for name in _every_pinrun_module():
        importlib.import_module(name)
    found: set[type[errors.PinrunError]] = set()
    stack: list[type[errors.PinrunError]] = [errors.PinrunError]
    while stack:
        cls = stack.pop()
        if cls.__module__.startswith("pinrun") and cls not in found:
            found.add(cls)
            stack.extend(cls.__subclasses__())
    return found


def test_every_error_class_lives_in_the_errors_module() -> None:
    """No module of pinrun defines a PinrunError subclass of its own."""
    strays = {f"{c.__module__}.{c.__qualname__}" for c in _all_error_classes()
              if c.__module__ != "pinrun.errors"}
    assert strays == set()


def test_the_docstring_tree_names_every_error_under_its_parent() -> None:
    """Each class appears in the drawn tree, indented one level below its base class."""
    doc = errors.__doc__ or ""
    lines = [line for line in doc.splitlines() if "──" in line or line.strip() == "PinrunError"
             or line.strip().startswith("PinrunError ")]
    depth: dict[str, int] = {}
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in lines:
        name = line.replace("│", " ").replace("├──", "   ").replace("└──", "   ").split()[0]
        indent = len(line) - len(line.lstrip(" │├└─"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        depth[name] = indent
        stack.append((indent, name))
    for cls in _all_error_classes():
        assert cls.__name__ in depth, f"{cls.__name__} is missing from the tree"
        if cls is not errors.PinrunError:
            assert parents[cls.__name__] == cls.__bases__[0].__name__, cls.__name__


def test_every_error_is_public() -> None:
    """Every error class is exported from pinrun and from pinrun.errors."""
    for cls in _all_error_classes():
        assert cls.__name__ in pinrun.__all__
        assert cls.__name__ in errors.__all__
        assert getattr(pinrun, cls.__name__) is cls


def _samples() -> list[errors.PinrunError]:
    return [
        errors.PinrunError("plain"), errors.InputError("bad"), errors.StoreError("damaged"),
        errors.UnsupportedValueError("state['a']", "object", "why"),
        errors.InvalidDigestError("zz", "not hex"), errors.UnknownDigestError("abcdef"),
        errors.AmbiguousDigestError("abcdef", [D, D]), errors.UnknownRefError("runs/x"),
        errors.BundleError("b.pinrun", "truncated"), errors.RefConflictError("r", D, None),
        errors.StoreNotFoundError("/x", searched_upward=True),
        errors.CorruptObjectError(D, D, "flip"),
        errors.OversizedValueError(D, 1 << 40, 1 << 30), errors.MissingObjectError(D, "ref 'x'"),
        errors.ObjectFormatError(D, "v9"), errors.UndecodableValueError("odd"),
        errors.UnsafeRunIdError("../x"), errors.RunBusyError("r1"),
        errors.BaselineBusyError("r1"), errors.PinnedModuleError("json", "is stdlib"),
        errors.StepDefinitionError("f", "no"), errors.FlowDefinitionError("fl", "cycle"),
        errors.MissingInputError("fl", "s", "k", ["a"]),
        errors.FingerprintError("s", "f", "g", "problem"), errors.StaleSourceError("edited"),
        errors.StepOutputError("not a mapping"), errors.RecordedEffectError("E: m"),
        errors.ContextDivergenceError("s", 0, None, "ctx.now()"),
        errors.NondeterminismError("time.time"), errors.CodeChangedError("changed"),
        errors.WorldRefusedError("replay refused socket.connect(('127.0.0.1', 80))",
                                 GuardedCall("network", "socket.connect", "a.py", 3)),
        errors.StoreDamagedError("/s", "torn page"), errors.StoreReadOnlyError("/s", "ro"),
        errors.NoSpaceError("/s"), errors.StoreInUseError("/s", "pid 7"),
        errors.UntrustedEntryError("venv.__main__:flow", "is part of the standard library"),
        errors.RemoteError("s3://b/p", "unreachable"), errors.UntrustedRunError("unsigned"),
    ]


def test_the_samples_cover_every_class() -> None:
    """The pickling test below builds one instance of every error class."""
    assert {type(e) for e in _samples()} == _all_error_classes() - {errors.RunFailedError}


@pytest.mark.parametrize("error", _samples(), ids=lambda e: type(e).__name__)
def test_errors_survive_pickling_with_their_context(error: errors.PinrunError) -> None:
    """An error crossing a process boundary keeps its type, message and attributes."""
    back: Any = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__dict__.keys() == error.__dict__.keys()
    assert back.exit_code == error.exit_code


def test_exit_codes_follow_the_tree() -> None:
    """Bad input exits 2, a damaged store 3, everything else 1."""
    for cls in _all_error_classes():
        expected = 2 if issubclass(cls, errors.InputError) else \
            3 if issubclass(cls, errors.StoreError) else 1
        assert cls.exit_code == expected, cls.__name__
