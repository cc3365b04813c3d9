"""The environment a run records: what outside the code can change a result.

An ``env`` object says where a run's code ran:

* ``python``, ``implementation``, ``platform`` (``linux-x86_64``) and
  ``machine`` (``platform.machine()``);
* ``hash_seed``: the ``PYTHONHASHSEED`` this interpreter started with, or
  ``"random"`` (the order of sets of strings then differs in every process);
* ``timezone``: an IANA key (``UTC``, ``Asia/Tokyo``) when one can be known,
  from ``$TZ``, else the ``/etc/localtime`` link, else ``time.tzname``;
* ``locale``: the locale categories Python reads, as ``locale.setlocale``
  reports them now, and the preferred encoding;
* ``distributions``: the versions of the installed distributions the
  project's modules import, with everything they require in turn (so numpy
  shows when a step imports only pandas), and of the project's own
  distributions, named in ``project``;
* ``linalg``: the BLAS and LAPACK numpy was built with, when numpy is among
  the distributions, read from the build configuration numpy installs
  (``numpy/__config__.py``, parsed as text: nothing is imported to find out,
  so the answer does not depend on whether a step imported numpy yet);
* ``home`` (the home folder ``~`` names), ``cwd`` (the working folder),
  ``umask`` (four octal digits, ``0022``) and ``hostname``: what a step that
  expands ``~``, opens a relative path, creates a file or names its machine
  can feel (:func:`place_state`).

Records written before the later fields existed still load; a field
absent from one side is never reported as drift (:func:`environment_changes`).
What cannot change in a process (versions, the hash seed) is read once;
the time zone, the locale and the place are read each time, cheaply.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.metadata
import importlib.util
import locale
import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pinrun.artifacts.shapes import is_hash_seed
from pinrun.errors import InputError, PinrunWarning
from pinrun.flows.project import owners_of
from pinrun.flows.requirements import requirement_closure
from pinrun.flows.variables import environment_variable

__all__ = [
    "Changing",
    "HashSeedWarning",
    "changing_environment",
    "environment",
    "environment_changes",
    "environment_with",
    "hash_seed_state",
    "locale_state",
    "place_state",
    "requirement_closure",
    "settled_environment",
    "time_zone",
    "warn_if_hash_seed_random",
]

#: The locale categories Python's own functions read (``str.upper`` does not;
#: ``time.strftime``, ``locale.atof``, ``locale.strcoll`` and gettext do).
LOCALE_CATEGORIES = ("LC_CTYPE", "LC_COLLATE", "LC_TIME", "LC_NUMERIC", "LC_MONETARY",
                     "LC_MESSAGES")
#: Names of UTC, all one zone: recorded as ``UTC`` so that a machine set to
#: ``Etc/UTC`` and a run started with ``TZ=UTC`` record the same environment.
#: The names of UTC (zoneinfo's, and POSIX TZ strings with no offset), recorded as UTC.
_UTC_NAMES = frozenset({
    "UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu",
    "GMT", "Etc/GMT", "GMT0", "Etc/GMT0", "GMT+0", "Etc/GMT+0", "GMT-0", "Etc/GMT-0",
    "Greenwich", "Etc/Greenwich", "UTC0", "UTC+0", "UTC-0", ""})
_LONGEST = 200  # a recorded string longer than this is cut (the shape allows 256)
_MOST_PROJECT = 256  # the shape's bound on the project's distributions


class HashSeedWarning(PinrunWarning):
    """A run is recorded with a random hash seed: the order of sets of strings may vary.

    Set ``PYTHONHASHSEED=0`` (any fixed seed) before Python starts, as
    ``pinrun run`` does, so that a replay iterates them in the same order.
    """


# --------------------------------------------------------------- the hash seed

# Read when pinrun is imported, as close to the interpreter's start as pinrun
# gets: code that sets the variable later (a pool starting workers under a
# seed) does not change this process's own hashing.
_SEED_AT_START = os.environ.get("PYTHONHASHSEED")


def _seed(value: str | None) -> str:
    """A seed as recorded: a fixed one as it is, else ``random`` (no seed, or a bad one)."""
    return value if value and value != "random" and is_hash_seed(value) else "random"


# Owner-free on purpose: this interpreter's hash seed, fixed when it started.
@functools.cache
def hash_seed_state() -> str:
    """This interpreter's hash seed: the fixed seed it started with, or ``"random"``."""
    if not sys.flags.hash_randomization:
        return "0"  # PYTHONHASHSEED=0 is the only way to turn randomization off
    if sys.flags.ignore_environment:
        return "random"  # -E or -I: the variable was not read
    seed = _seed(_SEED_AT_START)
    return "random" if seed == "0" else seed  # 0 with randomization on: -R won


