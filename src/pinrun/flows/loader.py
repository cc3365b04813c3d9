"""Loading a flow's code: from the files on disk, or as it was pinned in the store.

A run pins the exact source of every project module its steps came from
(``code`` objects). :func:`pinned_modules` imports those sources in place of
the files on disk for as long as the block lasts: a finder placed first on
``sys.meta_path`` serves the pinned modules, and their source lines are given
to ``linecache`` so tracebacks, ``inspect.getsource`` and therefore the
fingerprint all see the pinned text. Modules the run did not pin (the
standard library, installed packages, project modules no step used) load as
usual. When the block ends, the modules that were loaded before it are put
back, so the caller's own imports are left as they were.

The module names come from the store, which may hold bytes written by someone
else, so pinned code may only provide the recorded project's own modules:
before anything is imported, :func:`pinned_modules` refuses (with
:class:`PinnedModuleError`) a name that is not a dotted identifier, that is
``pinrun`` or under it, that is in the standard library, or whose top-level
package an installed distribution other than the project provides (what the
project is, this machine's configuration says, never the record). Otherwise
pinned text could stand in for the verifier judging it, or for ``json``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import keyword
import linecache
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.kept import Kept
from pinrun.artifacts.store import Store
from pinrun.errors import PinnedModuleError
from pinrun.flows.project import (
    DISTRIBUTIONS_VARIABLE,
    PinnedCodeLoader,
    is_project_distribution,
    normalized,
    outside_project,
    owners_of_module,
    pinrun_requirements,
    project_context,
)

__all__ = ["PinnedModuleError", "check_pinned_module", "is_project_distribution",
           "pinned_modules",
           "pinned_sources", "project_on_path"]

#: A pinned module's code value: ``{"module", "path", "source"}``.
CodeValue = dict[str, str]


@contextmanager
def project_on_path(project_root: Path) -> Iterator[None]:
    """The project folder on ``sys.path`` for the block (its modules import as they did)."""
    entry = str(project_root)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def pinned_sources(store: Store, flow_digest: Digest) -> dict[str, CodeValue]:
    """Module name -> pinned code value: every code object a pinned flow names.

    That is the code of each step (its modules and the project modules they
    import) and the flow's own (the module defining it, and the packages).
    A code object that is not ``{"module", "path", "source"}`` strings with a
    relative ``.py`` path inside the project raises
    :class:`~pinrun.errors.CorruptObjectError` (pinrun never writes one).
    Which names may load is :func:`pinned_modules`' call, not this one's: the
    sources are also read as text (the environment a run would have).
    """
    # Read once per store and process: a digest names one content forever, and a
    # verify worker replays many runs of one pin. Each caller gets its own dict.
    key = (store.path, flow_digest)
    cached = _SOURCES.get(key)
    if cached is None:
        cached = _SOURCES.put(key, _read_pinned_sources(store, flow_digest))
    return dict(cached)


#: Pinned sources read, per store path and flow pin (see :func:`pinned_sources`).
_SOURCES: Kept[tuple[Path, Digest], dict[str, CodeValue]] = Kept(64)


def _read_pinned_sources(store: Store, flow_digest: Digest) -> dict[str, CodeValue]:
    # get_object checks each object's shape (artifacts/shapes.py): digests where
    # digests go, and code paths that are relative .py paths inside the project.
    flow = store.get_object(flow_digest, Kind.FLOW)
    code_digests: list[Digest] = list(flow.get("code") or [])
    for step_digest in flow["steps"]:
        code_digests += store.get_object(step_digest, Kind.STEP)["code"]
    sources: dict[str, CodeValue] = {}
    for code_digest in code_digests:
        code = store.get_object(code_digest, Kind.CODE)
        sources[code["module"]] = code
    return sources


def check_pinned_module(name: object, project_root: Path, context: object = None) -> None:
    """Raise :class:`PinnedModuleError` unless pinned code may provide module ``name``.

    What the project is, this machine says (:mod:`pinrun.flows.project`), never
    the record: a code object naming the distribution it came from is not
    believed (a crafted one could claim to be numpy). ``context`` is
    :func:`~pinrun.flows.project.project_context` when the caller already has it.
    """
    if type(name) is not str:
        raise PinnedModuleError(repr(name), "is not a module name")
    reason = _refusal(name, project_root, context or project_context(project_root))
    if reason is not None:
        raise PinnedModuleError(name, reason)


# Owner-free on purpose: keyed by the name, root and project context; it reads installed
# distributions and the configuration, never the loaded modules pinned replay swaps.
@functools.lru_cache(maxsize=4096)
def _refusal(name: str, project_root: Path, context: object) -> str | None:
    """Why ``name`` may not come from pinned code, or None. Installed packages do not
    change under a running process, so the answer is kept for the ``context``
    (what else the project names: :func:`~pinrun.flows.project.project_context`)."""
    parts = name.split(".")
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        return "is not a valid dotted module name"
    top = parts[0]
    if top == "pinrun":
        return "is pinrun itself"
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return "is part of the standard library"
    # A project package installed here may be stood in for by its pinned code (that
    # is what pinned replay is); any other installed distribution may not.
    others = [dist for dist in owners_of_module(name)
              if not is_project_distribution(dist, project_root)]
    if others:
        hint = "" if normalized(others[0]) in pinrun_requirements() else (
            f" (if it is your project's, name it: {DISTRIBUTIONS_VARIABLE}={others[0]}, or "
            "[tool.pinrun] distributions in pyproject.toml)")
        return f"belongs to the installed distribution {others[0]!r}{hint}"
    # Installed without a distribution this machine can map (a folder on PYTHONPATH, a
    # .pth editable install): pinned text may not stand in for it either.
    return outside_project(name, project_root)


# Owner-free on purpose: keyed by the source text itself (content), not by a module name.
@functools.lru_cache(maxsize=512)
def _compiled(source: str, filename: str) -> types.CodeType:
    """Pinned sources never change: each is compiled once per process."""
    return compile(source, filename, "exec", dont_inherit=True)


class _PinnedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader, PinnedCodeLoader):
    """Finds and loads the pinned modules; everything else is left to the next finder."""

    def __init__(self, sources: Mapping[str, CodeValue], project_root: Path) -> None:
        self.sources = sources
        self.root = project_root

    def filename(self, name: str) -> str:
        return _joined(self.root, self.sources[name]["path"])

    def provides(self, name: str) -> bool:
        return name in self.sources

    def code_value(self, name: str) -> dict[str, str]:
        return {key: value for key, value in self.sources[name].items() if value is not None}

    def find_spec(self, fullname: str, path: Any = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.sources:
            return None
        filename = self.filename(fullname)
        package = Path(filename).name == "__init__.py"
        spec = importlib.util.spec_from_loader(fullname, self, origin=filename,
                                               is_package=package)
        if spec is not None:
            spec.has_location = True  # sets __file__, which locality checks rely on
            if package:  # unpinned submodules still load from the package folder
                spec.submodule_search_locations = [str(Path(filename).parent)]
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        source = self.sources[name]["source"]
        filename = self.filename(name)
        exec(_compiled(source, filename), module.__dict__)

    def get_source(self, fullname: str) -> str:
        return self.sources[fullname]["source"]


class _PinnedParents(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: a package above pinned modules that nothing else finds
    (``jobs`` of a script ``jobs/nightly.py`` replayed where that folder is missing)
    is an empty namespace package, as a folder without ``__init__.py`` would be."""

    def __init__(self, sources: Mapping[str, CodeValue], project_root: Path) -> None:
        self.parents = {".".join(name.split(".")[:depth]) for name in sources
                        for depth in range(1, name.count(".") + 1)} - set(sources)
        self.root = project_root

    def find_spec(self, fullname: str, path: Any = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.parents:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = [str(self.root.joinpath(*fullname.split(".")))]
        return spec


@contextmanager
def pinned_modules(sources: Mapping[str, CodeValue], project_root: Path, *,
                   reuse: Mapping[str, types.ModuleType] | None = None,
                   ) -> Iterator[dict[str, types.ModuleType]]:
    """Within the block, importing a pinned module gives its pinned source.

    ``reuse`` is what an earlier block of the same ``sources`` gave: those
    module objects are put back as they are, instead of running the sources
    again (whether they may serve again is the caller's call: see
    :mod:`pinrun.verifier.kept_code`). Yields a dict that, once the block has
    ended, holds the modules that left with it: the pinned ones and the project
    modules first imported under them.

    Raises :class:`PinnedModuleError` before anything is loaded or changed when
    a pinned name is not one the recorded project may provide.
    """
    context = project_context(project_root)
    for name in sources:
        check_pinned_module(name, project_root, context)
    finder = _PinnedFinder(sources, project_root)
    saved = {name: sys.modules.pop(name) for name in list(sources) if name in sys.modules}
    if reuse:
        saved.update((name, sys.modules.pop(name)) for name in list(reuse)
                     if name in sys.modules)
    # In the order they came: what the block adds comes after (see _added).
    before = list(sys.modules)
    saved_lines = {}
    for name, code in sources.items():
        filename = finder.filename(name)
        saved_lines[filename] = linecache.cache.get(filename)
        # mtime None: linecache.checkcache leaves the entry alone instead of re-reading disk.
        linecache.cache[filename] = _lines(code["source"], filename)
    parents = _PinnedParents(sources, project_root)
    sys.meta_path.insert(0, finder)
    sys.meta_path.append(parents)
    if reuse:  # the import caches were made fresh when these were first loaded
        sys.modules.update(reuse)
        # sys.modules now: ``before`` and the modules put back (see the block's end).
        version = _dict_version(sys.modules)
        for name, module in reuse.items():  # ``a.b`` is the pinned b again
            _restore_parent_attribute(name, module)
    else:
        version = _dict_version(sys.modules)
        importlib.invalidate_caches()
    left: dict[str, types.ModuleType] = {}
    try:
        yield left
    finally:
        sys.meta_path.remove(finder)
        sys.meta_path.remove(parents)
        # Pinned modules, and project modules first imported under them (which
        # may hold references to pinned code), leave with the block. When sys.modules
        # did not change in the block (kept code: the usual case), what came since
        # ``before`` is what was put back, without listing its names again.
        new = set(reuse or ()) if version is not None and \
            _dict_version(sys.modules) == version else _added(before)
        known = set(sources) | set(reuse or ())  # leaving, whatever their files
        leaving = known | (parents.parents & new) | {
            name for name in new - known if _under(sys.modules[name], project_root)}
        for name in leaving:
            gone: object = cast("dict[str, object]", sys.modules).pop(name, None)
            if isinstance(gone, types.ModuleType):
                left[name] = gone
        sys.modules.update(saved)
        for name in leaving:
            _restore_parent_attribute(name, saved.get(name))
        for filename, entry in saved_lines.items():
            if entry is None:
                linecache.cache.pop(filename, None)
            else:
                linecache.cache[filename] = entry


def _no_version(value: dict[Any, Any]) -> int | None:
    """Where pinrun's C module is not built: no version tag (``_added`` decides)."""
    return None


try:
    # Changes whenever the dict does: the same number means the same names, in order.
    from pinrun.artifacts._speedups import dict_version as _dict_version
except ImportError:  # pragma: no cover - no compiler
    _dict_version = _no_version


def _added(before: list[str]) -> set[str]:
    """The names in ``sys.modules`` now that were not in ``before`` (a list of its names).

    ``sys.modules`` keeps its order: names added later come after the ones kept,
    so when ``before`` is still its beginning (nothing removed), the names after it
    are the new ones; checked name by name with no hashing (a worker holds about a
    thousand modules, and pinned replay asks at every replay)."""
    now = list(sys.modules)
    if now[:len(before)] == before:
        return set(now[len(before):])
    return set(now) - set(before)


# Owner-free on purpose: keyed by a folder and a relative path (text).
@functools.lru_cache(maxsize=1024)
def _joined(root: Path, path: str) -> str:
    """The file name of a pinned source under ``root`` (joined once per process)."""
    return str(root / path)


# Owner-free on purpose: keyed by the source text itself (content) and its file name.
@functools.lru_cache(maxsize=512)
def _lines(source: str, filename: str) -> tuple[int, None, list[str], str]:
    """The ``linecache`` entry of a pinned source (split once per process)."""
    return (len(source), None, source.splitlines(keepends=True), filename)


def _under(module: types.ModuleType, project_root: Path) -> bool:
    """Whether ``module`` is a project module by its file: one under the root, never
    pinrun's own (a checkout of pinrun may hold the project; pinrun imports some of its
    modules when first needed, a pinned replay's block included)."""
    if module.__name__ == "pinrun" or module.__name__.startswith("pinrun."):
        return False
    file = getattr(module, "__file__", None)
    return isinstance(file, str) and Path(file).resolve().is_relative_to(project_root.resolve())


def _restore_parent_attribute(name: str, module: types.ModuleType | None) -> None:
    """``import a.b`` sets ``a.b``; point it back at the module loaded before the block."""
    parent_name, _, child = name.rpartition(".")
    parent = sys.modules.get(parent_name) if parent_name else None
    if parent is None:
        return
    if module is not None:
        setattr(parent, child, module)
    elif hasattr(parent, child):
        delattr(parent, child)
