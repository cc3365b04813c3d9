"""Why a replay diverged, as far as it can be known: where an error came from, and
how the environment differs from the recorded one."""

from __future__ import annotations

import traceback
from pathlib import Path

from pinrun.artifacts.store import Store
from pinrun.engine.records import RunRecord, load_env
from pinrun.flows.loader import pinned_sources
from pinrun.flows.project import is_library_file
from pinrun.verifier.report import Cause
from pinrun.world.refusal import GuardedCall

__all__ = ["environment_drift", "error_location"]

_PINRUN = str(Path(__file__).resolve().parents[1])


def error_location(error: BaseException) -> tuple[str | None, int | None]:
    """File and line of the innermost frame outside pinrun where ``error`` was raised
    (for a refused call to the world, the project's line that made it)."""
    call = getattr(error, "call", None)
    if isinstance(call, GuardedCall) and call.file is not None:
        return call.file, call.line  # not the socket module's line
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith("<")
              and not str(Path(frame.filename).resolve()).startswith(_PINRUN)]
    if not frames:
        return None, None
    # The project's own line that led there, rather than the standard library's or an
    # installed package's line that raised (configparser's KeyError says little).
    own = [frame for frame in frames if not is_library_file(frame.filename)]
    chosen = own[-1] if own else frames[-1]
    return chosen.filename, chosen.lineno


def environment_drift(store: Store, run: RunRecord) -> list[Cause]:
    """How this process's environment differs from the one the run recorded, field by
    field; and, for a run recorded under a random hash seed, that it was."""
    if run.env is None or run.flow_pin is None:
        return []
    # Imported here: only a diverged run is explained, and the environment's readers
    # (with the requirement closure) cost every verify worker's start.
    from pinrun.flows.environment import environment, environment_changes

    recorded = load_env(store, run)
    current = environment(pinned_sources(store, run.flow_pin).values(),
                          project=recorded.get("project") or ())
    causes = [Cause("environment drift", line)
              for line in environment_changes(recorded, current)]
    if recorded.get("hash_seed") == "random":
        causes.append(Cause("hash seed", "the hash seed was random when the run was recorded, "
                            "so the order of its sets of str (and of dicts built from them) "
                            "cannot be replayed; record it again under PYTHONHASHSEED=0 "
                            "(pinrun run does this)"))
    return causes
