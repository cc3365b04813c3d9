"""The seed pass of ``pinrun verify``: each run's recorded hash seed, to group the runs by.

Each group of runs replays in workers started under its seed, so the parent
reads every run's seed before (or while) the workers replay. On two cores the
parent shares the cores with the workers, so this pass reads as little as it
can: each record's ``env`` field is found by a scan of the record's first
bytes (:func:`env_of`), not by parsing the whole record, and each environment
is read, checked and parsed once.

What this pass finds is a plan, not a proof. A pool's worker checks each run's
recorded seed against the seed it was started under before it replays the run
(:func:`pinrun.verifier.worker.replay_chunk`), and hands back a run whose seed
differs unreplayed, for the parent to read again the slow, exact way
(:func:`hash_seed`) and replay under its own seed. So a crafted record that
misleads the scan makes the verification slower, never its verdict wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import suppress

import orjson

from pinrun.artifacts.digest import Kind
from pinrun.artifacts.mapped_pages import PageBudget
from pinrun.artifacts.store import Store
from pinrun.engine.records import RUN_REF_PREFIX, load_run, recorded_hash_seed
from pinrun.errors import InputError, StoreError

__all__ = ["env_of", "hash_seed", "hash_seeds"]

#: A seed, or the store error the run's record or environment raised.
Seed = str | StoreError | None


def hash_seed(store: Store, run_id: str) -> str | None:
    """The run's recorded seed, checked: workers started under a bad one would die."""
    return recorded_hash_seed(store, load_run(store, run_id))


#: Run records read per transaction when the runs are grouped by seed.
_SEED_BATCH = 32


def hash_seeds(store: Store, run_ids: list[str], *, exact: bool = False,
               ) -> Iterator[tuple[str, Seed]]:
    """``(run id, its recorded seed)`` for each run, in order, read cheaply (or the
    :class:`~pinrun.errors.StoreError` its record or environment raised).

    The records are read a batch per transaction, decompressed but not hashed,
    and only their ``env`` and ``id`` fields are looked at, found by
    :func:`env_of`'s scan. With ``exact`` (for workers that do not check the
    seed themselves) each record is hashed and parsed instead. Each environment
    is read and checked once (runs of one machine share it). The worker proves
    and reads every record in full, field by field, before it replays it, so a
    record damaged past what is read here is still its run's store error.
    Anything that does not read cleanly here goes the slow way
    (:func:`hash_seed`), which raises the :class:`~pinrun.errors.StoreError`
    that names the damage.
    """

    def slow(run_id: str) -> tuple[Seed, str | None]:
        """The seed read the exact way, and the environment's digest the record names."""
        try:
            run = load_run(store, run_id)
            return recorded_hash_seed(store, run), run.env.hex if run.env else None
        except StoreError as exc:
            return exc, None

    with PageBudget(store.path) as budget:
        yield from _seeds_in_batches(store, run_ids, slow, budget, exact=exact)


def _seeds_in_batches(store: Store, run_ids: list[str],
                      slow: Callable[[str], tuple[Seed, str | None]],
                      budget: PageBudget, *, exact: bool) -> Iterator[tuple[str, Seed]]:
    """:func:`hash_seeds`, a batch of refs and records per transaction."""
    env_in = _parsed_env if exact else env_of
    # By the environment's digest as the records spell it: runs of one machine share a
    # handful, each read, checked and parsed once (by ``slow``, the first time).
    seeds: dict[str, Seed] = {}
    for start in range(0, len(run_ids), _SEED_BATCH):
        batch = run_ids[start:start + _SEED_BATCH]
        payloads: list[tuple[Kind, bytes] | None] = [None] * len(batch)
        # A bad ref, or one of the records damaged or missing: each is read alone below.
        with suppress(StoreError, InputError):
            targets = store.get_refs([f"{RUN_REF_PREFIX}{run_id}" for run_id in batch])
            read = iter(store.load_many([target for target in targets if target is not None],
                                        proven=exact))
            payloads = [next(read) if target is not None else None for target in targets]
        for run_id, loaded in zip(batch, payloads, strict=True):
            env = env_in(run_id, loaded[1]) if loaded is not None and \
                loaded[0] is Kind.RUN else _UNREAD
            if env is _UNREAD:
                yield run_id, slow(run_id)[0]
                continue
            if env is None:
                yield run_id, None
                continue
            assert isinstance(env, str)
            if env in seeds and not isinstance(seeds[env], StoreError):  # an error names its run
                yield run_id, seeds[env]
                continue
            seed, named = slow(run_id)  # reads and checks the environment once
            if named == env:  # (a record that misled the scan sets no other run's seed)
                seeds[env] = seed
            yield run_id, seed
        # The records' pages are not read again here: the map gives them back as they
        # add up, so this process's size does not grow with the store.
        budget.spend()


#: What :func:`env_of` answers when the record must be read the slow way.
_UNREAD = object()

#: The head of a run record as pinrun writes it (canonical JSON: compact, keys sorted):
#: ``{``, the members before ``env`` (``continues``, ``entry``: each a name and a
#: value with no quote or backslash inside), then ``env`` itself. Each token is
#: JSON's own, so what it matches is the record's top-level ``env`` member.
_HEAD = re.compile(
    rb'\{(?:"(?!env")[a-z_]{1,32}":'
    rb'(?:null|true|false|-?[0-9]{1,20}|"[^"\\]{0,4096}"|\{"\$digest":"[0-9a-f]{64}"\}),)*'
    rb'"env":(?:null|\{"\$digest":"([0-9a-f]{64})"\})[,}]')


def env_of(run_id: str, payload: bytes) -> object:
    """The environment digest run record ``payload`` names, as its hex text (None:
    none), found by a scan of its head, or ``_UNREAD``.

    The record is not parsed: a record that pinrun wrote names its ``env``
    near its start, and its ``id`` once. One that does not scan so is parsed
    (:func:`_parsed_env`). A crafted record could still mislead the scan (an
    ``env`` member twice, say): the worker's check of each run's seed is
    what the verdict rests on (see the module).
    """
    found = _HEAD.match(payload)
    if found is None or f'"id":"{run_id}"'.encode() not in payload:
        return _parsed_env(run_id, payload)
    env = found.group(1)
    return env.decode() if env is not None else None


def _parsed_env(run_id: str, payload: bytes) -> object:
    """:func:`env_of` by parsing the whole record. The text is not checked here: the
    first run naming it takes the slow way, which reads its record and environment
    in full."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return _UNREAD
    if type(data) is not dict or data.get("id") != run_id:
        return _UNREAD
    env = data.get("env")
    if env is None:
        return None
    found = env.get("$digest") if type(env) is dict and len(env) == 1 else None
    return found if type(found) is str else _UNREAD
