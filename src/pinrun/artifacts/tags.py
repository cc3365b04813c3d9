"""Tags: labels that many runs can carry, kept as refs ``tags/<NAME>/<run id>``.

One ref per (tag, run) pair, each pointing at the run's record as it was
when tagged: adding or removing a tag is one ref write, atomic and
compare-and-swap like every ref, and tags travel wherever refs do (export
bundles, remotes). The run id in the ref name is what counts; the record it
points at only keeps that record reachable.

Stores written before tags were labels have single refs ``tags/<NAME>``
pointing at one run's record: they are read as the tag NAME on that one run.
A ``tags/...`` ref that names something other than a run record is not a tag
(it is any ref a user set) and is left alone. Writing tag NAME folds its old
single ref into the new form in the same commit, so a store never keeps a
``tags/NAME`` beside a ``tags/NAME/...`` once NAME is written again (a remote
that stores refs as files could not hold both).

:func:`run_tags` is the whole picture (run id -> its tags), for listing and
for pushing tags to a remote.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pinrun.artifacts import shapes
from pinrun.artifacts.batch import WriteBatch
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.refs import validate_ref_name
from pinrun.artifacts.store import Store
from pinrun.errors import InputError, StoreError, UnknownRefError

__all__ = ["TAG_REF_PREFIX", "add_tags", "remove_tags", "run_tags", "tag_ref",
           "tag_refs_of", "tagged_runs", "tags_of", "validate_tag"]

#: Every tag ref starts with this.
TAG_REF_PREFIX: Final = "tags/"


def validate_tag(name: str) -> str:
    """Return ``name`` if it can name a tag, else raise ``InputError`` saying why.

    A tag name is a ref name part (no spaces, control characters, empty or
    ``.``/``..`` parts); slashes are allowed (``release/1.2``), but its last
    part may not look like a run id, which would make its refs ambiguous.
    """
    if not isinstance(name, str) or not name:
        raise InputError("a tag name is a non-empty word, e.g. nightly or release/1.2")
    validate_ref_name(f"{TAG_REF_PREFIX}{name}")
    if shapes.is_run_id(name.rpartition("/")[2]):
        raise InputError(f"{name!r} is not a valid tag name: it ends like a run id; name the "
                         "tag with words, e.g. nightly or release/1.2")
    # Room for "/<run id>" under the ref-length limit.
    validate_ref_name(f"{TAG_REF_PREFIX}{name}/20000101T000000000-000000")
    return name


def tag_ref(name: str, run_id: str) -> str:
    """The ref that says run ``run_id`` carries tag ``name``."""
    return f"{TAG_REF_PREFIX}{validate_tag(name)}/{run_id}"


def _parse(ref_name: str) -> tuple[str, str] | None:
    """``tags/NAME/<run id>`` -> (NAME, run id); None for any other ref."""
    if not ref_name.startswith(TAG_REF_PREFIX):
        return None
    name, sep, run_id = ref_name[len(TAG_REF_PREFIX):].rpartition("/")
    if not sep or not name or not shapes.is_run_id(run_id):
        return None
    return name, run_id


def _single_ref_run(store: Store, ref_name: str, target: Digest) -> str | None:
    """The run an old single ``tags/NAME`` ref points at; None when it is no run's record."""
    try:
        if store.info(target).kind is not Kind.RUN:
            return None
        value = store.get_object(target, Kind.RUN)  # shape-checked: its id is a run id
    except StoreError:
        return None  # damage is fsck's to report; a listing goes on without it
    run_id = value.get("id") if type(value) is dict else None
    return run_id if shapes.is_run_id(run_id) else None


def run_tags(store: Store) -> dict[str, list[str]]:
    """Every tagged run's id -> its tag names, sorted (ids in order too).

    The one call a remote needs to carry tags along: the refs behind a pair
    are :func:`tag_ref` (and, for a store written before tags were labels, the
    single ``tags/NAME`` ref too: see :func:`tag_refs_of`). Damaged tag refs, and
    old single refs whose object cannot be read, are left out (``pinrun fsck``
    names them): the tags shown beside runs never fail a listing.
    """
    pairs: set[tuple[str, str]] = set()
    for ref_name, target in store.refs(TAG_REF_PREFIX, skip_damaged=True).items():
        parsed = _parse(ref_name)
        if parsed is None:
            run_id = _single_ref_run(store, ref_name, target)
            if run_id is None:
                continue
            parsed = ref_name[len(TAG_REF_PREFIX):], run_id
        pairs.add(parsed)
    out: dict[str, list[str]] = {}
    for name, run_id in sorted(pairs, key=lambda pair: (pair[1], pair[0])):
        out.setdefault(run_id, []).append(name)
    return out


