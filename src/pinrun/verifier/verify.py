"""Verifying many runs: pick them, split them into shards, replay them in workers.

Selection and sharding are deterministic: a run's shard is fixed by the
digest of its id, so a CI matrix of N machines splits any corpus without
overlap, and a run stays in its shard as the corpus grows. ``--sample N``
keeps the first N runs in that same order, not a random pick, so two CI runs
of one commit check the same runs.

Each worker process opens the store once and replays its runs one after the
other, reusing the modules it loaded, as a long-running worker would, so
state carried from one run into the next shows. Workers run the library's
worker entry (:mod:`pinrun.verifier.worker`) and hand back typed results.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pinrun.artifacts.mapped_pages import PageBudget, release_store_pages
from pinrun.artifacts.store import Store
from pinrun.artifacts.tags import run_tags, tagged_runs
from pinrun.engine.records import RUN_REF_PREFIX, load_run
from pinrun.engine.run import REPLACED_PREFIX
from pinrun.errors import InputError, StoreError
from pinrun.remote.origin import check_trusted
from pinrun.remote.selection import run_order
from pinrun.verifier.local_pool import GroupReplay, replay_group
from pinrun.verifier.replayer import CodeSource
from pinrun.verifier.seed_pass import hash_seed, hash_seeds
from pinrun.verifier.worker import OBJECTS, VALUES, ReplayOptions, ResultForm, RunResult
from pinrun.world.guards import GuardMode

__all__ = ["RunResult", "Selection", "parse_shard", "run_verification", "select_runs",
           "shard_of", "verify_runs", "why_empty"]


@dataclass(frozen=True)
class Selection:
    """Which runs to verify; every field narrows the corpus (None: no filter)."""

    run_ids: tuple[str, ...] = ()
    flow: str | None = None
    #: Runs carrying this tag (a label many runs can carry), replaced ones left out.
    tag: str | None = None
    #: A run-id prefix: runs that started at or after it.
    since: str | None = None
    sample: int | None = None
    #: (index from 1, count)
    shard: tuple[int, int] | None = None


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N), with 1 <= I <= N."""
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or \
            not 1 <= int(index) <= int(count):
        raise InputError(f"--shard {text!r}: write I/N with 1 <= I <= N, e.g. --shard 2/4")
    return int(index), int(count)


def _order(run_id: str) -> int:
    """A stable place for a run, independent of the others: its id's digest (the same
    order a remote's runs are sharded in, so a shard pulls exactly what it verifies)."""
    return run_order(run_id)


def shard_of(run_id: str, count: int) -> int:
    """The shard (1-based) of ``count`` that ``run_id`` belongs to, as ``--shard`` splits."""
    return _order(run_id) % count + 1


def select_runs(store: Store, selection: Selection) -> list[str]:
    """The ids of the selected runs, in their stable order (empty: see :func:`why_empty`)."""
    selected = _select(store, selection)[0]
    release_store_pages(store.path)  # the refs read are spread over the store's file
    return selected


#: Refs read between two looks at the pages they left mapped (:class:`PageBudget`).
_REFS_PER_LOOK = 256


def _refs_under(store: Store, prefix: str) -> Iterator[str]:
    """The names of the refs under ``prefix``, read a chunk per transaction.

    The refs sit on pages spread over the store's file, each faulted in with its
    neighbours: the pages read are given back as they add up, so listing a
    large store's runs does not make this process as large as the store.
    """
    with PageBudget(store.path) as budget:
        for count, (name, _) in enumerate(store.iter_refs(prefix), 1):
            if count % _REFS_PER_LOOK == 0:
                budget.spend()
            yield name


def why_empty(store: Store, selection: Selection) -> str:
    """What selected no runs, in words: the filter that emptied the selection, and a fix."""
    ids, reason = _select(store, selection)
    return reason if not ids and reason is not None else "no runs were selected"


