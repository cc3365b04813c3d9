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

from pinrun.artifacts import codec
from pinrun.artifacts.bundle import write_pack
from pinrun.artifacts.bundle_format import (
    RECORD_TAG,
    U64,
    Writer,
    write_end,
    write_head,
)
from pinrun.artifacts.bundle_import import import_bundle
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.objects import open_record, record_dictionary
from pinrun.artifacts.proof import prove_record
from pinrun.artifacts.shapes import run_ref_problem
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError, PinrunError, RefConflictError, RemoteError
from pinrun.remote.index import Catalog, Located, RemoteRun, encode_entry, pack_key
from pinrun.remote.keys import SigningKey
from pinrun.remote.origin import origin_refs, pulled_digest
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
    packs: int = 0
    signed_by: str | None = None


def published_as_here(local: RemoteRun, remote: RemoteRun | None,
                      key: SigningKey | None) -> bool:
    """The remote publishes this run as it is here (and signed, when we sign)."""
    if remote is None:
        return False
    same = (local.digest, local.tags, local.flow, local.status, local.replaces) == \
        (remote.digest, remote.tags, remote.flow, remote.status, remote.replaces)
    if key is not None and (remote.signer is None or remote.signer.raw != key.public.raw):
        return False
    return same


#: Runs per pack and index entry: a large push is several, each bounded.
PUSH_CHUNK = 10_000
#: Records of a pack closer than this are read in one request (the gap comes too).
SPAN_GAP = 64 << 10


def push_runs(store: Store, remote: Remote, runs: Sequence[RemoteRun],
              key: SigningKey | None, catalog: Catalog | None = None) -> PushReport:
    """Publish ``runs`` (read from ``store``) and all they reach on ``remote``
    (whose ``catalog`` the caller may have read already)."""
    report = PushReport(signed_by=key.name if key else None)
    if not runs:
        return report
    remote.ensure_marker()
    catalog = catalog if catalog is not None else remote.catalog()
    wanted = [run for run in runs if not published_as_here(run, catalog.runs.get(run.id), key)]
    report.already = len(runs) - len(wanted)
    # Only what our own key published counts as there: an entry anyone could write
    # must not make a push skip records the remote does not really hold.
    held = catalog.held(key.public.raw if key else None)
    for start in range(0, len(wanted), PUSH_CHUNK):
        chunk = wanted[start:start + PUSH_CHUNK]
        pack_name, table, size = _upload_pack(store, remote, chunk, held)
        name, entry = encode_entry(pack_name, table, chunk,
                                   datetime.now(UTC).isoformat(timespec="microseconds"), key)
        remote.client.put_new(name, entry)
        held.update(d.raw for d, _, _ in table)
        report.runs += [run.id for run in chunk]
        report.objects += len(table)
        report.bytes += size
        report.pack = pack_name or report.pack
        report.packs += bool(pack_name)
    return report


def _upload_pack(store: Store, remote: Remote, runs: Sequence[RemoteRun],
                 held: set[bytes]) -> tuple[str | None, list[tuple[Digest, int, int]], int]:
    """Pack and upload what ``runs`` reach beyond ``held``: its name, table and size."""
    with tempfile.TemporaryFile(prefix="pinrun-pack-") as handle:
        table = write_pack(store, [run.digest for run in runs], held, handle)
        if not table:
            return None, [], 0
        handle.seek(0)
        data = handle.read()
    name = blake3.blake3(data).hexdigest()
    remote.client.put_new(pack_key(name), data)  # a pack of these bytes may exist: the same
    return name, table, len(data)


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
    for run in wanted:
        if not run.signature_holds():
            raise RemoteError(remote.url, f"run {run.id} carries a signature that is not its "
                              f"signer's ({run.signer.name if run.signer else '?'}): the "
                              "remote holds forged data. Nothing was written")
    records = _fetch(store, remote, catalog, wanted, progress)
    report.objects = len(records)
    report.bytes = sum(len(record) for record in records.values())
    with tempfile.TemporaryDirectory(prefix="pinrun-pull-") as folder:
        bundle = Path(folder) / "pulled.pinrun"
        refs = {f"runs/{run.id}": run.digest for run in wanted}
        # The tags a remote publishes are labels here too (one ref per tag and run).
        refs.update({f"tags/{tag}/{run.id}": run.digest for run in wanted for tag in run.tags})
        _write_bundle(bundle, refs, records)
        # Where each run came from is committed with the run, in one transaction: a
        # run and its origin never disagree (its pinned code runs only if trusted).
        origins = origin_refs(store, remote.url, wanted)
        try:
            import_bundle(store, bundle, force=True, also_refs=origins)
        except RefConflictError:
            raise RemoteError(remote.url, "another command changed these runs in this store "
                              "while they were being pulled; nothing was written: pull "
                              "again") from None
    report.runs = [run.id for run in wanted]
    return report


