"""What a run pins: each step's code and fingerprint, the flow, and the environment.

The values built here are canonical (plain dicts of strings and digests'
inputs) so the engine can store them as ``code``, ``step``, ``flow`` and
``env`` objects:

* a **code** value per project module a step's code came from: the module's
  name, its path under the project root and its exact source text (UTF-8, LF
  line ends), which is what a replay with the pinned code will load;
* a **step** value: names, the code fingerprint (or ``None`` when a
  ``version=`` stands in for code that cannot be fingerprinted), the version,
  and what it reads and writes;
* an **environment** value (built in :mod:`pinrun.flows.environment`).
"""

from __future__ import annotations

import contextvars
import functools
import sys
import types
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.data_classes import data_class
from pinrun.errors import FingerprintError, PinrunError, StaleSourceError
from pinrun.flows.fingerprint import Fingerprint, fingerprint
from pinrun.flows.flow import Flow
from pinrun.flows.module_objects import shared_definitions
from pinrun.flows.project import (
    PinnedCodeLoader,
    home_distributions,
    installed_as,
    is_project_local,
    main_module_for,
    module_identity,
    path_identity,
)
from pinrun.flows.step import Step

__all__ = ["PinnedStep", "StaleSourceError", "flow_sources", "flow_value", "pin_step",
           "pin_steps", "project_root_for"]


@data_class(frozen=True, eq=False)
class PinnedStep:
    """A step's identity: its description and the sources of its code."""

    value: dict[str, Any]
    #: module name -> code value (module, path, source)
    sources: dict[str, dict[str, str]]
    #: Mutable module-level state the code reads, as (module, name): hidden state if it
    #: changes while the step runs (see :attr:`~pinrun.flows.fingerprint.Fingerprint.state`).
    state: tuple[tuple[str, str], ...] = ()

    @functools.cached_property
    def code_payloads(self) -> tuple[bytes, ...]:
        """The encoded ``code`` objects, one per module (computed once: runs reuse them)."""
        return tuple(codec.encode(source, root="code") for source in self.sources.values())

    @functools.cached_property
    def code_digests(self) -> tuple[Digest, ...]:
        """The digests of :attr:`code_payloads`."""
        return tuple(compute_digest(Kind.CODE, payload) for payload in self.code_payloads)

    @functools.cached_property
    def step_payload(self) -> bytes:
        """The encoded ``step`` object, naming its code objects by digest."""
        return codec.encode({**self.value, "code": list(self.code_digests)}, root="step")

    @functools.cached_property
    def step_digest(self) -> Digest:
        """The digest of :attr:`step_payload`: the step's pin."""
        return compute_digest(Kind.STEP, self.step_payload)


def project_root_for(store_path: Path) -> Path:
    """The project a store belongs to: the folder holding ``.pinrun``, else the working one."""
    return store_path.parent if store_path.name == ".pinrun" else Path.cwd()


# Pins per step and project root, kept while the step lives. A hit is checked
# against the fingerprint's guards (the globals, cells and constant values the
# code read), so a rebound global or a mutated constant is pinned afresh.
_PINS: weakref.WeakKeyDictionary[Step, dict[Path, tuple[Fingerprint | None, PinnedStep]]] = (
    weakref.WeakKeyDictionary())


@data_class
class _Shared:
    """What pinning the steps of one flow reads once, not once per step: the steps of a
    module share its source text, its compiled code and the project modules it imports
    (each a walk over the whole module, so per step they made pinning quadratic)."""

    #: (the pinning step's module, project root, module) -> its code value (None: not pinned).
    sources: dict[tuple[str, Path, str], dict[str, str] | None] = field(default_factory=dict)
    #: (source text, file name) -> its functions' code objects by (qualified name, line).
    compiled: dict[tuple[str, str], dict[tuple[str, int], types.CodeType]] = field(
        default_factory=dict)
    #: (the pinning step's module, project root, modules) -> the project modules they import.
    imported: dict[tuple[str, Path, frozenset[str]], frozenset[str]] = field(
        default_factory=dict)


