"""Perturbation: replay a run with one condition of its world changed.

A replay in the recording's conditions can pass by luck: a step that iterates
a set of strings reproduces under the recorded hash seed and no other, and a
step that returns a directory listing as the file system gave it reproduces
on the machine that recorded it. Each perturbation replays the run in a fresh
process with one condition changed, reprotest's variations among them, and
reports which variation changed the outcome:

* ``hashseed``: another ``PYTHONHASHSEED``;
* ``tz``: a far time zone (``TZ``);
* ``locale``: the ``C`` locale (``LC_ALL``, ``LANG``);
* ``home``: ``HOME`` (and ``USERPROFILE``) a fresh, empty folder;
* ``umask``: ``0077`` (``0022`` when ``0077`` was recorded);
* ``cwd``: the process works from a fresh, empty folder (the store and the
  project are found where they were);
* ``fileorder``: directory listings come in reverse order;
* ``hostname``: the host name is another.

``all`` names them all. The last four are installed by the child itself
before the replay starts (:mod:`pinrun.world.variations`); the others are its
environment variables.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pinrun.artifacts.store import Store
from pinrun.engine.records import hash_seed_of, load_env, load_run
from pinrun.errors import InputError
from pinrun.flows.pinning import project_root_for
from pinrun.verifier.worker import ReplayOptions, ReplayRequest, replay_in_child

__all__ = ["PERTURBATIONS", "Perturbation", "check_kinds", "expand_kinds", "perturb"]

#: A timezone far from most: a +12:45 offset with daylight saving.
_FAR_TIMEZONE = "Pacific/Chatham"
_OTHER_LOCALE = "C"
_OTHER_UMASK = "0077"  # no one else may read what a step creates
_OTHER_HOST = "pinrun-perturbed-host"
#: Each kind of perturbation, in the order ``all`` runs them.
PERTURBATIONS: tuple[str, ...] = ("hashseed", "tz", "locale", "home", "umask", "cwd",
                                  "fileorder", "hostname")
#: The name for every kind at once.
ALL = "all"
_FRESH = "<a fresh empty folder>"


@dataclass(frozen=True)
class Perturbation:
    """One changed condition, and what the replay under it gave."""

    kind: str
    change: str
    verdict: str
    first_divergence: str | None
    explanation: str

    def as_value(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {"kind": self.kind, "change": self.change, "verdict": self.verdict,
                "first_divergence": self.first_divergence, "explanation": self.explanation}


@dataclass(frozen=True)
class _Variation:
    """How one kind changes the child: what to say, its environment variables, and
    what it installs itself (:func:`pinrun.world.variations.apply`)."""

    change: str
    environment: dict[str, str]
    installed: tuple[str, str] | None = None


def _variation(kind: str, recorded: dict[str, Any], folder: str | None) -> _Variation:
    """Kind ``kind``'s variation against the ``recorded`` environment; ``folder`` is a
    fresh empty one for the kinds that need one.

    Only the kind's own condition changes: the others keep the recorded hash
    seed (when one was recorded), so a difference is that condition's doing.
    """
    seed = hash_seed_of(recorded)
    same_seed = {"PYTHONHASHSEED": seed} if seed else {}

    def was(key: str) -> str:
        value = recorded.get(key)
        return f" (recorded: {value if isinstance(value, str) else 'unknown'})"

    if kind == "hashseed":
        # PYTHONHASHSEED takes 0 to 4294967295: the next seed wraps around.
        other = str((int(seed) + 1) % 4294967296) if seed and seed.isdigit() else "1"
        return _Variation(f"PYTHONHASHSEED={other}{was('hash_seed')}",
                          {"PYTHONHASHSEED": other})
    if kind == "tz":
        return _Variation(f"TZ={_FAR_TIMEZONE}", {**same_seed, "TZ": _FAR_TIMEZONE})
    if kind == "locale":
        return _Variation(f"LC_ALL={_OTHER_LOCALE}",
                          {**same_seed, "LC_ALL": _OTHER_LOCALE, "LANG": _OTHER_LOCALE})
    if kind == "home":
        assert folder is not None
        return _Variation(f"HOME={_FRESH}{was('home')}",
                          {**same_seed, "HOME": folder, "USERPROFILE": folder})
    if kind == "umask":
        mask = _OTHER_UMASK if recorded.get("umask") != _OTHER_UMASK else "0022"
        return _Variation(f"umask {mask}{was('umask')}", same_seed, ("umask", mask))
    if kind == "cwd":
        assert folder is not None
        return _Variation(f"working folder {_FRESH}{was('cwd')}", same_seed, ("cwd", folder))
    if kind == "fileorder":
        return _Variation("directory listings in reverse order", same_seed, ("fileorder", ""))
    host = _OTHER_HOST if recorded.get("hostname") != _OTHER_HOST else f"{_OTHER_HOST}-2"
    return _Variation(f"host name {host}{was('hostname')}", same_seed, ("hostname", host))


def expand_kinds(kinds: list[str]) -> list[str]:
    """The kinds named, ``all`` standing for every one, each once, in the order given."""
    found: dict[str, None] = {}
    for kind in kinds:
        found.update(dict.fromkeys(PERTURBATIONS if kind == ALL else (kind,)))
    return list(found)


def check_kinds(kinds: list[str]) -> None:
    """Refuse a kind of perturbation pinrun does not know."""
    unknown = [kind for kind in kinds if kind not in PERTURBATIONS and kind != ALL]
    if unknown:
        raise InputError(f"--perturb {unknown[0]!r}: choose among {', '.join(PERTURBATIONS)} "
                         f"(comma-separated), or {ALL}")


@contextmanager
def _fresh_folder(kind: str) -> Iterator[str | None]:
    """An empty folder for the kinds that move to one, removed afterwards."""
    if kind not in ("home", "cwd"):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix=f"pinrun-perturb-{kind}-",
                                     ignore_cleanup_errors=True) as folder:
        yield folder


def perturb(store: Store, run_id: str, kinds: list[str], *, code: str = "pinned",
            guards: str = "warn", allow_world: bool = False,
            allow_unsigned: bool = False) -> list[Perturbation]:
    """Replay run ``run_id`` once per kind of perturbation (``all``: every kind), each
    in a fresh process."""
    check_kinds(kinds)
    run = load_run(store, run_id)
    recorded = load_env(store, run)  # checked, hash seed included: Python starts with it
    # Absolute, and the project named: a child working from elsewhere finds both.
    store_path = Path(store.path).absolute()
    options = ReplayOptions.build(code=cast("Any", code), guards=cast("Any", guards),
                                  project_root=project_root_for(store_path),
                                  allow_world=allow_world, allow_unsigned=allow_unsigned)
    results = []
    for kind in expand_kinds(kinds):
        with _fresh_folder(kind) as folder:
            variation = _variation(kind, recorded, folder)
            request = ReplayRequest(str(store_path), run.id, options, variation.installed)
            report = replay_in_child(request, environment=variation.environment,
                                     timeout=600).as_value()
        explanation = report.get("explanation") or report.get("error") or ""
        results.append(Perturbation(kind, variation.change, report["verdict"],
                                    report.get("first_divergence"), str(explanation)))
    return results
