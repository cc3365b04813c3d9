"""What counts as the user's project: the code pinrun pins, rather than the environment.

A project is what the user deploys. It may run from a source checkout (the
project root: the folder holding the store's ``.pinrun``, or the working
folder) or from installed distributions (``pip install .`` in a Docker
image). So a module is the project's own code when:

* pinrun loaded it from a run's pinned code (replay with the pinned code);
* its file lies under the project root, outside site-packages and the
  standard library (a checkout, an editable install, a script);
* or it belongs to a **project distribution**: the one the project's
  ``pyproject.toml`` names, one installed from a folder inside the project
  (its ``direct_url.json`` says so), one listed in ``[tool.pinrun]
  distributions`` of that ``pyproject.toml`` or in ``$PINRUN_DISTRIBUTIONS``
  (comma-separated), or the one providing the module of the step (or flow)
  being pinned, declared for the block with :func:`home_distributions`.

pinrun itself and the distributions it runs on never count: they are the
verifier, not the code it judges.

A script run as ``python jobs/nightly.py`` defines its steps in ``__main__``.
:func:`module_identity` names it by its place in the project
(``jobs.nightly``), so its code is pinned, fingerprinted and replayed under
that name, never as ``__main__``: replay never runs a main block.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import sysconfig
import types
import urllib.parse
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pinrun.flows.installed import file_names, top_level_owners
from pinrun.flows.variables import environment_variable

__all__ = ["DISTRIBUTIONS_VARIABLE", "PinnedCodeLoader", "distribution_of",
           "home_distributions", "installed_as", "is_library_file", "is_project_distribution",
           "is_project_file",
           "is_project_local", "main_module_for", "may_install_project", "module_identity",
           "normalized",
           "outside_project", "owners_of", "owners_of_module", "path_identity",
           "pinrun_requirements", "project_context", "pyproject", "resolved_file", "script_path"]

#: The environment variable naming more project distributions (comma-separated).
DISTRIBUTIONS_VARIABLE = "PINRUN_DISTRIBUTIONS"


class PinnedCodeLoader:
    """Marks the loader of a run's pinned code: what it loads is the project's."""

    def provides(self, name: str) -> bool:
        """Whether module ``name`` is one of the pinned modules it serves."""
        raise NotImplementedError

    def code_value(self, name: str) -> dict[str, str]:
        """The pinned code value module ``name`` was loaded from (pinned again as it was)."""
        raise NotImplementedError


# ------------------------------------------------------------ files


# Caches below are owner-free on purpose: they answer from paths, distribution names and
# installed metadata (fixed for a process), never from loaded module objects or class names.
@functools.cache
def _excluded_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple(Path(paths[key]).resolve() for key in keys if key in paths)


@functools.lru_cache(maxsize=4096)  # resolve() asks the file system, and modules repeat
def _is_local_path(path: str, project_root: Path) -> bool:
    if _POSIX and _plain_absolute(path):
        # The text resolved_file(path) would give, made without a Path: a fresh worker
        # asks for each of its hundreds of loaded modules, most of them outside the root
        # (that answer is the same: a file that is a link goes the long way below).
        folder, name = os.path.split(path)
        inside = _resolved_folder_text(folder) + name
        if not inside.startswith(_resolved_text(project_root)) and not os.path.islink(inside):
            return False
    resolved, root = resolved_file(path), _resolved(project_root)
    # Most modules lie outside the root: a path whose text does not start with the root's
    # is not under it (POSIX compares parts as written), told without relative_to's
    # ValueError, raised and caught for each of a fresh worker's hundreds of modules.
    if _POSIX and not str(resolved).startswith(str(root)):
        return False
    return resolved.is_relative_to(root) and not is_library_file(path)


_POSIX = os.name == "posix"


@functools.lru_cache(maxsize=4096)
def resolved_file(path: str) -> Path:
    """``Path(path).resolve()``, asked once per path; an absolute path through its folder's
    answer (kept for the folder's other files: a fresh worker asks for every loaded
    module's file, and ``resolve`` walks every part of a path)."""
    plain = Path(path)
    folder, name = os.path.split(str(plain))
    if not plain.is_absolute() or name in ("", "..") or folder == str(plain):
        return plain.resolve()
    inside = _resolved_folder(folder) / name
    # Only a link in the last part makes resolve() go elsewhere from the folder's answer.
    return plain.resolve() if os.path.islink(inside) else inside


@functools.lru_cache(maxsize=1024)
def _resolved_folder(folder: str) -> Path:
    return Path(folder).resolve()


@functools.lru_cache(maxsize=1024)
def _resolved_folder_text(folder: str) -> str:
    """``str(_resolved_folder(folder) / name)`` less the name: the text ends in "/"."""
    text = str(_resolved_folder(folder))
    return text if text.endswith("/") else f"{text}/"


def _plain_absolute(path: str) -> bool:
    """Whether ``path`` is absolute and its own ``str(Path(path))`` (POSIX), ending in a
    name: no empty or ``.`` parts, no "/" at its end, not ``..`` last."""
    return path.startswith("/") and "//" not in path and "/./" not in path and \
        not path.endswith(("/", "/.", "/.."))


@functools.lru_cache(maxsize=64)
def _resolved_text(project_root: Path) -> str:
    """``str(_resolved(project_root))``, made once."""
    return str(_resolved(project_root))


@functools.lru_cache(maxsize=4096)
def is_library_file(path: str) -> bool:
    """Whether the file at ``path`` belongs to the standard library or an installed
    package (site-packages, dist-packages): never a project's."""
    resolved = resolved_file(path)
    return bool({"site-packages", "dist-packages"} & set(resolved.parts)) or \
        any(resolved.is_relative_to(root) for root in _excluded_roots())


def is_project_file(path: str, project_root: Path) -> bool:
    """Whether the file at ``path`` is the project's own: under the root, outside
    site-packages, dist-packages and the standard library."""
    return _is_local_path(path, project_root)


# ---------------------------------------------------- distributions


@functools.lru_cache(maxsize=4096)
def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def owners_of(top_level: str) -> tuple[str, ...]:
    """The installed distributions that provide top-level module ``top_level`` (often none),
    as ``importlib.metadata.packages_distributions()`` names them (read lazily: a fresh
    worker asks before its first replay)."""
    return top_level_owners(top_level)


@functools.lru_cache(maxsize=256)
def _installed_files(dist: str) -> tuple[Path, frozenset[str]]:
    """Where ``dist`` is installed (resolved), and its Python files relative to there."""
    found = importlib.metadata.distribution(dist)
    base = Path(str(found.locate_file(""))).resolve()
    # RECORD paths are relative to the install folder: compared as text, not resolved
    # one by one (a large distribution lists thousands).
    return base, frozenset(name.replace("\\", "/") for name in file_names(found) or ()
                           if name.endswith(".py"))


@functools.lru_cache(maxsize=4096)
def _distribution_of_file(top_level: str, file: str) -> tuple[str, str] | None:
    resolved = resolved_file(file)
    for dist in owners_of(top_level):
        try:
            base, files = _installed_files(dist)
        except (importlib.metadata.PackageNotFoundError, OSError, ValueError):
            continue
        if resolved.is_relative_to(base):
            inside = resolved.relative_to(base).as_posix()
            if inside in files:
                return dist, inside
    return None


@functools.lru_cache(maxsize=256)
def _layout(dist: str) -> tuple[frozenset[str], frozenset[str]]:
    """The Python files ``dist`` installed and the folders holding them (relative)."""
    _, files = _installed_files(dist)
    folders = {parent for file in files
               for parent in ("/".join(file.split("/")[:depth])
                              for depth in range(1, file.count("/") + 1))}
    return files, frozenset(folders)


def owners_of_module(name: str) -> tuple[str, ...]:
    """The installed distributions that provide module ``name`` itself.

    A distribution owns ``a.b.c`` when it installed ``a/b/c.py`` or files under
    ``a/b/c/``, or made ``a`` or ``a.b`` a regular package (``__init__.py``):
    a namespace package (``acme``) shared by several distributions and the
    project belongs to none of them as a whole.
    """
    parts = name.split(".")
    path = "/".join(parts)
    found = []
    for dist in owners_of(parts[0]):
        try:
            files, folders = _layout(dist)
        except (importlib.metadata.PackageNotFoundError, OSError, ValueError):
            continue
        packages = ("/".join(parts[:depth]) + "/__init__.py" for depth in range(1, len(parts)))
        if f"{path}.py" in files or path in folders or any(p in files for p in packages):
            found.append(dist)
    return tuple(found)


def outside_project(module_name: str, project_root: Path) -> str | None:
    """Why module ``module_name`` would not come from the project, or None.

    It is the project's when a project distribution provides it, when it is not
    found at all (importing fails as usual), or when its top-level package lies
    in the project folder or the working folder (a shared store may live
    elsewhere), outside site-packages. Finding a top-level module's spec runs
    none of its code (only a submodule's would import its parents).
    """
    if any(is_project_distribution(dist, project_root) for dist in owners_of_module(module_name)):
        return None
    places = _module_places(module_name)
    if places is None:
        return None  # found nowhere: importing it fails as usual, or only the pin has it
    root = project_root.resolve()
    roots = {root}
    cwd = Path.cwd().resolve()
    if not root.is_relative_to(cwd):
        roots.add(cwd)  # the working folder, unless it merely contains the project
    if any(_is_local_path(place, where) for place in places for where in roots):
        return None
    shown = f" (it is at {places[0]})" if places else ""
    return (f"is neither in the project folder {root} nor in the working folder{shown}")


def _module_places(name: str) -> list[str] | None:
    """Where module ``name`` would load from, found without running any of its code.

    The top-level module's spec, then down through namespace packages (which
    run nothing) portion by portion, until a module file or a regular package
    decides. None when it is found nowhere.
    """
    parts = name.split(".")
    loaded = sys.modules.get(parts[0])
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        portions = list(getattr(loaded, "__path__", []))
    else:
        try:
            spec = importlib.util.find_spec(parts[0])
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        origin = spec.origin if spec.has_location else None
        portions = list(spec.submodule_search_locations or [])
    for part in parts[1:]:
        if isinstance(origin, str) or not portions:
            break  # a module or a regular package: its file decides for what is inside
        found: list[str] = []
        for portion in portions:
            folder = Path(portion) / part
            if (folder / "__init__.py").is_file():
                return [str(folder / "__init__.py")]
            if Path(portion, f"{part}.py").is_file():
                return [str(Path(portion, f"{part}.py"))]
            if folder.is_dir():
                found.append(str(folder))
        if not found:
            return None
        portions = found
    return [origin] if isinstance(origin, str) else portions


def distribution_of(module: types.ModuleType) -> str | None:
    """The installed distribution whose files hold ``module`` (None: not installed)."""
    found = installed_as(module)
    return found[0] if found is not None else None


def installed_as(module: types.ModuleType) -> tuple[str, str] | None:
    """The distribution installing ``module`` and its path inside the folder that
    distribution is installed in, or None when it is not an installed file."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    return _distribution_of_file(module.__name__.split(".")[0], file)


# Owner-free on purpose: pinrun's own requirement closure, fixed for the process.
@functools.cache
def pinrun_requirements() -> frozenset[str]:
    """pinrun and every distribution it runs on (normalized): never the project's code."""
    from pinrun.flows.requirements import requirement_closure  # it builds on this module

    return frozenset({"pinrun", *(normalized(name) for name, _ in requirement_closure(["pinrun"]))})


#: Distributions the code being pinned comes from, for the block (see home_distributions).
_HOME: ContextVar[frozenset[str]] = ContextVar("pinrun_home_distributions",
                                               default=frozenset())
#: The project root of the code being pinned, for the block (names a script).
_ROOT: ContextVar[Path | None] = ContextVar("pinrun_project_root", default=None)


@contextlib.contextmanager
def home_distributions(project_root: Path, *modules: types.ModuleType | None) -> Iterator[None]:
    """Within the block, the distributions providing ``modules`` are project code.

    A step defined in an installed package is the user's code, and so is the
    rest of the package it comes from: pinning declares it for the step (and
    the project root, by which a script is named: :func:`module_identity`).
    """
    found = {normalized(dist) for module in modules if module is not None
             if (dist := distribution_of(module)) is not None}
    home, root = _HOME.set(_HOME.get() | found), _ROOT.set(project_root)
    try:
        yield
    finally:
        _HOME.reset(home)
        _ROOT.reset(root)


def pyproject(project_root: Path) -> dict[str, Any]:
    """The project's ``pyproject.toml``, parsed (empty when absent or not TOML); read
    again only when the file changed (by size and time), as it is asked per replay.
    The answer is shared: never change it."""
    return _pyproject_read(project_root)[0]


def _pyproject_read(project_root: Path) -> tuple[dict[str, Any], frozenset[str]]:
    """``pyproject.toml`` parsed, and the distribution names it gives (as written)."""
    path = _pyproject_path(project_root)
    # Asked several times per replay: a missing file (the usual case for a script's
    # folder) is answered without raising and catching an exception.
    if not os.access(path, os.F_OK):
        return _NO_PYPROJECT
    try:
        info = os.stat(path)
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
    except OSError:
        return _NO_PYPROJECT
    known = _PYPROJECTS.get(path)
    if known is not None and known[0] == key:
        return known[1]
    # Imported here: most projects a verify worker replays have no pyproject.toml, and
    # the parser is a tenth of what pinrun's own import costs the worker's start.
    import tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        data = {}
    if len(_PYPROJECTS) > 64:
        _PYPROJECTS.clear()
    read = data, frozenset(_names_in(data))
    _PYPROJECTS[path] = (key, read)
    return read


@functools.lru_cache(maxsize=64)
def _pyproject_path(project_root: Path) -> str:
    return os.path.join(project_root, "pyproject.toml")


#: Per pyproject.toml: (its size and time when read, what it held and the names it gives).
_PYPROJECTS: dict[str, tuple[tuple[int, int, int], tuple[dict[str, Any], frozenset[str]]]] = {}
_NO_PYPROJECT: tuple[dict[str, Any], frozenset[str]] = ({}, frozenset())


def _configured(project_root: Path, variable: str) -> frozenset[str]:
    """The project's distributions as its ``pyproject.toml`` and the environment name them."""
    names = _named(project_root, variable)
    return frozenset(normalized(name) for name in names) - pinrun_requirements() \
        if names else frozenset()


def _named(project_root: Path, variable: str) -> set[str]:
    """The distribution names ``pyproject.toml`` and the environment give, as written."""
    return {part.strip() for part in variable.split(",") if part.strip()} | \
        _pyproject_names(project_root)


def _pyproject_names(project_root: Path) -> frozenset[str]:
    """The distribution names ``pyproject.toml`` gives, as written."""
    return _pyproject_read(project_root)[1]


def _names_in(data: dict[str, Any]) -> set[str]:
    """The distribution names a parsed ``pyproject.toml`` gives, as written."""
    names: set[str] = set()
    project = data.get("project") if isinstance(data, dict) else None
    if isinstance(project, dict) and isinstance(project.get("name"), str):
        names.add(project["name"])
    tool = data.get("tool", {}).get("pinrun", {}) if isinstance(data.get("tool"), dict) else {}
    listed = tool.get("distributions", []) if isinstance(tool, dict) else []
    if isinstance(listed, list):
        names |= {item for item in listed if isinstance(item, str)}
    return names


def project_context(project_root: Path
                    ) -> tuple[str, frozenset[str], frozenset[str], str, tuple[str, ...]]:
    """What, besides the project root, decides what is the project's now (a cache key
    for answers that depend on it): the named distributions (by the environment, for
    the block, by the root's ``pyproject.toml``), the working folder and where imports
    are found."""
    return (environment_variable(DISTRIBUTIONS_VARIABLE) or "", _HOME.get(),
            _pyproject_names(_resolved(project_root)), os.getcwd(), tuple(sys.path))


def is_project_distribution(dist: str, project_root: Path) -> bool:
    """Whether installed distribution ``dist`` is the project's own code (see the module)."""
    name = normalized(dist)
    if name in pinrun_requirements():
        return False
    root = _resolved(project_root)
    if name in _HOME.get() or \
            name in _configured(root, os.environ.get(DISTRIBUTIONS_VARIABLE, "")):
        return True
    return _installed_from(dist, root)


@functools.lru_cache(maxsize=64)
def _resolved(project_root: Path) -> Path:
    """The project root, resolved once: asked for every installed module a replay sees."""
    return project_root.resolve()


@functools.lru_cache(maxsize=256)
def _installed_from(dist: str, root: Path) -> bool:
    """Whether ``dist`` was installed from a folder inside ``root`` (``direct_url.json``)."""
    try:
        found = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return _installed_inside(found, root)


def _installed_inside(dist: importlib.metadata.Distribution, root: Path) -> bool:
    try:
        text = dist.read_text("direct_url.json")
        url = json.loads(text)["url"] if text else None
    except (ValueError, KeyError, TypeError):
        return False
    parsed = urllib.parse.urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme != "file":
        return False
    return Path(urllib.parse.unquote(parsed.path)).resolve().is_relative_to(root)


def may_install_project(project_root: Path) -> bool:
    """Whether an installed distribution may be the project's: one named for the block
    (:func:`home_distributions`), by ``pyproject.toml`` or the environment, or one
    installed from a folder inside the project. When none may, a module outside the
    project folder is not the project's, whoever installed it, and no owner is looked up
    (:func:`is_project_local` with ``installed=False``)."""
    root = _resolved(project_root)
    return bool(_HOME.get()) or bool(_named(root, os.environ.get(DISTRIBUTIONS_VARIABLE, ""))) \
        or _any_installed_inside(root)


# Owner-free on purpose, as _installed_from: installed metadata, fixed for a process.
@functools.lru_cache(maxsize=64)
def _any_installed_inside(root: Path) -> bool:
    """Whether any installed distribution says it was installed from inside ``root``
    (read from every distribution's ``direct_url.json``: most have none)."""
    return any(_installed_inside(dist, root) for dist in importlib.metadata.distributions())


# ---------------------------------------------------------- modules


def is_project_local(module: types.ModuleType, project_root: Path, *,
                     installed: bool = True) -> bool:
    """True when ``module`` is the project's own code rather than its environment.
    ``installed=False`` says no installed distribution may be the project's
    (:func:`may_install_project` said so): then where its file lies decides."""
    if module.__name__ == "pinrun" or module.__name__.startswith("pinrun."):
        return False
    if isinstance(getattr(getattr(module, "__spec__", None), "loader", None), PinnedCodeLoader):
        return True
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return False
    if _is_local_path(file, project_root):
        return True
    if not installed:
        return False
    dist = distribution_of(module)
    return dist is not None and is_project_distribution(dist, project_root)


def _identifier(part: str) -> str:
    cleaned = re.sub(r"\W", "_", part)
    return f"_{cleaned}" if not cleaned or cleaned[0].isdigit() else cleaned


def module_identity(name: str, project_root: Path | None = None) -> str:
    """The name a module is pinned and replayed under: its own, except for a script.

    ``__main__`` run with ``python -m pkg.job`` is ``pkg.job``; run as
    ``python jobs/nightly.py`` it is named by its path under the project root
    (``jobs.nightly``; parts that are not identifiers get underscores), or by
    its file name when it lies elsewhere. The root is ``project_root``, else
    the one being pinned (:func:`home_distributions`), else the working folder.
    """
    if name != "__main__":
        return name
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if isinstance(spec_name, str) and spec_name and spec_name != "__main__":
        return spec_name  # python -m pkg.job (or pkg: pkg.__main__)
    file = getattr(main, "__file__", None)
    if not isinstance(file, str):
        return name
    path = Path(file).resolve()
    root = (project_root or _ROOT.get() or Path.cwd()).resolve()
    return path_identity(path.relative_to(root).as_posix() if path.is_relative_to(root)
                         else path.name)


def path_identity(relative_path: str) -> str:
    """The module name a script is pinned under: ``jobs/nightly-run.py`` -> ``jobs.nightly_run``."""
    parts = Path(relative_path.removesuffix(".py")).parts
    return ".".join(_identifier(part) for part in parts)


def script_path(identity: str, project_root: Path | None = None) -> str | None:
    """The script ``__main__`` runs, relative to the project root, when it is ``identity``.

    Scripts whose path is not a dotted name (``jobs/nightly-run.py``) are
    recorded by path: importing their identity would not find them.
    """
    main = main_module_for(identity, project_root)
    file = getattr(main, "__file__", None)
    if main is None or not isinstance(file, str) or \
            getattr(getattr(main, "__spec__", None), "name", None) not in (None, "__main__"):
        return None
    path = Path(file).resolve()
    root = (project_root or _ROOT.get() or Path.cwd()).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else None


def main_module_for(identity: str, project_root: Path | None = None) -> types.ModuleType | None:
    """``__main__``, when it is the script named ``identity`` (see :func:`module_identity`)."""
    main = sys.modules.get("__main__")
    if main is None or identity == "__main__" or \
            module_identity("__main__", project_root) != identity:
        return None
    return main