_SHARED: contextvars.ContextVar[_Shared | None] = contextvars.ContextVar(
    "pinrun_pinning_shared", default=None)


def pin_steps(steps: Iterable[Step], project_root: Path) -> dict[str, PinnedStep]:
    """:func:`pin_step` for each of ``steps``, by name, in linear time.

    Each project module is read, compiled and walked once for all the steps,
    so a flow of thousands of steps in one module pins as fast per step as a
    small one; the steps also see one text of each module, even if it is
    written to while they are pinned.
    """
    steps = steps if isinstance(steps, tuple | list) else list(steps)
    # A flow recorded again finds every pin kept: no shared tables are set up for it.
    key = _root_key(project_root)
    pins: dict[str, PinnedStep] = {}
    for item in steps:
        kept = _kept_pin(item, key)
        if kept is None:
            pins = _pin_all(steps, project_root)
            break
        pins[item.name] = kept
    # Steps of one module name the same code value: encoded and hashed once for all.
    payloads: dict[int, tuple[bytes, Digest]] = {}
    for pinned in pins.values():
        if "code_payloads" in pinned.__dict__:
            continue  # a pin cached from an earlier run has them already
        encoded = []
        for source in pinned.sources.values():
            known = payloads.get(id(source))
            if known is None:
                payload = codec.encode(source, root="code")
                known = payloads[id(source)] = (payload, compute_digest(Kind.CODE, payload))
            encoded.append(known)
        # Filled in as the cached properties would compute them.
        pinned.__dict__["code_payloads"] = tuple(payload for payload, _ in encoded)
        pinned.__dict__["code_digests"] = tuple(digest for _, digest in encoded)
    return pins


def _pin_all(steps: Iterable[Step], project_root: Path) -> dict[str, PinnedStep]:
    """:func:`pin_step` of each step, sharing what they read, parse and walk."""
    token = _SHARED.set(_SHARED.get() or _Shared())
    try:
        with shared_definitions():
            return {item.name: pin_step(item, project_root) for item in steps}
    finally:
        _SHARED.reset(token)


def _root_key(project_root: Path) -> Path:
    """The project root pins are kept by: the folder it names now (a relative root
    names another after a chdir)."""
    return project_root if project_root.is_absolute() else Path.cwd() / project_root


def _kept_pin(step: Step, key: Path) -> PinnedStep | None:
    """The step's pin kept for the root ``key``, while its code still holds; else None."""
    cached = _PINS.get(step, {}).get(key)
    if cached is not None and (cached[0] is None or cached[0].guards.hold()):
        return cached[1]
    return None


def pin_step(step: Step, project_root: Path) -> PinnedStep:
    """Fingerprint ``step`` and gather the sources of the project modules it uses.

    Raises :class:`~pinrun.flows.FingerprintError` when the code cannot be
    fingerprinted and the step gives no ``version=``. Cached per process: the
    sources are the ones the loaded code came from, read when first pinned.
    """
    key = _root_key(project_root)
    kept = _kept_pin(step, key)
    if kept is not None:
        return kept
    pinned = _pin(step, project_root)
    _PINS.setdefault(step, {})[key] = pinned
    return pinned[1]


def _pin(step: Step, project_root: Path) -> tuple[Fingerprint | None, PinnedStep]:
    # The package a step is defined in is the project's, even when installed.
    with home_distributions(project_root, sys.modules.get(step.func.__module__)):
        return _pin_at_home(step, project_root)


