"""``pinrun.replay``: the engine's replay, under the hash seed the run recorded.

The iteration order of a set of strings depends on the process's hash seed,
which Python fixes when it starts (``PYTHONHASHSEED``). A run recorded under
a fixed seed replays faithfully only under that seed, so the library decides,
as ``pinrun replay`` does: when the run recorded a fixed seed and this
interpreter runs under another one (or a random one), the run is replayed in
a fresh interpreter started under the recorded seed, and its typed
:class:`~pinrun.verifier.report.ReplayReport` comes back. Otherwise (the
seeds agree, or the run recorded none to keep) it replays right here. From
Python and from the command line, the same run gets the same verdict.

Two replays stay in this process whatever the seeds: one that stops in the
debugger (``debug_step``: it needs this terminal) and one of a ``flow`` object
no module names (a child could not find it). Start Python with the recorded
``PYTHONHASHSEED`` for those (``pinrun replay`` does it for you).
"""

from __future__ import annotations

from pathlib import Path

from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run, recorded_hash_seed
from pinrun.errors import StoreError
from pinrun.flows.environment import hash_seed_state
from pinrun.flows.flow import Flow
from pinrun.flows.pinning import project_root_for
from pinrun.flows.registry import find_entry
from pinrun.verifier import replayer
from pinrun.verifier.moved import check_same_steps
from pinrun.verifier.replayer import CodeSource
from pinrun.verifier.report import ReplayReport
from pinrun.verifier.worker import ReplayOptions, ReplayRequest, replay_in_child
from pinrun.world.guards import GuardMode

__all__ = ["needs_own_process", "replay"]


def needs_own_process(recorded_seed: str | None) -> bool:
    """Whether a run recorded under ``recorded_seed`` must replay in another process:
    it recorded a fixed seed, and this interpreter does not run under it."""
    return recorded_seed not in (None, "random") and recorded_seed != hash_seed_state()


def replay(run_id: str, *, store: Store, code: CodeSource = "pinned",
           project_root: Path | None = None, flow: Flow | None = None,
           guards: GuardMode = "warn", repeat: int = 1,
           debug_step: str | None = None, allow_world: bool = False,
           allow_unsigned: bool = False) -> ReplayReport:
    """Replay run ``run_id`` and compare every step with its recording.

    The arguments and the report are those of the engine's replay
    (:func:`pinrun.verifier.replayer.replay`, which documents them); this one
    also keeps the run's recorded hash seed: when this interpreter runs
    under another one, the run replays in a fresh interpreter started under
    it (see the module). A damaged or missing object raises
    :class:`~pinrun.errors.StoreError` naming its digest, wherever it replayed.
    """
    # Checked here, as the engine would: a mismatch is bad input, not a child's error.
    replayer.check_replay_arguments(code, repeat, flow)
    run = load_run(store, run_id)
    seed = recorded_hash_seed(store, run)  # checked: a fresh Python starts with it
    entries: dict[str, str] = {}
    if flow is not None:
        check_same_steps(store, run, flow, "the flow given")
        root = project_root if project_root is not None else project_root_for(store.path)
        entry = find_entry(flow, root)
        if entry is not None:
            entries[run.flow] = entry
    in_process = debug_step is not None or (flow is not None and not entries)
    if in_process or not needs_own_process(seed):
        return replayer.replay_loaded(run, store=store, code=code, project_root=project_root,
                                      flow=flow, guards=guards, repeat=repeat,
                                      debug_step=debug_step, allow_world=allow_world,
                                      allow_unsigned=allow_unsigned)
    assert seed is not None
    options = ReplayOptions.build(code=code, guards=guards, project_root=project_root,
                                  entries=entries, repeat=repeat, allow_world=allow_world,
                                  allow_unsigned=allow_unsigned)
    result = replay_in_child(ReplayRequest(str(store.path), run.id, options),
                             environment={"PYTHONHASHSEED": seed})
    if result.raised is not None:
        raise result.raised  # the child's own error: its type, digest and message
    if result.store_error:
        raise StoreError(result.error)
    if result.report is not None:
        return result.report
    report = ReplayReport(run.id, run.flow, code, "error", repeat=repeat)
    report.error = result.error
    return report
