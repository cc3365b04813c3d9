"""Finding a flow by its ``module:attribute`` entry, typed by the user or read from a record.

A user's ``pinrun run MODULE:FLOW`` imports what the user named. A recorded
run's entry is different: it comes from a store or bundle someone else may
have written, and importing a module runs it. So :func:`import_recorded_entry`
imports an entry only when it names a module of the recorded project itself:
a valid dotted name, not pinrun, not the standard library (``venv.__main__``
runs a command line when imported), not another installed distribution, and
found in the project folder (the one holding the store, or the working
folder, or installed from one of them), all checked before anything is
imported. A module already imported is simply used: importing it again runs
nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

from pinrun.errors import InputError, PinnedModuleError, UntrustedEntryError
from pinrun.flows.flow import Flow
from pinrun.flows.loader import check_pinned_module
from pinrun.flows.project import (
    PinnedCodeLoader,
    is_library_file,
    is_project_file,
    path_identity,
)

__all__ = ["import_entry", "import_recorded_entry", "load_script", "split_entry"]


def split_entry(entry: str) -> tuple[str, str]:
    """``module:attribute`` -> (module, attribute); a clear error when malformed."""
    module, sep, attribute = entry.rpartition(":")
    if not sep or not module or not attribute:
        raise InputError(f"{entry!r} does not name a flow: write MODULE:FLOW "
                         "(e.g. examples.pricing:flow) or path/to/file.py:FLOW.")
    return module, attribute


def import_entry(entry: str) -> Flow:
    """Import ``module:attribute`` (from ``sys.path``) and check that it is a flow.

    ``path/to/script.py:attribute`` (a path the user gave, relative to the
    working folder) imports the script under its identity
    (:func:`~pinrun.flows.project.path_identity`).
    """
    module_name, attribute = split_entry(entry)
    if module_name.endswith(".py"):
        identity = path_identity(module_name)
        module = sys.modules.get(identity) or load_script(
            Path(module_name).resolve(), identity, module_name)
        return _flow_in(module, module_name, attribute)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InputError(f"cannot import {module_name!r} ({exc}). Run pinrun from your "
                         "project folder, or give the file path: path/to/file.py:FLOW.") from exc
    except SyntaxError as exc:
        raise InputError(f"cannot import {module_name!r}: {exc.msg} ({exc.filename}, line "
                         f"{exc.lineno}). Fix the file; --code-policy artifact runs the "
                         "pinned code without importing it.") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a module's import must not end pinrun
        raise InputError(f"cannot import {module_name!r}: importing it raised "
                         f"{type(exc).__name__}: {exc}") from exc
    return _flow_in(module, module_name, attribute)


def _flow_in(module: types.ModuleType, shown: str, attribute: str) -> Flow:
    """The flow ``module`` binds to ``attribute``, read from its namespace (no module
    ``__getattr__`` runs), or an error saying what is there instead."""
    flow = vars(module).get(attribute)
    if not isinstance(flow, Flow):
        found = type(flow).__name__ if flow is not None else "nothing"
        raise InputError(f"{shown}:{attribute} is {found}, not a pinrun.Flow")
    return flow


def import_recorded_entry(entry: object, project_root: Path) -> Flow:
    """Import the flow a run record names, only if it is the recorded project's own.

    Raises :class:`~pinrun.errors.UntrustedEntryError` before importing
    anything when the entry is not a module of the project in
    ``project_root`` (the folder holding the store). What the project is,
    this machine says (:mod:`pinrun.flows.project`), never the record: a
    service installed with ``pip install .`` is the project's when
    ``pyproject.toml`` or ``$PINRUN_DISTRIBUTIONS`` names it.
    """
    if type(entry) is not str:
        raise UntrustedEntryError(repr(entry), "is not a module:attribute text")
    module_name, sep, attribute = entry.rpartition(":")
    if not sep or not attribute.isidentifier():
        raise UntrustedEntryError(entry, "is not of the form module:attribute")
    if module_name.endswith(".py"):
        return _import_script(entry, module_name, attribute, project_root)
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        # Already imported (the caller's own flow, say): nothing runs again.
        return _flow_in(loaded, module_name, attribute)
    try:  # the same test as pinned code's: the project's own module, found in the project
        check_pinned_module(module_name, project_root)
    except PinnedModuleError as refused:
        raise UntrustedEntryError(entry, refused.reason) from None
    return import_entry(entry)


def _import_script(entry: str, path: str, attribute: str, project_root: Path) -> Flow:
    """A flow recorded from a script whose path is not a dotted name (``jobs/run-it.py``).

    It is loaded under its identity (:func:`~pinrun.flows.project.path_identity`),
    never as ``__main__``: from the pinned code when that is being replayed,
    else from the file, which must lie inside the project folder.
    """
    identity = path_identity(path)
    try:
        check_pinned_module(identity, project_root)
    except PinnedModuleError as refused:
        raise UntrustedEntryError(entry, refused.reason) from None
    module = sys.modules.get(identity)
    pinned = [finder for finder in sys.meta_path if isinstance(finder, PinnedCodeLoader)]
    if module is None and pinned:
        # Replaying the pinned code: the script comes from it, never from a file.
        if not any(finder.provides(identity) for finder in pinned):
            raise UntrustedEntryError(entry, f"names the script {identity!r}, which the "
                                      "run's pinned code does not hold")
        try:
            module = importlib.import_module(identity)
        except ImportError as exc:
            raise InputError(f"cannot import {path} from the pinned code: {exc}") from exc
    elif module is None:
        module = _load_script_file(entry, path, identity, project_root)
    return _flow_in(module, path, attribute)


def _load_script_file(entry: str, path: str, identity: str,
                      project_root: Path) -> types.ModuleType:
    root = project_root.resolve()
    relative = Path(path)
    file = (root / relative).resolve()
    if relative.is_absolute() or ".." in relative.parts or not file.is_relative_to(root):
        raise UntrustedEntryError(entry, f"is not a file inside the project folder {root}")
    if not is_project_file(str(file), root):  # an installed package's file, say
        raise UntrustedEntryError(entry, "is not one of the project's own files (it lies in "
                                  "site-packages or the standard library)")
    if not file.is_file():
        raise InputError(f"cannot import {path}: there is no such file in {root}")
    return load_script(file, identity, path)


def load_script(file: Path, identity: str, shown: str) -> types.ModuleType:
    """Import the script ``file`` as module ``identity`` (never as ``__main__``).

    As Python runs a script, its folder comes first on ``sys.path`` while it
    loads, so the modules beside it import, and a module of that name another
    script's folder provided is not reused. Afterwards the folder stays, last
    (for imports a step makes later), shadowing nothing. ``shown`` names the
    script in errors.
    """
    folder = file.parent
    for name in _siblings(folder):
        loaded = sys.modules.get(name)
        where = getattr(loaded, "__file__", None) if loaded is not None else None
        if isinstance(where, str) and not is_library_file(where) and \
                Path(where).resolve().parent not in (folder, folder / name):
            del sys.modules[name]  # another script folder's module of that name
    entry = str(folder)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    try:
        return _exec_script(file, identity, shown)
    finally:
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.append(entry)


def _siblings(folder: Path) -> list[str]:
    """The top-level module names the files and packages in ``folder`` provide."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    return [child.stem if child.suffix == ".py" else child.name for child in children
            if (child.suffix == ".py" and child.stem.isidentifier())
            or (child.is_dir() and child.name.isidentifier()
                and (child / "__init__.py").is_file())]


def _exec_script(file: Path, identity: str, shown: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(identity, file)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {shown}: it is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[identity] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a module's import must not end pinrun
        sys.modules.pop(identity, None)
        raise InputError(f"cannot import {shown}: importing it raised "
                         f"{type(exc).__name__}: {exc}") from exc
    return module