def _pin_at_home(step: Step, project_root: Path) -> tuple[Fingerprint | None, PinnedStep]:
    try:
        found = fingerprint(step.func, project_root, step.hash_includes, step.ignore_globals)
    except FingerprintError:
        if step.version is None:
            raise
        found = None  # version= names the code: recorded, with no automatic fingerprint
    modules = set(found.modules) if found is not None else {step.func.__module__}
    shared = _SHARED.get()
    home = step.func.__module__
    if shared is None:
        modules |= _imported_project_modules(modules, project_root)
    else:
        key = (home, project_root, frozenset(modules))
        imported = shared.imported.get(key)
        if imported is None:
            imported = shared.imported[key] = frozenset(
                _imported_project_modules(modules, project_root))
        modules |= imported
    sources = {code["module"]: code for name in sorted(modules)
               if (code := _shared_source(home, name, project_root)) is not None}
    functions = found.functions if found is not None else (
        (step.func,) if isinstance(step.func, types.FunctionType) else ())
    _check_loaded(step, functions, sources)
    value = {
        "name": step.name, "module": module_identity(step.func.__module__),
        "function": step.func.__qualname__,
        "fingerprint": found.digest if found is not None else None, "version": step.version,
        "requires": list(step.requires), "optional": list(step.optional),
        "writes": sorted(step.writes) if step.writes is not None else None,
        "after": list(step.after) if step.after is not None else None,
        "is_async": step.is_async,
        # Without a fingerprint, the values hash_includes names still identify the code.
        "includes": _includes_digest(step) if found is None else None,
    }
    return found, PinnedStep(value, sources, found.state if found is not None else ())


def _includes_digest(step: Step) -> str | None:
    """A digest of the canonical values in ``hash_includes`` (names for the rest)."""
    if not step.hash_includes:
        return None
    parts = []
    for item in step.hash_includes:
        try:
            parts.append(["value", codec.encode(item).hex()])
        except PinrunError:
            parts.append(["name", f"{getattr(item, '__module__', '?')}."
                                  f"{getattr(item, '__qualname__', type(item).__qualname__)}"])
    return compute_digest(Kind.VALUE, codec.encode(parts)).hex


def _check_loaded(step: Step, functions: Iterable[types.FunctionType],
                  sources: Mapping[str, Mapping[str, str]]) -> None:
    """Refuse to pin source text that is not what the loaded functions were compiled from."""
    shared = _SHARED.get()
    compiled: dict[tuple[str, str], dict[tuple[str, int], types.CodeType]] = (
        shared.compiled if shared is not None else {})
    for func in functions:
        code = sources.get(func.__module__)
        if code is None:
            continue
        key = (code["source"], func.__code__.co_filename)
        functions_in = compiled.get(key)
        if functions_in is None:
            functions_in = compiled[key] = _code_index(
                compile(code["source"], func.__code__.co_filename, "exec", dont_inherit=True))
        if not _same_code(functions_in, func.__code__):
            raise StaleSourceError(
                f"step {step.name!r}: {code['path']} changed after it was imported, so its "
                f"text is not the code running {func.__qualname__!r}. Restart the process "
                "(or re-import the module) so that pinrun pins the code that runs.")


def _code_index(module_code: types.CodeType) -> dict[tuple[str, int], types.CodeType]:
    """Every code object in a compiled module by (qualified name, first line): the first
    met, depth first, when two share both (two lambdas on one line)."""
    index: dict[tuple[str, int], types.CodeType] = {}
    stack = [module_code]
    while stack:
        code = stack.pop()
        index.setdefault((code.co_qualname, code.co_firstlineno), code)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return index


def _same_code(functions_in: Mapping[tuple[str, int], types.CodeType],
               loaded: types.CodeType) -> bool:
    """Whether the module indexed as ``functions_in`` holds a function compiled exactly
    like ``loaded``."""
    code = functions_in.get((loaded.co_qualname, loaded.co_firstlineno))
    return code is not None and code.co_code == loaded.co_code and \
        code.co_names == loaded.co_names


def _imported_project_modules(modules: set[str], project_root: Path) -> set[str]:
    """The project modules that ``modules`` import, transitively (the source bundle)."""
    seen = set(modules)
    todo = list(modules)
    while todo:
        module = sys.modules.get(todo.pop())
        for value in vars(module).values() if module is not None else ():
            found = value if isinstance(value, types.ModuleType) else \
                sys.modules.get(getattr(value, "__module__", None) or "")
            if found is None or found.__name__ in seen or \
                    not is_project_local(found, project_root):
                continue
            seen.add(found.__name__)
            todo.append(found.__name__)
    return seen - modules