_warned = False


def warn_if_hash_seed_random() -> None:
    """Warn (once per process) that this process's runs may not replay their set order."""
    global _warned  # noqa: PLW0603 - once per process is the point
    if _warned or hash_seed_state() != "random":
        return
    _warned = True
    warnings.warn(HashSeedWarning(
        "this process's hash seed is random (PYTHONHASHSEED is not set), so the iteration "
        "order of sets of str and of dicts built from them is not reproducible: a replay "
        "may diverge where a step depends on it. Start Python with PYTHONHASHSEED=0 "
        "(pinrun run does) to record runs that replay"), stacklevel=3)


# -------------------------------------------------------- time zone and locale

def time_zone() -> str:
    """The local time zone: an IANA key when one can be known (looked at each time).

    ``$TZ`` names it (``Asia/Tokyo``, ``:Asia/Tokyo``; empty is UTC), or names
    a zone file by path (``:/etc/localtime``), whose link says the key; with
    no ``$TZ``, the ``/etc/localtime`` link does; else the C library's names.
    """
    value = environment_variable("TZ")
    name = value.removeprefix(":") if value is not None else "/etc/localtime"
    # Resolving the zone file's links is a dozen system calls; what they give changes
    # only when $TZ, the file's own link, or the C library's names do (one readlink).
    try:
        link: str | None = os.readlink(name) if name.startswith("/") else None
    except OSError:
        link = None
    seen = (value, link, time.tzname)
    known = _ZONES.get(seen)
    if known is None:
        if len(_ZONES) > 64:
            _ZONES.clear()
        known = _ZONES[seen] = _time_zone(value, name)
    return known


#: (``$TZ``, the zone file's link, ``time.tzname``) -> the zone key they give.
_ZONES: dict[tuple[object, ...], str] = {}


def _time_zone(value: str | None, name: str) -> str:
    """:func:`time_zone` worked out (a second link behind the first is followed too, and
    read again only when the first one changes)."""
    if value == "":
        key = "UTC"  # glibc: an empty TZ is UTC
    elif not name.startswith("/"):
        key = _zone_key(name)
    else:
        try:
            key = _zone_key(os.path.realpath(name)) if os.path.islink(name) else _zone_key(name)
        except OSError:
            key = name
        if key == "/etc/localtime":  # not a link: what the C library says
            key = "/".join(dict.fromkeys(time.tzname))
    key = key[:_LONGEST]
    return "UTC" if key in _UTC_NAMES else key


def _zone_key(text: str) -> str:
    """``/usr/share/zoneinfo/Asia/Tokyo`` -> ``Asia/Tokyo`` (also from the ``posix/``
    and ``right/`` copies of the database); other text as it is."""
    _, found, key = text.rpartition("zoneinfo/")
    key = key if found and key else text
    for prefix in ("posix/", "right/"):
        key = key.removeprefix(prefix)
    return key


def locale_state() -> dict[str, str]:
    """Each category in :data:`LOCALE_CATEGORIES` as set now, and the preferred encoding."""
    found: dict[str, str] = {}
    for name, category in _CATEGORIES:
        try:
            found[name] = _ask_locale(category)[:_LONGEST]  # no value: only asks
        except locale.Error:
            continue
    found["encoding"] = locale.getpreferredencoding(False)[:_LONGEST]
    return found


#: Each of :data:`LOCALE_CATEGORIES` this platform has (LC_MESSAGES is not on every
#: one), with its number.
_CATEGORIES: tuple[tuple[str, int], ...] = tuple(
    (name, getattr(locale, name)) for name in LOCALE_CATEGORIES if hasattr(locale, name))
#: ``locale.setlocale`` with no value only asks; its Python wrapper only checks the value.
_ask_locale = getattr(locale, "_setlocale", locale.setlocale)


# ------------------------------------------------------------------ the place

def place_state() -> dict[str, str]:
    """Home folder, working folder, umask and host name, as this process sees them now
    (each read each time: a process can change any of them; a few microseconds).

    A field that cannot be read (the working folder was deleted) is left out,
    which is never drift. Each is cut to the recorded length.
    """
    found = {"home": _home()[:_LONGEST]}
    with contextlib.suppress(OSError):  # the working folder was removed under the process
        found["cwd"] = os.getcwd()[:_LONGEST]
    found["umask"] = f"{_umask() & 0o777:04o}"
    # os.uname, not platform.node(): platform caches its answer for the process.
    found["hostname"] = (os.uname().nodename if hasattr(os, "uname")
                         else platform.node())[:_LONGEST]
    return found


