"""A step's code fingerprint: one digest for the code a step runs.

The digest must change when the step's logic changes and stay put otherwise,
on every Python version pinrun supports (3.11 to 3.13): it hashes the
canonical structure of the syntax tree built by :mod:`pinrun.flows.normalize`.

To that it adds, recursively, what the code reads through globals, closures
and ``module.attribute`` chains: project functions and classes (their own
trees), and the names of modules and of functions and classes from the
standard library or installed packages. Module-level objects count by what
the code says about them, never by what a running process did to them (the
rules are in :mod:`pinrun.flows.module_objects`):

* loggers are ignored; compiled patterns count by pattern and flags, paths by
  their text, time zones by key;
* immutable canonical values (numbers, strings, enum members, tuples, frozen
  dataclasses...) by value: the digest of their :func:`~pinrun.artifacts.codec.encode` bytes;
* everything else read from a module (a cache, a list, a client, a lock) by
  its **definition**: the normalized module-level statements that bind it,
  what those read, and its type (a project class with its own fingerprint).
  A name some function of the module declares ``global`` counts by its
  definition alone, since its type changes as it is rebound. Mutable values
  among these are the step's hidden state (:attr:`Fingerprint.state`);
* a closure cell that holds such an object counts by its type.

Only what cannot be identified at all is refused with
:class:`FingerprintError`: a step bound to an object that is not a value, or
a ``hash_includes`` item that is none of the above. Names listed in a step's
``ignore_globals`` count as ignored names only.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Final

import blake3

from pinrun.artifacts.codec import encode
from pinrun.data_classes import data_class
from pinrun.errors import FingerprintError, UnsupportedValueError
from pinrun.flows.code_reading import (
    attribute_chains,
    class_functions,
    closure,
    code_names,
    definition_names,
    name_ids,
    source_text,
)
from pinrun.flows.module_objects import (
    HEAP_TYPE,
    ModuleDefinitions,
    fixed_reference,
    ignored_object,
    is_immutable,
    state_snapshot,
)
from pinrun.flows.normalize import normalize, normalized_source_tree, parse_source, tokens
from pinrun.flows.project import is_project_local, module_identity

__all__ = ["Fingerprint", "FingerprintError", "fingerprint", "is_project_local",
           "normalized_source_tree"]

_FORMAT: Final = "pinrun.fingerprint/2"  # bump whenever the structure changes meaning
_BUILTIN_CALLABLES: Final = (types.BuiltinFunctionType, types.MethodDescriptorType,
                             types.WrapperDescriptorType, types.MethodWrapperType,
                             types.ClassMethodDescriptorType)


#: Py_TPFLAGS_HEAPTYPE: set on every class a ``class`` statement makes, never on a static C type.

_UNBOUND: Final = object()  # a name the code reads that was not bound when it was walked


@data_class(frozen=True)
class Guards:
    """What a fingerprint read, to tell later whether it would still come out the same.

    A loaded function's code never changes, but what it reads may: a global
    rebound, a closure cell reassigned, a constant list appended to. The
    guards hold the objects found under each name and the encoding of each
    value, so :meth:`hold` can answer without walking the code again.
    """

    bindings: tuple[tuple[dict[str, Any], str, object], ...]
    cells: tuple[tuple[types.CellType, object], ...]
    values: tuple[tuple[object, bytes], ...]

    def hold(self) -> bool:
        """Whether every name still names the same object and every value is unchanged."""
        for namespace, name, found in self.bindings:
            if namespace.get(name, _UNBOUND) is not found:
                return False
        for cell, found in self.cells:
            try:
                if cell.cell_contents is not found:
                    return False
            except ValueError:  # emptied since
                if found is not _UNBOUND:
                    return False
        for value, data in self.values:
            try:
                if encode(value) != data:
                    return False
            except UnsupportedValueError:
                return False
        return True


@data_class(frozen=True)
class Fingerprint:
    """What :func:`fingerprint` found: the digest and where the code came from."""

    #: 64 lowercase hex characters: BLAKE3-256 of the canonical structure.
    digest: str
    #: Names of the project-local modules the code came from (the step's own included).
    modules: frozenset[str]
    #: Sorted qualified names of the project-local functions and classes folded in.
    references: tuple[str, ...]
    #: What it read, to check cheaply that a cached fingerprint is still right.
    guards: Guards = field(default=Guards((), (), ()), compare=False, repr=False)
    #: The project functions whose source was read (to check it is the loaded code).
    functions: tuple[types.FunctionType, ...] = field(default=(), compare=False, repr=False)
    #: Mutable module-level state the code reads, as sorted (module, name) pairs: counted
    #: by its definition, so a change to it between runs is hidden state, not new code.
    state: tuple[tuple[str, str], ...] = field(default=(), compare=False)


# ----------------------------------------------------------------- the walk


def fingerprint(
    func: Callable[..., Any], project_root: Path, hash_includes: Sequence[object] = (),
    ignore_globals: Sequence[str] = (),
) -> Fingerprint:
    """Fingerprint a step function together with what it reads from the project.

    ``hash_includes`` are extra values (canonical values, functions, classes or
    modules) folded in, in order. ``ignore_globals`` names what is left out:
    ``NAME``, a global of the step's module (or a closure variable of its
    functions), wherever code of that module reads it; ``package.module.NAME``,
    a module-level name of another project module. Raises
    :class:`FingerprintError` for code with no source, or that reads what
    pinrun cannot identify.
    """
    func = _step_function(func)
    bound = func.__self__ if isinstance(func, types.MethodType) else None
    target: Any = inspect.unwrap(getattr(func, "__func__", func))
    name = _qualified(target)
    if not isinstance(target, types.FunctionType):
        raise FingerprintError(name, name, None, f"step {name!r} is not a Python function "
                               f"({_describe(target)}), so pinrun cannot fingerprint its code")
    walker = _Walker(project_root, name, target.__globals__, frozenset(ignore_globals))
    key = walker.function(target, top=True)
    includes = [walker.include(item, f"hash_includes[{i}]") for i, item in enumerate(hash_includes)]
    if bound is not None:  # a bound method runs on its instance: that must be a value
        includes.append(walker.classify(bound, "__self__", key, "is bound to an object"))
    structure = {"format": _FORMAT, "step": key, "includes": includes,
                 "ignored": sorted(walker.ignore),
                 "objects": [[k, walker.entries[k]] for k in sorted(walker.entries)]}
    return Fingerprint(digest=blake3.blake3(encode(tokens(structure))).hexdigest(),
                       modules=frozenset(walker.modules),
                       # Definitions are keyed "module:name"; references name code only.
                       references=tuple(sorted(k for k in walker.entries
                                               if k != key and ":" not in k)),
                       guards=Guards(tuple(walker.bindings), tuple(walker.cells),
                                     tuple(walker.values)),
                       functions=tuple(walker.functions), state=tuple(sorted(walker.state)))


class _Walker:
    """One fingerprint's state: a flat table of the objects folded in, keyed by name.

    Entries refer to each other by key, never by nesting, so mutual recursion
    ends (a key is claimed before its references are followed) and the digest
    does not depend on the order things were found in.
    """

    def __init__(self, project_root: Path, step: str, step_globals: dict[str, Any],
                 ignore: frozenset[str]) -> None:
        self.root = project_root
        self.step = step
        self.step_globals = step_globals
        self.ignore = ignore
        #: (module, name) of the mutable module state the code reads.
        self.state: set[tuple[str, str]] = set()
        self._definitions: dict[int, ModuleDefinitions | None] = {}  # id(namespace) -> found
        #: (id(namespace), name) read where rebinding is expected or irrelevant: not guarded.
        self._unguarded: set[tuple[int, str]] = set()
        self.entries: dict[str, Any] = {}
        self.modules: set[str] = set()
        self._keys: dict[int, str] = {}  # id(object) -> key; the objects outlive the walk
        self.bindings: list[tuple[dict[str, Any], str, object]] = []
        self.cells: list[tuple[types.CellType, object]] = []
        self.values: list[tuple[object, bytes]] = []
        self.functions: list[types.FunctionType] = []

    def _guard_cells(self, func: types.FunctionType) -> None:
        for cell in func.__closure__ or ():
            try:
                self.cells.append((cell, cell.cell_contents))
            except ValueError:
                self.cells.append((cell, _UNBOUND))

    def _claim(self, obj: object) -> tuple[str, bool]:
        """The key of ``obj`` and whether it is new; same-named objects get ``#2``, ``#3``."""
        if id(obj) in self._keys:
            return self._keys[id(obj)], False
        base = key = obj.__name__ if isinstance(obj, types.ModuleType) else _qualified(obj)
        count = 1
        while key in self.entries:
            count += 1
            key = f"{base}#{count}"
        self._keys[id(obj)] = key
        self.entries[key] = None  # claimed: a cycle back here stops at the key
        return key, True

    def function(self, func: types.FunctionType, *, top: bool = False) -> str:
        """Fold in a function (or lambda) of the project; return its key."""
        key, new = self._claim(func)
        if new:
            node = self._source_node(func, key)
            if top and not isinstance(node, ast.Lambda):
                node.decorator_list = []  # @pinrun.step(...) options are not the step's code
            names = (code_names([func.__code__]) & name_ids(node)) | definition_names([node])
            self._guard_cells(func)
            self.functions.append(func)
            refs = self._references(node, names, func.__globals__, closure(func), key)
            self.entries[key] = {"kind": "function", "tree": normalize(node), "refs": refs}
            self.modules.add(func.__module__)
        return key

    def klass(self, cls: type) -> str:
        """Fold in a class of the project, its whole body and methods; return its key."""
        key, new = self._claim(cls)
        if new:
            node = self._source_node(cls, key)
            module = sys.modules[cls.__module__]
            methods = list(class_functions(cls, getattr(module, "__file__", None)))
            names = (code_names(m.__code__ for m in methods) & name_ids(node)) | \
                definition_names(ast.iter_child_nodes(node))  # bases, decorators, class body
            cells = {name: v for m in methods for name, v in closure(m).items()}
            for method in methods:
                self._guard_cells(method)
            refs = self._references(node, names, vars(module), cells, key)
            self.entries[key] = {"kind": "class", "tree": normalize(node), "refs": refs}
            self.modules.add(cls.__module__)
        return key

    def include(self, value: object, label: str) -> Any:
        """One ``hash_includes`` item; a project module counts with its whole source."""
        if not (isinstance(value, types.ModuleType) and is_project_local(value, self.root)):
            return self.classify(value, label, self.step, f"lists {label}")
        key, new = self._claim(value)
        if new:
            tree = normalized_source_tree(self._source(value, key, label))
            self.entries[key] = {"kind": "module", "tree": tree}
            self.modules.add(value.__name__)
        return ["module", key]

    def _references(self, node: ast.AST, names: set[str], module_globals: dict[str, Any],
                    cells: dict[str, object], reader: str) -> list[Any]:
        """Resolve what the code reads: globals, closure cells and ``module.attr`` chains.

        Only names bound in the module count: ``co_names`` also holds attribute
        names, and a name bound nowhere may be defined later or never used.
        """
        bound = {name: module_globals[name] for name in names if name in module_globals}
        refs = [["global", name, self.read(bound[name], name, reader, (module_globals, name))]
                for name in sorted(bound)]
        refs += [["closure", name, ["ignored"] if self._ignored(module_globals, name) else
                  self.classify(cells[name], name, reader, closure=True)]
                 for name in sorted(cells)]
        self._guard(module_globals, names)
        bound.update(cells)
        for chain in sorted(attribute_chains(node)):
            obj = bound.get(chain[0])
            for depth in range(1, len(chain)):
                # Only a project module's attributes are our code; a missing one may be
                # a submodule not imported yet or set later: there is nothing to read.
                if not (isinstance(obj, types.ModuleType) and is_project_local(obj, self.root)):
                    break
                namespace, attribute = vars(obj), chain[depth]
                if attribute not in namespace:
                    self._guard(namespace, [attribute])
                    break
                obj = namespace[attribute]
                dotted = ".".join(chain[: depth + 1])
                refs.append(["attribute", dotted, self.read(obj, dotted, reader,
                                                            (namespace, attribute))])
                self._guard(namespace, [attribute])
        return refs

    def read(self, value: object, name: str, reader: str,
             where: tuple[dict[str, Any], str]) -> Any:
        """The reference for a module-level name the code reads (``where``: module, name)."""
        if self._ignored(*where):
            self._unguarded.add((id(where[0]), where[1]))
            return ["ignored"]
        try:
            return self.classify(value, name, reader, where=where)
        except FingerprintError:
            raise
        except Exception:  # the object's own __getattr__ or property raised when asked
            return self._defined(value, where, typed=False)  # its definition identifies it

    def _ignored(self, namespace: dict[str, Any], name: str) -> bool:
        """Whether ``ignore_globals`` leaves out ``name`` of the module ``namespace``."""
        return (namespace is self.step_globals and name in self.ignore) or \
            f"{module_identity(str(namespace.get('__name__')))}.{name}" in self.ignore

    def _guard(self, namespace: dict[str, Any], names: Iterable[str]) -> None:
        """Remember what the names are bound to, so a rebinding is noticed (pin cache)."""
        self.bindings += [(namespace, name, namespace.get(name, _UNBOUND)) for name in names
                          if (id(namespace), name) not in self._unguarded]

    def classify(self, value: object, name: str, reader: str, phrase: str = "", *,
                 where: tuple[dict[str, Any], str] | None = None,
                 closure: bool = False) -> Any:
        """The reference for one thing the code reads, or :class:`FingerprintError`.

        ``where`` is the module namespace and name it was read from (a global or a
        project module's attribute): what is no code nor fixed value counts by its
        definition there. ``closure`` says it came from a closure cell.
        """
        if isinstance(value, types.ModuleType):
            if is_project_local(value, self.root):
                self.modules.add(value.__name__)
            return ["module", value.__name__]
        value = _step_function(value)
        if _wraps(value):  # functools.wraps, lru_cache: the code is inside
            with contextlib.suppress(ValueError):  # a __wrapped__ cycle: keep the wrapper
                value = inspect.unwrap(value)  # type: ignore[arg-type]
        local = self._local(getattr(value, "__func__", value))
        if isinstance(value, type):
            return ["class", self.klass(value)] if local else ["name", _qualified(value)]
        if isinstance(value, types.FunctionType):
            return ["function", self.function(value)] if local else ["name", _qualified(value)]
        if isinstance(value, _BUILTIN_CALLABLES) or (isinstance(value, types.MethodType)
                                                     and not local):
            return ["name", _qualified(value)]
        if isinstance(value, types.MethodType):
            owner = value.__self__  # a project class, or an instance that must be a value
            owner_ref = self.classify(owner, name, reader) if isinstance(owner, type) else \
                self._value(owner) if where is None or is_immutable(owner) else None
            if owner_ref is not None and isinstance(value.__func__, types.FunctionType):
                return ["method", owner_ref, self.function(value.__func__)]
        if ignored_object(value):
            return ["ignored", "logger"]  # what it logs is not what the step computes
        if where is not None and where[1] in self._module(where[0], "rebound"):
            return self._defined(value, where, typed=False)  # rebound at run time: a global
        if not isinstance(value, types.MethodType):
            if (ref := fixed_reference(value, _qualified(type(value)))) is not None:
                return ref
            # What the code names explicitly (hash_includes, a bound step) counts by value;
            # what it reads from a module or a closure only when it cannot change.
            if ((where is None and not closure) or is_immutable(value)) and \
                    (ref := self._value(value)) is not None:
                return ref
            if isinstance(value, types.GenericAlias | types.UnionType | typing.TypeVar) or \
                    type(value).__module__ == "typing":
                return ["typing", repr(value)]
            if callable(value) and (getattr(value, "__qualname__", None) or
                                    getattr(value, "__name__", None)) and not local and \
                    isinstance(getattr(value, "__module__", None), str):
                return ["name", _qualified(value)]  # a named callable object, like a numpy ufunc
        if where is not None:
            return self._defined(value, where, typed=True)
        if closure:
            return ["object", None, self._type(value)]
        via = "" if reader == self.step else f" through {reader!r}"
        raise FingerprintError(self.step, reader, name, f"step {self.step!r} "
                               f"{phrase or f'reads {name!r}'} "
                               f"({_describe(value)}){via}, which pinrun cannot identify: it is "
                               "no value, code or module-level object. Make it a plain "
                               "function or a value, or give the step version='...'")

    def _defined(self, value: object, where: tuple[dict[str, Any], str], *,
                 typed: bool) -> Any:
        """A module-level object by its definition: the statements binding it, and its type.

        ``typed=False`` for a name rebound at run time, whose type the code does not fix.
        A name imported from another project module counts by its definition there.
        """
        namespace, name = where
        module = str(namespace.get("__name__"))
        key = f"{module_identity(module)}:{name}"  # a script's, as it is replayed
        origin = None
        if key not in self.entries:
            self.entries[key] = None  # claimed: a definition that reads itself stops here
            statements = self._module(namespace, "statements").get(name, [])
            self._unguarded.add((id(namespace), name))  # guarded below, once
            origin = self._imported_from(value, statements, namespace, name, key)
            block = ast.Module(body=[s for s in statements if isinstance(s, ast.stmt)],
                               type_ignores=[])
            refs = self._references(block, name_ids(block), namespace, {}, key) \
                if statements else []
            self.entries[key] = {"kind": "definition",
                                 "tree": [normalize(node) for node in statements],
                                 "refs": refs, "from": origin}
            self.modules.add(module)
            if not typed or (origin is None and not is_immutable(value)
                             and state_snapshot(value) is not None):
                self.state.add((module, name))
        if typed:  # rebound names are not guarded: rebinding them is what they are for
            self._unguarded.discard((id(namespace), name))
        return ["state" if (module, name) in self.state else "object", key,
                self._type(value) if typed else None]

    def _imported_from(self, value: object, statements: list[ast.AST],
                       namespace: dict[str, Any], name: str, key: str) -> Any:
        """``from module import NAME`` of a project module: NAME's reference there."""
        for node in statements:
            if not isinstance(node, ast.ImportFrom):
                continue
            package = namespace.get("__package__") or ""
            try:
                source = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                     package) if node.level else node.module
            except (ImportError, ValueError):
                continue
            origin = sys.modules.get(source or "")
            original = next((alias.name for alias in node.names
                             if (alias.asname or alias.name) == name), None)
            if origin is not None and original is not None and \
                    is_project_local(origin, self.root) and \
                    vars(origin).get(original, _UNBOUND) is value:
                return self.read(value, f"{source}.{original}", key, (vars(origin), original))
        return None

    def _module(self, namespace: dict[str, Any], part: str) -> Any:
        """One part of the module-level definitions of ``namespace`` (its source parsed once)."""
        if id(namespace) not in self._definitions:
            self._definitions[id(namespace)] = ModuleDefinitions.of(namespace)
        found = self._definitions[id(namespace)]
        if found is None:  # no source to read: the type alone identifies the object
            return {} if part == "statements" else frozenset()
        return getattr(found, part)

    def _type(self, value: object) -> Any:
        """A type's identity: a project class by its own fingerprint, others by name."""
        if isinstance(value, types.MethodType):
            func = value.__func__
            return ["method", self._type(value.__self__),
                    self.function(func) if isinstance(func, types.FunctionType) and
                    self._local(func) else _qualified(func)]
        cls = type(value)
        return ["class", self.klass(cls)] if self._local(cls) else ["name", _qualified(cls)]

    def _value(self, value: object) -> Any:
        """A canonical value's reference, or None when the codec refuses it."""
        try:
            data = encode(value)
        except UnsupportedValueError:
            return None
        self.values.append((value, data))
        # A dataclass, enum or model of the project: its methods are code that runs.
        owner = self.klass(type(value)) if self._local(type(value)) else None
        return ["value", blake3.blake3(_named_as_replayed(data)).hexdigest(), owner]

    def _local(self, obj: Any) -> bool:
        if isinstance(obj, type) and not obj.__flags__ & HEAP_TYPE:
            return False  # a class built in C (numpy.ndarray): no source, never the project's
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        return module is not None and is_project_local(module, self.root)

    def _source(self, obj: Any, key: str, name: str | None = None) -> str:
        try:
            return source_text(obj)
        except (OSError, TypeError) as exc:
            raise FingerprintError(self.step, key, name, f"step {self.step!r} uses {key!r}, "
                                   f"whose source code is not available ({exc})") from None

    def _source_node(self, obj: Any, key: str) -> Any:
        """The def, class or lambda node of ``obj``, checked against the loaded object."""
        problem = "its source on disk no longer matches the loaded code (reload it)"
        try:
            body = parse_source(self._source(obj, key)).body
        except SyntaxError:
            body, problem = [], "its source cannot be parsed on its own"
        if obj.__name__ == "<lambda>":
            lambdas = [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Lambda)]
            if len(lambdas) == 1:
                return lambdas[0]
            problem = "pinrun cannot tell it apart from other code on its source lines"
        elif body and isinstance(body[0], ast.FunctionDef | ast.AsyncFunctionDef |
                                 ast.ClassDef) and body[0].name == obj.__name__:
            return body[0]
        raise FingerprintError(self.step, key, None, f"step {self.step!r} uses {key!r}, "
                               f"which pinrun cannot fingerprint: {problem}")