def _shared_source(home: str, name: str, project_root: Path) -> dict[str, str] | None:
    """:func:`_module_source`, read once per module while :func:`pin_steps` runs (pinned
    for a step of module ``home``, which decides what counts as the project's)."""
    shared = _SHARED.get()
    if shared is None:
        return _module_source(name, project_root)
    key = (home, project_root, name)
    if key not in shared.sources:
        shared.sources[key] = _module_source(name, project_root)
    return shared.sources[key]


def _module_source(name: str, project_root: Path) -> dict[str, str] | None:
    """The code value of project module ``name`` (a loaded module, or a script's identity).

    A module of the checkout is pinned with its path under the project root;
    one of an installed project distribution with its path inside the
    distribution and the distribution's name.
    """
    module = sys.modules.get(name) or main_module_for(name, project_root)
    path = getattr(module, "__file__", None)
    if module is None or path is None or not is_project_local(module, project_root):
        return None
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    if isinstance(loader, PinnedCodeLoader) and loader.provides(module.__name__):
        return loader.code_value(module.__name__)  # pinned again exactly as it was
    file = Path(path)
    if file.suffix != ".py":
        return None
    # The loader's text: what a pinned module was loaded from, else the file (decoded).
    get_source = getattr(getattr(module, "__loader__", None), "get_source", None)
    # `python -m pkg.job` runs pkg.job as __main__: its loader knows it by its own name.
    spec_name = getattr(getattr(module, "__spec__", None), "name", None)
    source = get_source(spec_name or module.__name__) if callable(get_source) else None
    text = (source if source is not None else file.read_bytes().decode("utf-8"))
    text = text.replace("\r\n", "\n")
    identity = module_identity(module.__name__, project_root)
    resolved, root = file.resolve(), project_root.resolve()
    if resolved.is_relative_to(root):
        return {"module": identity, "path": resolved.relative_to(root).as_posix(), "source": text}
    installed = installed_as(module)
    if installed is None:
        return None
    dist, inside = installed
    return {"module": identity, "path": inside, "source": text, "distribution": dist}


def flow_value(flow: Flow, step_digests: list[Any], code_digests: list[Any]) -> dict[str, Any]:
    """The flow's description: name, policies, levels, steps and its own code (by digest)."""
    return {
        "name": flow.name, "on_collision": flow.on_collision,
        "max_concurrency": flow.max_concurrency, "steps": step_digests,
        "levels": [[item.name for item in level] for level in flow.levels],
        "code": code_digests,
    }


def flow_sources(entry: str | None, pins: Sequence[PinnedStep],
                 project_root: Path) -> dict[str, dict[str, str]]:
    """The code a flow needs beyond its steps': the module defining it, and the packages.

    That is the module of ``entry`` (``module:attribute``) and every project
    package above it or above a step's module, so the pinned code imports
    alone, without the files on disk.
    """
    names = {_entry_module(entry, project_root)} if entry else set()
    for pinned in pins:
        names |= set(pinned.sources)
    wanted = set(names)
    for name in names:
        parts = name.split(".")
        wanted |= {".".join(parts[:depth]) for depth in range(1, len(parts))}
    already = {module for pinned in pins for module in pinned.sources}
    found = {}
    for name in sorted(wanted - already):
        # A package of an installed project distribution is the project's too.
        with home_distributions(project_root, sys.modules.get(name)):
            code = _module_source(name, project_root)
        if code is not None:
            found[name] = code
    return found


def _entry_module(entry: str, project_root: Path) -> str:
    """The module an entry names: ``pkg.mod:flow``, or ``path/to/file.py:flow`` (a script)."""
    module = entry.rpartition(":")[0]
    if not module.endswith(".py"):
        return module
    return path_identity(module)