def _home() -> str:
    """``os.path.expanduser("~")``: ``$HOME`` without its trailing slashes where it is set
    (on POSIX, as expanduser does, read by :func:`environment_variable`), else its answer."""
    home = environment_variable("HOME") if os.name == "posix" else None
    if home is None:
        return os.path.expanduser("~")
    return home.rstrip("/") or "/"


_PROC_STATUS = "/proc/self/status"
#: The umask this process had when it was last read (None: never read yet).
_umask_seen: int | None = None


def _umask() -> int:
    """This process's umask, read each time without ever changing it in effect.

    Not cached: code may call ``os.umask``. Reading it by setting it is a race
    (a file another thread creates in that instant gets the wrong mode), and
    ``/proc/self/status`` (Linux) costs ~35 us, most of a short run's environment.
    So while this is the process's only thread, the umask is set to the value it
    was last seen to have: the same value unless code changed it since, so the
    one system call changes nothing and answers what it is. When it did change,
    the value read is put back at once, with no other Python thread to see the
    instant between (only a thread that C code started outside :mod:`threading`
    could, and only after this process changed its own umask). With other threads
    about, it is read from ``/proc/self/status`` where the system can say;
    elsewhere set and reset at once.
    """
    global _umask_seen  # noqa: PLW0603 - one process-wide value, like the umask itself
    seen = _umask_seen
    # os.umask holds the GIL: a single thread makes the pair below atomic for Python code.
    if seen is not None and threading.active_count() == 1:
        mask = os.umask(seen)
        if mask != seen:  # code changed it since: put back what it is now
            os.umask(mask)
    else:
        mask = _umask_read()
    _umask_seen = mask
    return mask


def _umask_read() -> int:
    """This process's umask, read without changing it where the system can say
    (Linux's ``/proc/self/status``); elsewhere set and reset at once, which sets the
    common ``0o022`` for the instant."""
    try:
        descriptor = os.open(_PROC_STATUS, os.O_RDONLY)
    except OSError:
        descriptor = -1
    if descriptor >= 0:
        try:
            head = os.read(descriptor, 512)  # Umask: is the second line
        except OSError:
            head = b""
        finally:
            os.close(descriptor)
        start = head.find(b"\nUmask:")
        if start >= 0:
            value = head[start + 7:head.find(b"\n", start + 1)].strip()
            try:
                return int(value, 8)
            except ValueError:
                pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------- the record

def environment(sources: Iterable[Mapping[str, str]], hash_seed: str | None = None,
                project: Mapping[str, str] | Sequence[str] = ()) -> dict[str, Any]:
    """Where code ran: see the module's docstring for each field.

    ``sources`` are the pinned ``code`` values (their imports name the
    distributions); ``hash_seed`` overrides this process's own
    (:func:`hash_seed_state`); ``project`` names the project's own
    distributions (with their versions, when given as a mapping), always
    listed.
    """
    return environment_with(settled_environment(sources, hash_seed, project),
                            changing_environment())


#: What :func:`changing_environment` reads: the time zone, the locale's and the place's
#: fields as (name, value) pairs. Hashable, so a recorder can keep the environment's
#: encoding per such state.
Changing = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def settled_environment(sources: Iterable[Mapping[str, str]], hash_seed: str | None = None,
                        project: Mapping[str, str] | Sequence[str] = ()) -> dict[str, Any]:
    """The fields of :func:`environment` that cannot change within this process: the
    interpreter, the hash seed, the project and the distributions (read once)."""
    imported: frozenset[str] = frozenset().union(
        *(_top_level_imports(code["source"]) for code in sources))
    names, versions = _project(project)
    value: dict[str, Any] = {
        "python": platform.python_version(), "implementation": sys.implementation.name,
        "platform": f"{sys.platform}-{_machine()}", "machine": _machine(),
        "hash_seed": _seed(hash_seed) if hash_seed is not None else hash_seed_state(),
        "project": list(names),
        "distributions": {**dict(_distribution_versions(imported, names)), **versions},
    }
    linalg = _linalg() if "numpy" in value["distributions"] else None
    if linalg:
        value["linalg"] = linalg
    return value


def changing_environment() -> Changing:
    """The fields of :func:`environment` a process can change between runs, read now:
    the time zone, the locale and the place."""
    return (time_zone(), tuple(locale_state().items()), tuple(place_state().items()))


def environment_with(settled: Mapping[str, Any], changing: Changing) -> dict[str, Any]:
    """The environment made of its settled fields and its changing ones."""
    zone, locale_fields, place = changing
    return {**settled, "timezone": zone, "locale": dict(locale_fields), **dict(place)}