def _select(store: Store, selection: Selection) -> tuple[list[str], str | None]:
    """The selected ids, and (once they run out) which filter left none, as a sentence."""
    if selection.run_ids:
        ids = list(dict.fromkeys(load_run(store, run_id).id for run_id in selection.run_ids))
    else:
        # A run replaced by `pinrun accept` is not the baseline any more.
        replaced = {name[len(REPLACED_PREFIX):] for name in _refs_under(store, REPLACED_PREFIX)}
        ids = [run_id for name in _refs_under(store, RUN_REF_PREFIX)
               if (run_id := name[len(RUN_REF_PREFIX):]) not in replaced]
        if not ids:
            return [], ("the store holds no current runs; record some with `pinrun run "
                        "MODULE:FLOW`")
    if selection.tag is not None:
        tagged = set(tagged_runs(store, selection.tag))
        ids = [run_id for run_id in ids if run_id in tagged]
        if not ids:
            known = ", ".join(sorted({t for ts in run_tags(store).values() for t in ts})) or "none"
            return [], (f"no current run carries the tag {selection.tag!r} (tags in this "
                        f"store: {known}); tag runs with `pinrun tag RUN... NAME` or "
                        "`pinrun run --tag NAME`")
    if selection.since is not None:
        ids = [run_id for run_id in ids if run_id >= selection.since]
        if not ids:
            return [], (f"no selected run started since {selection.since}; widen --since or "
                        "record newer runs")
    if selection.flow is not None:
        flows = {run_id: _flow_of(store, run_id) for run_id in ids}
        # A run whose record cannot be read may be of the flow: it stays, and its
        # result says the store is damaged (the gate must not pass by skipping it).
        kept = [run_id for run_id in ids if flows[run_id] in (selection.flow, None)]
        if not kept:
            known = ", ".join(sorted({flow for flow in flows.values() if flow is not None}))
            return [], (f"no selected run is of flow {selection.flow!r} (flows with runs: "
                        f"{known}); check the name")
        ids = kept
    ids.sort(key=lambda run_id: (_order(run_id), run_id))
    if selection.shard is not None:
        index, count = selection.shard
        total = len(ids)
        ids = [run_id for run_id in ids if _order(run_id) % count == index - 1]
        if not ids:
            return [], (f"shard {index}/{count} holds none of the {total} selected runs (the "
                        "other shards have them); split the runs into fewer shards")
    if selection.sample is not None:
        ids = ids[: selection.sample]
    return ids, None


def _flow_of(store: Store, run_id: str) -> str | None:
    """The run's flow, or None when its record cannot be read."""
    try:
        return load_run(store, run_id).flow
    except StoreError:
        return None


# ----------------------------------------------------------------- workers


def run_verification(store: Store, run_ids: list[str], *, code: CodeSource,
                     guards: GuardMode, jobs: int, project_root: Path | None = None,
                     fail_fast: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     entries: Mapping[str, str] | None = None,
                     allow_world: bool = False, allow_unsigned: bool = False,
                     dask: str | None = None, brief: bool = False,
                     ) -> Iterator[dict[str, Any]]:
    """:func:`verify_runs`, each result as JSON-ready data (``pinrun verify --json``):
    what :meth:`RunResult.as_value <pinrun.verifier.worker.RunResult.as_value>` makes.

    The workers make each result's data themselves and send it as JSON: this
    process, which shares the cores with them, only parses it.
    """
    yield from _verify(store, run_ids, code=code, guards=guards, jobs=jobs,
                       project_root=project_root, fail_fast=fail_fast, progress=progress,
                       entries=entries, allow_world=allow_world,
                       allow_unsigned=allow_unsigned, dask=dask, brief=brief, form=VALUES)


def verify_runs(store: Store, run_ids: list[str], *, code: CodeSource,
                guards: GuardMode, jobs: int, project_root: Path | None = None,
                fail_fast: bool = False,
                progress: Callable[[int, int], None] | None = None,
                entries: Mapping[str, str] | None = None,
                allow_world: bool = False, allow_unsigned: bool = False,
                dask: str | None = None, brief: bool = False,
                ) -> Iterator[RunResult]:
    """Replay ``run_ids`` in up to ``jobs`` worker processes; yields each run's result.

    Runs are grouped by the hash seed they recorded, and each group replays
    in fresh worker processes started under that seed (never in this one: a
    step that kills its process must not take the verification with it).
    Each worker runs :mod:`pinrun.verifier.worker`: the engine's replay, with
    a typed :class:`~pinrun.verifier.worker.RunResult` per run coming back.
    Results come group by group, in the order of ``run_ids`` within a group
    (the first group's workers start replaying while the other runs' seeds are
    still being read, but the result of every record that is missing or does not
    read comes first; a record whose bytes are damaged past its head is found by
    the worker that replays it, and its store error comes in its place). The
    seeds are read cheaply, as a plan (:mod:`pinrun.verifier.seed_pass`): a run
    the workers find to have recorded another seed comes after the others,
    replayed under its own.
    With ``fail_fast`` the first run that does not reproduce stops the rest.
    ``entries`` maps a flow name to the ``MODULE:FLOW`` where that flow lives
    now (it moved since its runs were recorded): the runs of that flow replay
    the flow found there (imported as given), which must have the steps each
    run recorded, or that run's result is an error. Only with workdir code.
    ``allow_world`` lets steps reach the network and start processes (passed on
    where the engine's replay takes it: :class:`~pinrun.verifier.worker.ReplayOptions`).
    ``dask`` is the address of a Dask scheduler: the replays run on its cluster, in
    batches, instead of in ``jobs`` local processes, with the same results in the
    same order (:mod:`pinrun.verifier.dask_engine`). With ``brief`` a reproduced run's
    report comes without its steps (for a caller that reports only the run, its flow
    and its time).
    """
    yield from _verify(store, run_ids, code=code, guards=guards, jobs=jobs,
                       project_root=project_root, fail_fast=fail_fast, progress=progress,
                       entries=entries, allow_world=allow_world,
                       allow_unsigned=allow_unsigned, dask=dask, brief=brief, form=OBJECTS)


