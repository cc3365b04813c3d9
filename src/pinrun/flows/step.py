"""Steps: plain functions whose parameters name the state keys they read.

::

    @pinrun.step
    def price(items: list[dict], ctx: pinrun.Context) -> dict:
        return {"total": sum(i["qty"] * i["price"] for i in items)}

A parameter named ``ctx`` receives the run's :class:`~pinrun.Context`, one
named ``state`` a read-only view of the whole state; every other parameter is
a state key the step reads (optional when it has a default). The step returns
a mapping of the keys it writes. A decorated step stays directly callable, so
it can be unit-tested like the function it is.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import field
from functools import partial
from types import CodeType
from typing import Any, overload

from pinrun.artifacts.kept import Kept
from pinrun.data_classes import data_class
from pinrun.errors import StepDefinitionError
from pinrun.flows.code_reading import source_text

__all__ = ["CONTEXT_PARAMETER", "STATE_PARAMETER", "Step", "StepDefinitionError", "step"]

#: The parameter name that receives the run's Context.
CONTEXT_PARAMETER = "ctx"
#: The parameter name that receives a read-only view of the whole state.
STATE_PARAMETER = "state"


@data_class(frozen=True, eq=False)
class Step:
    """A function wrapped as a step. Immutable; call it as the plain function."""

    func: Callable[..., Any]
    name: str
    #: State keys the step needs (parameters without a default).
    requires: tuple[str, ...]
    #: State keys it may read but can do without (parameters with a default).
    optional: tuple[str, ...]
    wants_context: bool
    wants_state: bool
    is_async: bool
    #: Keys it writes: declared, or read off its ``return {...}`` literals; None if unknown.
    writes: frozenset[str] | None
    #: Names of the steps it runs after (None: after the step before it in the flow).
    after: tuple[str, ...] | None
    #: A version the user gave, which stands for the code in the fingerprint.
    version: str | None
    #: Extra values whose identity is folded into the fingerprint.
    hash_includes: tuple[object, ...] = field(default=())
    #: Module-level names the fingerprint leaves out (``NAME`` or ``package.module.NAME``).
    ignore_globals: tuple[str, ...] = field(default=())

    @property
    def reads(self) -> tuple[str, ...]:
        """Every state key the step reads, required first."""
        return self.requires + self.optional

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<pinrun step {self.name!r} reads={list(self.reads)}>"


#: ``_returned_keys`` per code object (and its file): pinned code is executed afresh at
#: every replay, defining the same functions from the same compiled code each time.
_RETURNED: Kept[tuple[CodeType, str], tuple[frozenset[str] | None]] = Kept(4096)


def _returned_keys(func: Callable[..., Any]) -> frozenset[str] | None:
    """The keys of the dict literals a function returns, when every return is one
    (read from its source once per code object)."""
    code = getattr(func, "__code__", None)
    if not isinstance(code, CodeType):
        return _parse_returned_keys(func)
    key = (code, code.co_filename)
    known = _RETURNED.get(key)
    if known is None:  # (a tuple: None is an answer too)
        known = _RETURNED.put(key, (_parse_returned_keys(func),))
    return known[0]


def _parse_returned_keys(func: Callable[..., Any]) -> frozenset[str] | None:
    try:
        source = textwrap.dedent(source_text(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    definition = next((node for node in tree.body
                       if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)), None)
    if definition is None:
        return None
    keys: set[str] = set()
    returns = [node for node in _own_nodes(definition) if isinstance(node, ast.Return)]
    if not returns:
        return None
    for node in returns:
        if not isinstance(node.value, ast.Dict) or None in node.value.keys:
            return None  # returns something computed, or unpacks a mapping: unknown
        for key in node.value.keys:
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return None
            keys.add(key.value)
    return frozenset(keys)


def _own_nodes(definition: ast.AST) -> list[ast.AST]:
    """Nodes of a function body, not descending into nested functions or classes."""
    out: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(definition))
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
                          | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
    return out


def _ignored_names(label: str, names: Sequence[str]) -> tuple[str, ...]:
    """``ignore_globals`` checked: a list of names, each ``NAME`` or ``package.module.NAME``."""
    if isinstance(names, str | bytes) or not isinstance(names, Sequence | set | frozenset):
        raise StepDefinitionError(label, "ignore_globals= takes a list of names, such as "
                                  "[\"client\"] or [\"orders.db.POOL\"]")
    for item in names:
        if not (isinstance(item, str) and item and
                all(part.isidentifier() for part in item.split("."))):
            raise StepDefinitionError(label, f"ignore_globals= lists {item!r}, which is not a "
                                      "name: give a global's name (NAME) or a module-level "
                                      "name of another module (package.module.NAME)")
    return tuple(sorted(set(names)))


def _build(func: Callable[..., Any], *, name: str | None, version: str | None,
           hash_includes: Sequence[object], after: Sequence[str | Step] | None,
           writes: Sequence[str] | None, ignore_globals: Sequence[str] = ()) -> Step:
    label = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)}"
    if not inspect.isfunction(func):
        raise StepDefinitionError(label, "@pinrun.step decorates plain functions "
                                  "(def or async def), not classes or other callables")
    requires: list[str] = []
    optional: list[str] = []
    wants_context = wants_state = False
    for parameter in inspect.signature(func).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise StepDefinitionError(label, f"*{parameter.name} cannot name state keys; list "
                                      "the keys the step reads as parameters, or take `state`")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise StepDefinitionError(label, f"{parameter.name} is positional-only; state "
                                      "keys are passed by name")
        if parameter.name == CONTEXT_PARAMETER:
            wants_context = True
        elif parameter.name == STATE_PARAMETER:
            wants_state = True
        elif parameter.default is parameter.empty:
            requires.append(parameter.name)
        else:
            optional.append(parameter.name)
    if version is not None and (not isinstance(version, str) or not version):
        raise StepDefinitionError(label, "version= takes a non-empty string")
    after_names = None if after is None else tuple(
        item.name if isinstance(item, Step) else str(item) for item in after)
    declared = frozenset(writes) if writes is not None else _returned_keys(func)
    return Step(
        func=func, name=name or func.__name__, requires=tuple(requires),
        optional=tuple(optional), wants_context=wants_context, wants_state=wants_state,
        is_async=inspect.iscoroutinefunction(func), writes=declared, after=after_names,
        version=version, hash_includes=tuple(hash_includes),
        ignore_globals=_ignored_names(label, ignore_globals),
    )


@overload
def step(func: Callable[..., Any], /) -> Step: ...


@overload
def step(
    *, name: str | None = None, version: str | None = None,
    hash_includes: Sequence[object] = (), after: Sequence[str | Step] | None = None,
    writes: Sequence[str] | None = None, ignore_globals: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None,
    version: str | None = None, hash_includes: Sequence[object] = (),
    after: Sequence[str | Step] | None = None, writes: Sequence[str] | None = None,
    ignore_globals: Sequence[str] = (),
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make a function a pinrun step: ``@pinrun.step`` or ``@pinrun.step(...)``.

    ``name``: the step's name in its flow (default: the function's name).
    ``version``: a version string that identifies the code instead of its
    automatic fingerprint. ``hash_includes``: extra values whose identity is
    part of the fingerprint. ``after``: the steps (or their names) it runs
    after, which makes the flow a DAG; without it a step runs after the one
    before it. ``writes``: the keys it returns, when they cannot be read off
    its ``return {...}`` statements (used to report missing inputs early).
    ``ignore_globals``: module-level names the fingerprint leaves out (they
    count as ignored names only): ``NAME`` is a global of the step's module,
    left out wherever that module's code (the step, its helpers there) reads
    it; ``package.module.NAME`` is a module-level name of another module.
    """
    build = partial(_build, name=name, version=version, hash_includes=hash_includes,
                    after=after, writes=writes, ignore_globals=ignore_globals)
    return build(func) if func is not None else build
