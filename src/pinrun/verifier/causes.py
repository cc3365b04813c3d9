"""Why a replay diverged, as far as it can be known: where an error came from, and
how the environment differs from the recorded one."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.engine.records import RunRecord
from pinrun.flows.loader import pinned_sources
from pinrun.flows.pinning import environment
from pinrun.verifier.report import Cause

__all__ = ["environment_drift", "error_location"]

_PINRUN = str(Path(__file__).resolve().parents[1])


def error_location(error: BaseException) -> tuple[str | None, int | None]:
    """File and line of the innermost frame outside pinrun where ``error`` was raised."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not str(Path(frame.filename).resolve()).startswith(_PINRUN)]
    if not frames:
        return None, None
    return frames[-1].filename, frames[-1].lineno


def environment_drift(store: Store, run: RunRecord) -> list[Cause]:
    """How this process's environment differs from the one the run recorded."""
    if run.env is None or run.flow_pin is None:
        return []
    recorded: dict[str, Any] = store.get_object(run.env, Kind.ENV)
    current = environment(list(pinned_sources(store, run.flow_pin).values()))
    causes = []
    for key, label in (("python", "Python"), ("implementation", "the implementation"),
                       ("platform", "the platform"), ("hash_seed", "the hash seed")):
        if recorded.get(key) != current.get(key):
            causes.append(Cause("environment drift", f"{label} differs: recorded "
                                f"{recorded.get(key)}, now {current.get(key)}"))
    before, now = recorded.get("distributions", {}), current.get("distributions", {})
    for name in sorted(set(before) | set(now)):
        if before.get(name) != now.get(name):
            causes.append(Cause("environment drift", f"{name} differs: recorded "
                                f"{before.get(name, 'not installed')}, now "
                                f"{now.get(name, 'not installed')}"))
    return causes