_R = TypeVar("_R")


def _verify(store: Store, run_ids: list[str], *, code: CodeSource, guards: GuardMode,
            jobs: int, project_root: Path | None, fail_fast: bool,
            progress: Callable[[int, int], None] | None, entries: Mapping[str, str] | None,
            allow_world: bool, allow_unsigned: bool, dask: str | None, brief: bool,
            form: ResultForm[_R]) -> Iterator[_R]:
    """:func:`verify_runs`, each result in ``form``."""
    if entries and code == "pinned":
        raise InputError("--entry says where a flow lives on disk now, for --code workdir; "
                         "pinned code loads each flow where its run recorded it: drop --entry")
    # A Dask cluster's results come back as objects (its batches are read here).
    options = ReplayOptions.build(code=code, guards=guards, project_root=project_root,
                                  entries=entries, allow_world=allow_world,
                                  allow_unsigned=allow_unsigned, brief=brief,
                                  values=form.values and dask is None)
    arguments = (str(store.path), options)
    groups: dict[str | None, list[str]] = {}
    done = 0
    with ExitStack() as stack:
        # The first group's workers start as soon as its seed is known, and replay
        # while the other runs' seeds are read (the results still come after every
        # damaged record's).
        first: GroupReplay[_R] | None = None
        # The seeds found by a scan of the records are a plan: a pool's workers check
        # each run's, and hand back the runs they must not replay (a Dask cluster's
        # workers check nothing: its runs' seeds are read exactly).
        for run_id, seed in hash_seeds(store, run_ids, exact=dask is not None):
            if isinstance(seed, StoreError):
                # This run's record is damaged: its result, not the end.
                done += 1
                if progress is not None:
                    progress(done, len(run_ids))
                yield form.of(RunResult(run_id, error=str(seed), store_error=True))
                if fail_fast:
                    return
                continue
            if dask is None and first is None:
                first = stack.enter_context(GroupReplay(seed, jobs, arguments, len(run_ids),
                                                        form))
            if first is not None and seed == first.seed:
                first.add(run_id)
            else:
                groups.setdefault(seed, []).append(run_id)
        if dask is not None:
            from pinrun.verifier.dask_engine import replay_on_cluster

            if code == "pinned" and not allow_unsigned:
                # A worker's private store holds no origins: pulled runs are judged here.
                for ids in groups.values():
                    for run_id in ids:
                        check_trusted(store, run_id)

            replayed: Generator[_R, None, None] = _in_form(
                replay_on_cluster(dask, store, groups, options), form)
        else:
            replayed = _replay_local(store, first, groups, jobs, arguments, form=form)
        with closing(replayed):  # --fail-fast: the work still under way is dropped now
            for result in replayed:
                done += 1
                if progress is not None:
                    progress(done, len(run_ids))
                yield result
                if fail_fast and form.verdict(result) != "reproduced":
                    return


def _in_form(results: Generator[RunResult, None, None],
             form: ResultForm[_R]) -> Generator[_R, None, None]:
    with closing(results):
        for result in results:
            yield form.of(result)


def _replay_local(store: Store, first: GroupReplay[_R] | None,
                  groups: dict[str | None, list[str]], jobs: int,
                  arguments: tuple[str, ReplayOptions], *,
                  form: ResultForm[_R]) -> Generator[_R, None, None]:
    """The first group's results, then each other group's, in a pool of its own; then
    the runs the workers found to have recorded another seed than their group's (a
    record that misled the seed pass), each read exactly and replayed under its own."""
    misrouted: list[str] = []
    if first is not None:
        yield from first.results()
        misrouted += first.misrouted
        first.close()
    for seed, ids in groups.items():
        yield from replay_group(ids, seed, jobs, arguments, form, misrouted=misrouted)
    if not misrouted:
        return
    again: dict[str | None, list[str]] = {}
    for run_id in misrouted:
        try:
            again.setdefault(hash_seed(store, run_id), []).append(run_id)
        except StoreError as exc:
            yield form.of(RunResult(run_id, error=str(exc), store_error=True))
    unsettled: list[str] = []
    for seed, ids in again.items():
        yield from replay_group(ids, seed, jobs, arguments, form, misrouted=unsettled)
    for run_id in unsettled:  # its worker reads another seed than this process: never
        yield form.of(RunResult(run_id, error=_UNSETTLED))


#: A run the workers started under its recorded seed would not replay (see _replay_local).
_UNSETTLED = ("its recorded hash seed read differently in the verify worker started under "
              "it: not replayed")