# ------------------------------------------------------------------ helpers


def _step_function(value: Any) -> Any:
    """A pinrun step stands for the function it wraps."""
    from pinrun.flows.step import Step  # late: step.py may well import this module

    return value.func if isinstance(value, Step) else value


def _qualified(obj: object) -> str:
    """``module.qualname``, naming the shortest package that exports the object."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        owner = getattr(obj, "__objclass__", None) or type(getattr(obj, "__self__", None))
        module = getattr(owner, "__module__", None) or "?"
    module = module_identity(module)  # a script's code is named as it is replayed
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "?"
    parts = module.split(".")
    for depth in range(1, len(parts)):
        # pathlib.Path lives in pathlib._local on 3.13: name it as users import it.
        package = sys.modules.get(".".join(parts[:depth]))
        if package is not None and "." not in name and vars(package).get(name) is obj:
            return f"{package.__name__}.{name}"
    return f"{module}.{name}"


def _wraps(value: object) -> bool:
    """Whether ``value`` wraps other code (``__wrapped__``), asked without running a
    ``__getattr__`` of the user's that may raise anything."""
    return inspect.getattr_static(value, "__wrapped__", None) is not None


_MAIN_CLASS: Final = b'["__main__:'


def _named_as_replayed(data: bytes) -> bytes:
    """A value's encoding with a script's classes (``"__main__:Cfg"``, as the codec tags
    them) named as the script is replayed (``"job:Cfg"``): what the fingerprint hashes."""
    if _MAIN_CLASS not in data:
        return data
    identity = module_identity("__main__").encode()
    return data.replace(_MAIN_CLASS, b'["' + identity + b":")


def _describe(value: object) -> str:
    if isinstance(value, types.MethodType):
        return f"a method of {_describe(value.__self__)}"
    cls = type(value)
    name = cls.__qualname__ if cls.__module__ == "builtins" else _qualified(cls)
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