# Owner-free on purpose: a fact about the machine.
@functools.cache
def _machine() -> str:
    return platform.machine()


def _project(project: Mapping[str, str] | Sequence[str],
             ) -> tuple[tuple[str, ...], dict[str, str]]:
    """The project's distribution names, and the versions the caller gave for them."""
    names = tuple(sorted(set(project)))
    if len(names) > _MOST_PROJECT or any(len(str(name)) > _LONGEST for name in names):
        raise InputError(f"name at most {_MOST_PROJECT} project distributions, each of at "
                         f"most {_LONGEST} characters ({len(names)} names were given)")
    if isinstance(project, Mapping):
        return names, {str(k): str(v)[:_LONGEST] for k, v in project.items()}
    return names, {}


# Owner-free on purpose: keyed by module names; answers from installed distributions.
@functools.lru_cache(maxsize=256)
def _distribution_versions(imported: frozenset[str],
                           project: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """The distributions providing these top-level modules, and the project's, with all
    they require in turn (not for extras; only what is installed), with their versions.

    Read once per process: what is installed does not change under a running program.
    """
    todo = [dist for name in sorted(imported) for dist in owners_of(name)]
    return requirement_closure((*todo, *project))


# Owner-free on purpose: keyed by the source text itself (content).
@functools.lru_cache(maxsize=1024)
def _top_level_imports(source: str) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return frozenset(names)


# Owner-free on purpose: numpy's installed build configuration, read as text.
@functools.cache
def _linalg() -> dict[str, str] | None:
    """The BLAS and LAPACK named in numpy's installed build configuration, if any.

    ``numpy/__config__.py`` holds them as literal strings in a dict; it is
    read and parsed, never run (finding a top-level package runs none of it).
    """
    try:
        spec = importlib.util.find_spec("numpy")
    except (ImportError, ValueError):
        return None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        try:
            with open(os.path.join(folder, "__config__.py"), "rb") as file:
                text = file.read(_CONFIG_MOST)
            tree = ast.parse(text)
        except (OSError, SyntaxError, ValueError):
            continue
        return _linalg_in(tree)
    return None


_CONFIG_MOST = 1 << 20  # numpy's is a few kilobytes


def _linalg_in(tree: ast.AST) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, entry in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value in ("blas", "lapack") and \
                    isinstance(entry, ast.Dict) and key.value not in found:
                fields = {k.value: v.value for k, v in zip(entry.keys, entry.values, strict=True)
                          if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                          and isinstance(v.value, str)}
                if fields.get("name"):
                    found[key.value] = " ".join(
                        fields[part] for part in ("name", "version") if fields.get(part)
                    )[:_LONGEST]
    return found or None


# -------------------------------------------------------------------- drift

_SCALARS = (("python", "python"), ("implementation", "implementation"),
            ("platform", "platform"), ("machine", "machine"), ("timezone", "TZ"),
            ("hash_seed", "hash seed"), ("home", "home"), ("cwd", "cwd"), ("umask", "umask"),
            ("hostname", "hostname"))


def environment_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """How environment ``after`` differs from ``before``, one line per field.

    Lines read ``TZ: UTC -> Asia/Tokyo``, ``locale LC_NUMERIC: C -> de_DE.UTF-8``,
    ``hash seed: 0 -> random``, ``home: /home/ci -> /root``, ``umask: 0022 -> 0077``,
    ``orders-svc: 1.0.0 -> 1.0.1``. A field one side
    does not have (a record older than it, numpy not imported) is not a change;
    nor is a distribution missing from a record older than the list of
    everything imported (which records ``project``).
    """
    lines = []
    for key, label in _SCALARS:
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old != new:
            lines.append(f"{label}: {old} -> {new}")
    for key, prefix in (("locale", "locale "), ("linalg", "")):
        old_map, new_map = before.get(key), after.get(key)
        if not isinstance(old_map, Mapping) or not isinstance(new_map, Mapping):
            continue
        for name in sorted(set(old_map) & set(new_map)):
            if old_map[name] != new_map[name]:
                label = f"{prefix}{name}" if prefix else str(name).upper()
                lines.append(f"{label}: {old_map[name]} -> {new_map[name]}")
    old_dists, new_dists = before.get("distributions") or {}, after.get("distributions") or {}
    complete = before.get("project") is not None, after.get("project") is not None
    for name in sorted(set(old_dists) | set(new_dists)):
        old, new = old_dists.get(name), new_dists.get(name)
        if old == new or (old is None and not complete[0]) or (new is None and not complete[1]):
            continue
        lines.append(f"{name}: {old or 'absent'} -> {new or 'absent'}")
    return lines
