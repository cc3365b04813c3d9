"""Push and pull: packs up, records down, nothing visible until it is all proven.

**Push** reads the remote's catalog, packs what the selected runs reach that
the remote does not hold (one object, however many runs), uploads the pack,
then one index entry naming the pack's records and publishing the runs, both
signed when a signing key is given. Names are digests of contents and every
object is created only if absent, so pushes from many workers at once never
lose a run or a pack, and a push that fails leaves only a pack no entry
names yet.

**Pull** walks from the selected runs' records through what they reference,
fetching only the records the local store lacks, by byte ranges of the packs
that hold them. Each record is proven against its digest as it arrives. The
records then become a private bundle that :func:`import_bundle` proves again
and commits whole, with the run refs, so a tampered or missing record fails
the pull with nothing written.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import blake3
import orjson

from pinrun._version import __version__
from pinrun.artifacts.bundle import write_pack
from pinrun.artifacts.bundle_format import (
    BUNDLE_FORMAT,
    END_TAG,
    MAGIC,
    RECORD_TAG,
    U32,
    U64,
    Writer,
)
from pinrun.artifacts.bundle_import import import_bundle
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.objects import open_record, record_dictionary
from pinrun.artifacts.proof import prove_record
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError, PinrunError, RemoteError
from pinrun.remote.index import MARKER, Catalog, RemoteRun, encode_entry, pack_key
from pinrun.remote.keys import SigningKey
from pinrun.remote.origin import forget_origins, record_origins
from pinrun.remote.remotes import Remote

__all__ = ["PullReport", "PushReport", "pull_runs", "push_runs"]

#: Called as ``progress(done, total)`` as records arrive.
Progress = Callable[[int, int], None]


def _nothing(done: int, total: int) -> None:
    """Show no progress."""


@dataclass
class PushReport:
    """What a push published."""

    runs: list[str] = field(default_factory=list)
    already: int = 0
    objects: int = 0
    bytes: int = 0
    pack: str | None = None
    signed_by: str | None = None


def _same(local: RemoteRun, remote: RemoteRun | None, key: SigningKey | None) -> bool:
    """The remote publishes this run as it is here (and signed, when we sign)."""
    if remote is None:
        return False
    same = (local.digest, local.tags, local.flow, local.status, local.replaces) == \
        (remote.digest, remote.tags, remote.flow, remote.status, remote.replaces)
    if key is not None and (remote.signer is None or remote.signer.raw != key.public.raw):
        return False
    return same


def push_runs(store: Store, remote: Remote, runs: Sequence[RemoteRun],
              key: SigningKey | None) -> PushReport:
    """Publish ``runs`` (read from ``store``) and all they reach on ``remote``."""
    report = PushReport(signed_by=key.name if key else None)
    remote.ensure_marker()
    catalog = remote.catalog()
    wanted = [run for run in runs if not _same(run, catalog.runs.get(run.id), key)]
    report.already = len(runs) - len(wanted)
    if not wanted:
        return report
    pack_name = None
    table: list[tuple[Digest, int, int]] = []
    with tempfile.TemporaryFile(prefix="pinrun-pack-") as handle:
        table = write_pack(store, [run.digest for run in wanted], catalog.objects.keys(), handle)
        if table:
            handle.seek(0)
            data = handle.read()
            pack_name = blake3.blake3(data).hexdigest()
            remote.client.put_new(pack_key(pack_name), data)
            report.bytes = len(data)
    name, entry = encode_entry(pack_name, table, wanted,
                               datetime.now(UTC).isoformat(timespec="microseconds"), key)
    remote.client.put_new(name, entry)
    report.runs = [run.id for run in wanted]
    report.objects = len(table)
    report.pack = pack_name
    return report


@dataclass
class PullReport:
    """What a pull brought."""

    runs: list[str] = field(default_factory=list)
    already: int = 0
    kept_local: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0


def pull_runs(store: Store, remote: Remote, runs: Sequence[RemoteRun],
              progress: Progress = _nothing, catalog: Catalog | None = None) -> PullReport:
    """Bring ``runs`` and everything they reach from ``remote`` into ``store``.

    A run the store holds already as the same record is skipped; one the
    store holds as another record is kept as it is (named in
    ``kept_local``) unless that record came from a pull, which the remote's
    newer record then replaces.
    """
    from pinrun.remote.origin import pulled_digest

    catalog = catalog if catalog is not None else remote.catalog()
    report = PullReport()
    wanted: list[RemoteRun] = []
    for run in runs:
        local = store.get_ref(f"runs/{run.id}")
        if local == run.digest:
            report.already += 1
            _add_tags(store, run)
        elif local is not None and pulled_digest(store, run.id) != local:
            report.kept_local.append(run.id)
        else:
            wanted.append(run)
    if not wanted:
        return report
    records = _fetch(store, remote, catalog, [run.digest for run in wanted], progress)
    report.objects = len(records)
    report.bytes = sum(len(record) for record in records.values())
    with tempfile.TemporaryDirectory(prefix="pinrun-pull-") as folder:
        bundle = Path(folder) / "pulled.pinrun"
        refs = {f"runs/{run.id}": run.digest for run in wanted}
        # The tags a remote publishes are labels here too (one ref per tag and run).
        refs.update({f"tags/{tag}/{run.id}": run.digest for run in wanted for tag in run.tags})
        _write_bundle(bundle, refs, records)
        # Origins first: a run must never be visible without the record of where it
        # came from (its pinned code is executed only if its signer is trusted).
        earlier = record_origins(store, remote.url, wanted)
        try:
            import_bundle(store, bundle, force=True)
        except BaseException:
            forget_origins(store, earlier)
            raise
    report.runs = [run.id for run in wanted]
    return report


def _add_tags(store: Store, run: RemoteRun) -> None:
    """Tags the remote gave a run this store has already (tags are only added by a pull)."""
    for tag in run.tags:
        name = f"tags/{tag}/{run.id}"
        if store.get_ref(name) is None:
            store.set_ref(name, run.digest, expected=None)


def _fetch(store: Store, remote: Remote, catalog: Catalog, roots: list[Digest],
           progress: Progress) -> dict[bytes, bytes]:
    """Every record ``roots`` reach that ``store`` lacks, each proven against its digest."""
    fetched: dict[bytes, bytes] = {}
    waiting: list[tuple[Digest, bytes]] = []  # records whose dictionary is on its way
    queue = [d for d in roots if not store.has(d)]
    requested: set[bytes] = {d.raw for d in queue}

    def dictionary(wanted: Digest) -> bytes:
        record = fetched.get(wanted.raw)
        if record is None:
            return store._load_dictionary(wanted)
        _kind, payload = open_record(wanted, record)
        return payload

    while queue or waiting:
        by_pack: dict[str, list[tuple[Digest, int, int]]] = defaultdict(list)
        for digest in queue:
            located = catalog.objects.get(digest.raw)
            if located is None:
                raise RemoteError(remote.url, f"it lacks object {digest.hex}, which a run "
                                  "it publishes needs; push that run again from its store")
            by_pack[located.pack].append((digest, located.offset, located.length))
        queue = []
        for pack, wanted in sorted(by_pack.items()):
            wanted.sort(key=lambda item: item[1])
            parts = remote.client.get_ranges(pack_key(pack),
                                             [(offset, offset + n) for _, offset, n in wanted])
            for (digest, _, _), record in zip(wanted, parts, strict=True):
                fetched[digest.raw] = record
                waiting.append((digest, record))
            progress(len(fetched), 0)
        still: list[tuple[Digest, bytes]] = []
        for digest, record in waiting:
            needs = record_dictionary(record)
            if needs is not None and needs.raw not in fetched and not store.has(needs):
                if needs.raw not in requested:
                    requested.add(needs.raw)
                    queue.append(needs)
                still.append((digest, record))
                continue
            try:
                _, references = prove_record(digest, record, dictionary, shape=False)
            except PinrunError as exc:
                located = catalog.objects[digest.raw]
                raise RemoteError(remote.url, f"pack {pack_key(located.pack)} is damaged or "
                                  f"tampered with: its record {digest.hex} does not prove "
                                  f"({exc}). Nothing was written; push the run again from "
                                  "its store") from None
            for child in references:
                if child.raw not in requested and not store.has(child):
                    requested.add(child.raw)
                    queue.append(child)
        if still and not queue:
            raise CorruptObjectError(still[0][0], None, "its dictionary is nowhere")
        waiting = still
    return fetched


def _write_bundle(path: Path, refs: dict[str, Digest], records: dict[bytes, bytes]) -> None:
    manifest = orjson.dumps({"format": BUNDLE_FORMAT, "pinrun": __version__,
                             "refs": {name: d.hex for name, d in sorted(refs.items())},
                             "roots": []}, option=orjson.OPT_SORT_KEYS)
    with path.open("wb") as handle:
        writer = Writer(handle)
        writer.write(MAGIC + bytes([BUNDLE_FORMAT]) + U32.pack(len(manifest)) + manifest)
        for raw, record in records.items():
            writer.write(RECORD_TAG + raw + U64.pack(len(record)) + record)
        writer.write(END_TAG + U64.pack(len(records)))
        handle.write(writer.hasher.digest())


def check_marker(data: bytes, url: str) -> None:
    """The remote's marker says it is a pinrun remote of a format this pinrun reads."""
    try:
        marker = orjson.loads(data)
        fmt = marker["format"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise RemoteError(url, f"its {MARKER} is not pinrun's; is this the right URL?") \
            from None
    if fmt != 1:
        raise RemoteError(url, f"it has remote format {fmt!r}; this pinrun reads format 1 "
                          "(upgrade pinrun)")
