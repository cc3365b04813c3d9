"""Every run recorded from the command line has a known hash seed.

Python randomizes ``str`` hashing per process unless ``PYTHONHASHSEED`` is
set, and that changes the iteration order of sets of strings: a step that
iterates one would not reproduce. So when ``pinrun run`` (or ``accept``)
starts without a seed, it re-executes itself (before opening anything) under
the fixed seed :data:`DEFAULT_SEED`, which the run's environment records.
``pinrun pin`` does the same, since it pins the environment those runs will
have. One seed for all the runs a CLI records also lets ``pinrun verify``
replay them all in the same workers; ``pinrun resume`` and ``pinrun replay``
use the seed the run recorded (a run recorded under a random seed has none
to use: they start no second process for it). A seed the user set is kept as
it is.

The library keeps the same rule on its own (:mod:`pinrun.verifier.seeded`:
``pinrun.replay`` replays in a child under the recorded seed when it must), so
the re-execution here only saves ``pinrun replay`` that second process, and
gives ``--pdb`` (which needs this terminal) the recorded seed too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["DEFAULT_SEED", "ensure_hash_seed"]

#: The hash seed ``pinrun run`` records under when none is set.
DEFAULT_SEED = "0"

_GROUP_OPTIONS_WITH_VALUE = frozenset({"--store"})


def _command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The subcommand and its arguments, skipping the group's own options."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in _GROUP_OPTIONS_WITH_VALUE:
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            return word, list(argv[index + 1:])
    return None, []


def _store_argument(argv: Sequence[str]) -> str | None:
    """The last ``--store`` given (the subcommand's overrides the group's)."""
    found = None
    for index, word in enumerate(argv):
        if word == "--store" and index + 1 < len(argv):
            found = argv[index + 1]
        elif word.startswith("--store="):
            found = word.split("=", 1)[1]
    return found


def _recorded_seed(argv: Sequence[str], arguments: list[str]) -> str | None:
    """The hash seed the run to resume was recorded with, when it can be read.

    The seed is checked (an integer Python accepts, or ``random``) before it
    goes into the environment: an interpreter started with another dies
    with "Fatal Python error" before pinrun could say anything. A run whose
    seed cannot be read is left to the command itself, which reports it.
    """
    from pinrun.engine.records import load_run, recorded_hash_seed
    from pinrun.errors import PinrunError

    run_id = next((word for word in arguments if not word.startswith("-")), None)
    if run_id is None:
        return None
    try:
        from pinrun.artifacts.store import open_store

        with open_store(_store_argument(argv)) as store:
            return recorded_hash_seed(store, load_run(store, run_id))
    except PinrunError:
        return None  # the command itself will report the problem


def ensure_hash_seed(argv: Sequence[str]) -> None:
    """Re-execute ``pinrun`` with a known ``PYTHONHASHSEED`` for ``run``, ``resume``, ``replay``."""
    if os.environ.pop("PINRUN_HASH_SEED_SET", None):
        return  # this process is the re-executed one; its children start afresh
    command, arguments = _command(argv)
    if command not in ("run", "accept", "pin", "resume", "replay"):
        return
    if command in ("resume", "replay"):
        seed = _recorded_seed(argv, arguments)
        if seed in (None, "random") or seed == os.environ.get("PYTHONHASHSEED"):
            return  # no seed to start under (random: any process is as good)
    elif os.environ.get("PYTHONHASHSEED", "random") != "random":
        return  # the user's seed ("random" asks for none: record under the default)
    else:
        seed = DEFAULT_SEED
    os.environ["PYTHONHASHSEED"] = seed
    os.environ["PINRUN_HASH_SEED_SET"] = "1"  # never loop, whatever happens next
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "pinrun", *argv])