def _add_tags(store: Store, run: RemoteRun) -> None:
    """Tags the remote gave a run this store has already (tags are only added by a pull)."""
    for tag in run.tags:
        name = f"tags/{tag}/{run.id}"
        if store.get_ref(name) is None:
            store.set_ref(name, run.digest, expected=None)


def _fetch(store: Store, remote: Remote, catalog: Catalog, runs: Sequence[RemoteRun],
           progress: Progress) -> dict[bytes, bytes]:
    """Every record ``runs`` reach that ``store`` lacks, each proven against its digest."""
    return _Fetch(store, remote, catalog, runs, progress).run()


class _Fetch:
    """A walk from runs' records through what they reference, by rounds of range reads.

    A record is taken from the first place an entry names that proves; a pack
    that is missing or a record that does not prove sends it to the next
    place, so an entry naming false places cannot make a record unpullable
    while a true place exists. Each run's own record must be a record of that
    run.
    """

    def __init__(self, store: Store, remote: Remote, catalog: Catalog,
                 runs: Sequence[RemoteRun], progress: Progress) -> None:
        self.store, self.remote, self.catalog, self.progress = store, remote, catalog, progress
        self.fetched: dict[bytes, bytes] = {}
        self.waiting: list[tuple[Digest, bytes]] = []  # records whose dictionary is coming
        self.tried: dict[bytes, int] = {}  # how many places each record was fetched from
        self.roots = {run.digest.raw: run for run in runs}
        #: Bytes already read from each pack, as (start, bytes) spans: a record the walk
        #: wants in a later round is often beside one it read before.
        self.spans: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        self.queue = [run.digest for run in runs if not store.has(run.digest)]
        self.requested: set[bytes] = {d.raw for d in self.queue}

    def run(self) -> dict[bytes, bytes]:
        while self.queue or self.waiting:
            self._read_round()
            still = [item for item in self.waiting if not self._prove(*item)]
            if still and not self.queue:
                raise CorruptObjectError(still[0][0], None, "the dictionary it was compressed "
                                         "with is on no pack of the remote")
            self.waiting = still
        return self.fetched

    def _dictionary(self, wanted: Digest) -> bytes:
        record = self.fetched.get(wanted.raw)
        if record is None:
            return self.store._load_dictionary(wanted)
        _kind, payload = open_record(wanted, record)
        return payload

    def _want(self, digest: Digest) -> None:
        if digest.raw not in self.requested and not self.store.has(digest):
            self.requested.add(digest.raw)
            self.queue.append(digest)

    def _retry(self, digest: Digest, why: str) -> None:
        self.fetched.pop(digest.raw, None)
        if self.tried[digest.raw] >= len(self.catalog.objects.get(digest.raw, ())):
            raise RemoteError(self.remote.url, f"{why}. Nothing was written; push the run "
                              "again from its store")
        self.queue.append(digest)

    def _read_round(self) -> None:
        """Fetch everything queued, by ranges of the packs holding it."""
        by_pack: dict[str, list[tuple[Digest, Located]]] = defaultdict(list)
        for digest in self.queue:
            places = self.catalog.objects.get(digest.raw)
            if not places:
                raise RemoteError(self.remote.url, f"it lacks object {digest.hex}, which a "
                                  "run it publishes needs; push that run again from its store")
            place = places[self.tried.get(digest.raw, 0)]
            self.tried[digest.raw] = self.tried.get(digest.raw, 0) + 1
            by_pack[place.pack].append((digest, place))
        self.queue = []
        for pack, wanted in sorted(by_pack.items()):
            wanted.sort(key=lambda item: item[1].offset)
            try:
                self._read_spans(pack, [place for _, place in wanted])
            except RemoteError as exc:
                for digest, _ in wanted:
                    self._retry(digest, exc.reason)
                continue
            for digest, place in wanted:
                record = self._cut(pack, place)
                self.fetched[digest.raw] = record
                self.waiting.append((digest, record))
            self.progress(len(self.fetched), 0)

    def _read_spans(self, pack: str, places: list[Located]) -> None:
        """Read what ``places`` need of a pack that earlier rounds did not: each byte once,
        nearby records in one request."""
        spans = self.spans[pack]
        needed = [piece for p in places
                  for piece in _uncovered(spans, p.offset, p.offset + p.length)]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(needed):
            if merged and start - merged[-1][1] <= SPAN_GAP:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        # A merged request never reads again what a span holds already.
        requests = [piece for start, end in merged for piece in _uncovered(spans, start, end)]
        if requests:
            parts = self.remote.client.get_ranges(pack_key(pack), requests)
            spans += [(start, data) for (start, _), data in zip(requests, parts, strict=True)]
            self.spans[pack] = _joined(spans)

    def _cut(self, pack: str, place: Located) -> bytes:
        for start, data in self.spans[pack]:
            if start <= place.offset and place.offset + place.length <= start + len(data):
                return data[place.offset - start: place.offset - start + place.length]
        raise AssertionError("a span was read for every place")  # pragma: no cover

    def _prove(self, digest: Digest, record: bytes) -> bool:
        """Prove one record and want its references; False while its dictionary is coming."""
        needs = record_dictionary(record)
        if needs is not None and needs.raw not in self.fetched and not self.store.has(needs):
            self._want(needs)
            return False
        root = self.roots.get(digest.raw)
        try:
            kind, references = prove_record(digest, record, self._dictionary,
                                            shape=root is not None)
            if root is not None:
                _check_run(digest, record, self._dictionary, root, kind)
        except PinrunError as exc:
            place = self.catalog.objects[digest.raw][self.tried[digest.raw] - 1]
            self._retry(digest, f"pack {pack_key(place.pack)} is damaged or tampered with: "
                        f"its record {digest.hex} does not prove ({exc})")
            return True
        for child in references:
            self._want(child)
        return True