def tags_of(store: Store, run_id: str) -> list[str]:
    """The tags run ``run_id`` carries, sorted."""
    return run_tags(store).get(run_id, [])


def tagged_runs(store: Store, name: str) -> list[str]:
    """The ids of the runs carrying tag ``name``, sorted (empty when none does).

    An old single ``tags/NAME`` ref that does not name a readable run record
    is damage here, not a label to skip: it raises the store's error.
    """
    prefix = f"{TAG_REF_PREFIX}{validate_tag(name)}/"
    ids = {parsed[1] for ref_name in store.refs(prefix)
           if (parsed := _parse(ref_name)) is not None and parsed[0] == name}
    single = store.get_ref(f"{TAG_REF_PREFIX}{name}")
    if single is not None:
        value = store.get_object(single, Kind.RUN)  # raises on damage: a gate must not skip
        run_id = value.get("id") if type(value) is dict else None
        if type(run_id) is str and shapes.is_run_id(run_id):
            ids.add(run_id)
    return sorted(ids)


def tag_refs_of(store: Store, run_ids: Iterable[str]) -> dict[str, Digest]:
    """Every tag ref that labels one of ``run_ids`` (old single refs too), by name."""
    wanted = set(run_ids)
    out: dict[str, Digest] = {}
    for ref_name, target in store.refs(TAG_REF_PREFIX).items():
        parsed = _parse(ref_name)
        run_id = parsed[1] if parsed is not None else _single_ref_run(store, ref_name, target)
        if run_id in wanted:
            out[ref_name] = target
    return out


def _run_record(store: Store, run_id: str) -> Digest:
    target = store.get_ref(f"{shapes.RUN_REF_PREFIX}{run_id}")
    if target is None:
        raise UnknownRefError(f"{shapes.RUN_REF_PREFIX}{run_id}")
    return target


def add_tags(store: Store, run_ids: Iterable[str], names: Iterable[str],
             batch: WriteBatch | None = None) -> list[tuple[str, str]]:
    """Tag each run (full ids) with each name; returns the (run, tag) pairs that are new.

    All in one commit (``batch``'s, when given, else a new one). An old
    single ``tags/NAME`` ref is folded into the new form in the same commit.
    """
    runs = list(dict.fromkeys(run_ids))
    tags = [validate_tag(name) for name in dict.fromkeys(names)]
    if not runs or not tags:
        return []
    records = {run_id: _run_record(store, run_id) for run_id in runs}
    added: list[tuple[str, str]] = []
    own = batch if batch is not None else WriteBatch(store)
    for name in tags:
        single_name = f"{TAG_REF_PREFIX}{name}"
        single = store.get_ref(single_name)
        old_run = _single_ref_run(store, single_name, single) if single is not None else None
        if single is not None and old_run is not None:
            own.set_ref(tag_ref(name, old_run), single)
            own.delete_ref(single_name, expected=single)
        for run_id in runs:
            ref_name = tag_ref(name, run_id)
            if store.get_ref(ref_name) is None and old_run != run_id:
                own.set_ref(ref_name, records[run_id])
                added.append((run_id, name))
    if batch is None:
        own.commit()
    return added


def remove_tags(store: Store, run_ids: Iterable[str], names: Iterable[str]) -> list[
        tuple[str, str]]:
    """Take each name off each run, in one commit; returns the (run, tag) pairs removed."""
    runs = list(dict.fromkeys(run_ids))
    tags = [validate_tag(name) for name in dict.fromkeys(names)]
    removed: list[tuple[str, str]] = []
    if not runs or not tags:
        return removed
    batch = WriteBatch(store)
    for name in tags:
        single_name = f"{TAG_REF_PREFIX}{name}"
        single = store.get_ref(single_name)
        old_run = _single_ref_run(store, single_name, single) if single is not None else None
        for run_id in runs:
            ref_name = tag_ref(name, run_id)
            current = store.get_ref(ref_name)
            if current is not None:
                batch.delete_ref(ref_name, expected=current)
            if old_run == run_id:
                batch.delete_ref(single_name, expected=single)
            if current is not None or old_run == run_id:
                removed.append((run_id, name))
    batch.commit()
    return removed
