"""Choosing runs from a remote's catalog, as ``verify`` chooses them from a store.

The same words select the same runs on both sides: ids (or unique
prefixes), a flow, a tag, a start time (as a run-id prefix), and a shard,
whose runs depend only on their ids, so CI machines agree on the split
without talking to each other. Runs replaced by ``pinrun accept`` are left
out unless named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from pinrun.errors import InputError
from pinrun.remote.index import Catalog, RemoteRun, may_supersede

__all__ = ["RemoteSelection", "run_order", "select_remote_runs"]


def run_order(run_id: str) -> int:
    """A stable place for a run, independent of the others: its id's digest."""
    return int.from_bytes(blake3.blake3(run_id.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class RemoteSelection:
    """Which runs to take from a remote (every field narrows; ``everything`` takes all)."""

    run_ids: Sequence[str] = ()
    flow: str | None = None
    tag: str | None = None
    since: str | None = None
    shard: tuple[int, int] | None = None
    everything: bool = False
    #: Keep runs that ``accept`` replaced (a push carries them; a verify skips them).
    replaced: bool = False

    @property
    def empty(self) -> bool:
        """Nothing was asked for (a push or pull must say which runs)."""
        return not (self.run_ids or self.flow or self.tag or self.since or self.everything
                    or self.shard)


def select_remote_runs(catalog: Catalog, selection: RemoteSelection) -> list[RemoteRun]:
    """The selected runs of ``catalog``, in shard order."""
    if selection.run_ids:
        runs = [_by_prefix(catalog, text) for text in selection.run_ids]
    elif selection.replaced:
        runs = list(catalog.runs.values())
    else:
        # Only a run its own key signed (or any run, for an unsigned one) hides what it replaces.
        replaced = {run.replaces for run in catalog.runs.values()
                    if run.replaces and run.replaces in catalog.runs
                    and may_supersede(run, catalog.runs[run.replaces])}
        runs = [run for run in catalog.runs.values() if run.id not in replaced]
    if selection.tag is not None:
        runs = [run for run in runs if selection.tag in run.tags]
    if selection.flow is not None:
        runs = [run for run in runs if run.flow == selection.flow]
    if selection.since is not None:
        runs = [run for run in runs if run.id >= selection.since]
    runs.sort(key=lambda run: (run_order(run.id), run.id))
    if selection.shard is not None:
        index, count = selection.shard
        runs = [run for run in runs if run_order(run.id) % count == index - 1]
    return runs


def _by_prefix(catalog: Catalog, text: str) -> RemoteRun:
    if text in catalog.runs:
        return catalog.runs[text]
    matches = sorted(run_id for run_id in catalog.runs if run_id.startswith(text))
    if len(matches) == 1:
        return catalog.runs[matches[0]]
    if matches:
        raise InputError(f"{text!r} is the start of {len(matches)} run ids on the remote; "
                         f"give more of it (e.g. {matches[0]})")
    raise InputError(f"the remote has no run {text!r}; `pinrun pull --all --dry-run` "
                     "lists what it has")