def _uncovered(spans: list[tuple[int, bytes]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` no span holds (spans sorted, not overlapping)."""
    pieces = []
    for span_start, data in spans:
        span_end = span_start + len(data)
        if span_end <= start or span_start >= end:
            continue
        if span_start > start:
            pieces.append((start, span_start))
        start = max(start, span_end)
        if start >= end:
            return pieces
    if start < end:
        pieces.append((start, end))
    return pieces


def _joined(spans: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Spans sorted, with those that touch made one (a record may lie across two)."""
    out: list[tuple[int, bytes]] = []
    for start, data in sorted(spans, key=lambda span: span[0]):
        if out and out[-1][0] + len(out[-1][1]) == start:
            out[-1] = (out[-1][0], out[-1][1] + data)
        else:
            out.append((start, data))
    return out


def _check_run(digest: Digest, record: bytes, dictionary: Callable[[Digest], bytes],
               run: RemoteRun, kind: Kind) -> None:
    """A published run's record must be a record of that very run."""
    _kind, payload = open_record(digest, record, dictionary)
    problem = run_ref_problem(f"runs/{run.id}", kind, codec.decode_tagged(payload))
    if problem is not None:
        raise CorruptObjectError(digest, None, f"the remote publishes it as run {run.id}, "
                                 f"but {problem}")


def _write_bundle(path: Path, refs: dict[str, Digest], records: dict[bytes, bytes]) -> None:
    with path.open("wb") as handle:
        writer = Writer(handle)
        write_head(writer, refs, [])
        for raw, record in records.items():
            writer.write(RECORD_TAG + raw + U64.pack(len(record)) + record)
        write_end(writer, len(records))
