"""``fsck``: check every byte of a store, and say everything that is wrong.

Four passes, each reporting what it finds and going on to the next:

1. **structure**: the LMDB data file is walked page by page with plain file
   reads (py-lmdb's offline verifier, which never hands the file to LMDB), so
   a broken page, a damaged free list or a bad meta page is found without
   risking the process;
2. **objects**: every record is read by a cursor walk *and* looked up by its
   key (a damaged branch page can hide a key from lookups while the walk
   still sees it: that is ``index`` damage), re-hashed, and its structure
   checked;
3. **refs and meta**: the same walk-and-lookup over the ``refs`` and ``meta``
   databases, checking each ref is a valid name pointing at a digest and each
   meta entry is one pinrun writes;
4. **references**: every digest a ref or an object names is looked up.

A damaged page can still make LMDB abort the process; the CLI runs this scan
in a child process (:mod:`pinrun.artifacts.fsck_child`) so that such a crash
becomes a one-line report. Reads are done in chunks of short transactions,
so a scan beside writers does not make the file grow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pinrun.artifacts import codec, shapes
from pinrun.artifacts.batch import _OFFERED_BYTES, _OFFERED_OBJECTS
from pinrun.artifacts.digest import DIGEST_SIZE, Digest, Kind
from pinrun.artifacts.lmdb_meta import read_head
from pinrun.artifacts.objects import record_dictionary
from pinrun.artifacts.proof import prove_record
from pinrun.artifacts.refs import stored_ref_problem, validate_ref_name
from pinrun.artifacts.store import STORE_FORMAT, STORE_FORMATS, Store
from pinrun.errors import (
    CorruptObjectError,
    InputError,
    MissingObjectError,
    PinrunError,
    StoreError,
)

__all__ = ["PROBLEM_KINDS", "FsckReport", "Problem", "check_pages", "fsck"]

#: Called as ``progress(done, total)`` during long scans.
Progress = Callable[[int, int], None]

#: Every kind of problem fsck reports, and what it means.
PROBLEM_KINDS: Final = {
    "corrupt": "an object's bytes do not hash to its digest, or its structure is broken",
    "missing": "a ref or an object names a digest the store does not hold",
    "unreadable": "an object's record cannot be read by this pinrun",
    "bad-key": "a key in the objects database is not a digest",
    "index": "a key the walk of the database finds cannot be looked up (or the reverse)",
    "bad-ref": "an entry of the refs database is not a ref name pointing at a digest "
               "(with its check, in a store of format 2), or its target is not what its "
               "name says",
    "meta": "an entry of the meta database is not one pinrun writes",
    "structure": "the LMDB data file itself is damaged (pages, free list, meta pages)",
    "damaged": "LMDB refused to go on reading a database",
    "aborted": "the check itself was killed by the damage before it finished",
}
_CHUNK: Final = 2048
_STRUCTURE_ATTEMPTS: Final = 3
_COUNTERS: Final = (_OFFERED_OBJECTS, _OFFERED_BYTES)


def _no_progress(done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store."""

    #: One of :data:`PROBLEM_KINDS`.
    kind: str
    #: The object concerned (``None`` when no digest names it).
    digest: Digest | None
    #: A sentence saying what is wrong.
    detail: str
    #: What points to a missing object: another object's digest or ``ref NAME``.
    referenced_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"kind": self.kind, "digest": self.digest.hex if self.digest else None,
                "detail": self.detail, "referenced_by": self.referenced_by}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """The problem :meth:`as_dict` described."""
        digest = data.get("digest")
        return cls(str(data["kind"]), Digest.from_hex(digest) if digest else None,
                   str(data["detail"]), data.get("referenced_by"))


@dataclass
class FsckReport:
    """What ``fsck`` found."""

    objects_checked: int = 0
    refs_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: Whether the page-level pass ran to the end (it is skipped while writers keep committing).
    structure_checked: bool = False
    #: Why the check stopped early (set by an isolated run whose child died), else ``None``.
    aborted: str | None = None
    #: The store's format: 1 keeps its refs without checks (``pinrun upgrade`` adds them).
    store_format: int = int(STORE_FORMAT)

    @property
    def ok(self) -> bool:
        """True when the store has no problem at all."""
        return not self.problems


class _Scan:
    """One fsck run: the report, and who hears of each problem as it is found."""

    def __init__(self, store: Store, progress: Progress,
                 on_problem: Callable[[Problem], None] | None) -> None:
        self.store = store
        self.env = store.environment
        self.progress = progress
        self.on_problem = on_problem
        self.report = FsckReport()
        self.present: set[bytes] = set()
        self.index_damaged: set[bytes] = set()  # keys already reported as index damage
        # referenced digest -> who references it first: an object's digest, or a ref name
        self.wanted: dict[bytes, Digest | str] = {}

    def add(self, problem: Problem) -> None:
        self.report.problems.append(problem)
        if self.on_problem is not None:
            self.on_problem(problem)

    def walk(self, db_name: str) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of a database by a cursor walk, each confirmed by a lookup.

        A key the lookup misses or answers differently, or a walk out of key
        order, is ``index`` damage. LMDB refusing to go on is ``damaged``.
        """
        db = self.env.dbs[db_name]
        after: bytes | None = None
        seen = 0
        try:
            limit = 2 * self._entries(db_name) + 1024  # a looping walk must end
            while True:
                rows: list[tuple[bytes, bytes, bytes | None]] = []
                with self.env.read() as txn:
                    cursor = txn.cursor(db=db)
                    found = cursor.set_range(after) if after is not None else cursor.first()
                    if found and after is not None and cursor.key() == after:
                        found = cursor.next()
                    while found and len(rows) < _CHUNK:
                        key, value = cursor.key(), cursor.value()
                        rows.append((key, value, txn.get(key, db=db)))
                        found = cursor.next()
                for key, value, looked_up in rows:
                    seen += 1
                    if (after is not None and key <= after) or seen > limit:
                        self.add(Problem("index", None, f"the walk of the {db_name} database "
                                         "goes out of key order (a damaged branch page); "
                                         "the rest of it was not checked"))
                        return
                    after = key
                    if looked_up != value:
                        self.index_damaged.add(key)
                        self.add(Problem("index", _digest_or_none(key), f"key {_show(key)} "
                                         f"of the {db_name} database is found by a walk but "
                                         "a lookup " + ("misses it" if looked_up is None else
                                                        "finds another value") +
                                         " (a damaged branch page)"))
                    yield key, value
                if not found or not rows:
                    return
        except StoreError as exc:
            self.add(Problem("damaged", None, f"reading the {db_name} database stopped: {exc}"))

    def _entries(self, db_name: str) -> int:
        with self.env.read() as txn:
            return int(txn.stat(self.env.dbs[db_name])["entries"])

    def check_counts(self, walked: dict[str, int], txnid_before: int) -> None:
        """The walks found as many entries as each database says it holds (if nothing moved)."""
        if self._txnid() != txnid_before:
            return  # writers committed meanwhile: the counts cannot be compared
        for db_name, count in walked.items():
            entries = self._entries(db_name)
            if entries != count:
                self.add(Problem("index", None, f"the {db_name} database says it holds "
                                 f"{entries:,} entries, but a walk of it finds {count:,}"))

    def _txnid(self) -> int:
        return int(self.env.handle.info()["last_txnid"])


def fsck(store: Store, progress: Progress = _no_progress, *,
         on_problem: Callable[[Problem], None] | None = None,
         structure: bool = True) -> FsckReport:
    """Check the data file's pages, every object, ref and meta entry, and every reference.

    ``on_problem`` hears of each problem as it is found (the isolated CLI
    run streams them to its parent). ``structure=False`` skips the page-level
    pass. Reports every problem found, not just the first.
    """
    scan = _Scan(store, progress, on_problem)
    if structure:
        problems, scan.report.structure_checked = check_pages(store.path / "data.mdb")
        for problem in problems:
            scan.add(problem)
    txnid_before = scan._txnid()
    walked = {"objects": _check_objects(scan), "refs": _check_refs(scan),
              "meta": _check_meta(scan)}
    scan.check_counts(walked, txnid_before)
    _check_references(scan)
    progress(scan.report.objects_checked, scan.report.objects_checked)
    return scan.report


def check_pages(data_file: Path) -> tuple[list[Problem], bool]:
    """The page-level pass over ``data_file``, with plain reads: (problems, whether it ran).

    It does not run (``False``) without py-lmdb's offline verifier, or when
    writers keep committing while it reads (their pages move under the walk).
    """
    try:
        from lmdb import verify as lmdb_verify
    except ImportError:  # py-lmdb before 3.0 has no offline verifier
        return [], False
    for _ in range(_STRUCTURE_ATTEMPTS):
        try:
            before = read_head(data_file).txnids
            try:
                # py-lmdb's verifier is unannotated; it returns a list of strings.
                found = lmdb_verify.verify(str(data_file), subdir=False)  # type: ignore[no-untyped-call]
                findings = [str(f) for f in found]
            except lmdb_verify.VerifyError as exc:
                findings = [str(exc)]
            if read_head(data_file).txnids != before:
                continue
        except (OSError, StoreError) as exc:
            findings = [str(exc)]
        return [Problem("structure", None, f"data.mdb: {finding}") for finding in findings], True
    return [], False


def _check_objects(scan: _Scan) -> int:
    store, report = scan.store, scan.report
    total = store.object_count()
    walked = 0
    for key, record in scan.walk("objects"):
        walked += 1
        report.objects_checked += 1
        if report.objects_checked % 1024 == 0:
            scan.progress(report.objects_checked, max(total, report.objects_checked))
        if len(key) != DIGEST_SIZE:
            scan.add(Problem("bad-key", None, f"a key of {len(key)} bytes "
                             f"({key[:16].hex()}...) is not a digest"))
            continue
        scan.present.add(key)
        digest = Digest(key)
        try:
            dictionary = record_dictionary(record)
            if dictionary is not None:
                scan.wanted.setdefault(dictionary.raw, digest)
            _, children = prove_record(digest, record, store._load_dictionary)
        except CorruptObjectError as exc:
            if exc.digest == digest:
                scan.add(Problem("corrupt", digest, str(exc)))
            # else: its dictionary is damaged, which is reported once, as that object
            continue
        except MissingObjectError:
            continue  # its dictionary is missing: reported below, once, as that object
        except PinrunError as exc:
            scan.add(Problem("unreadable", digest, str(exc)))
            continue
        for child in children:
            scan.wanted.setdefault(child.raw, digest)
    return walked


def _check_refs(scan: _Scan) -> int:
    walked = 0
    for key, raw in scan.walk("refs"):
        walked += 1
        try:
            name = validate_ref_name(key.decode())
        except (UnicodeDecodeError, InputError):
            scan.add(Problem("bad-ref", None, f"the refs database holds {_show(key)}, "
                             "which is not a valid ref name"))
            continue
        problem = stored_ref_problem(key, raw, scan.store.checks_refs)
        if problem is not None:
            scan.add(Problem("bad-ref", None, f"ref {name!r}: {problem}"))
            continue
        scan.report.refs_checked += 1
        target = raw[:DIGEST_SIZE]
        scan.wanted.setdefault(target, name)
        if name.startswith(shapes.RUN_REF_PREFIX):
            _check_run_ref(scan, name, Digest(target))
    return walked


def _check_run_ref(scan: _Scan, name: str, target: Digest) -> None:
    """A ``runs/<id>`` ref must name a run record of run ``<id>`` (its id names a lease file)."""
    try:
        kind, payload = scan.store.load(target)
        value = codec.decode_tagged(payload)
    except PinrunError:
        return  # the object itself is reported as corrupt or missing
    problem = shapes.run_ref_problem(name, kind, value)
    if problem is not None:
        scan.add(Problem("bad-ref", target, f"ref {name!r}: {problem}"))
        return
    _check_run_chain(scan, name, target, value)


def _check_run_chain(scan: _Scan, name: str, head: Digest, value: Any) -> None:
    """The links of a run still recording (``continues``) must be records of that run,
    as loading it requires; the first bad one is reported (objects themselves are
    checked elsewhere)."""
    run_id = value["id"]
    link, seen = value.get("continues"), 0
    while isinstance(link, dict) and isinstance(link.get("$digest"), str) and \
            seen < shapes.MAX_RUN_LINKS:
        seen += 1
        try:
            digest = Digest.from_hex(link["$digest"])
            kind, payload = scan.store.load(digest)
            found = codec.decode_tagged(payload)
        except PinrunError:
            return  # the object itself is reported as corrupt or missing
        problem = shapes.shape_problem(kind, found) if kind is Kind.RUN else \
            f"it is a {kind.value} object"
        if problem is None and found.get("id") != run_id:
            problem = f"it is a record of run {found.get('id')}"
        if problem is not None:
            scan.add(Problem("bad-ref", digest, f"ref {name!r}: the record of run {run_id} "
                             f"continues {digest.hex}, which is not a link of that run "
                             f"({problem})"))
            return
        link = found.get("continues")


def _check_meta(scan: _Scan) -> int:
    walked = 0
    for key, value in scan.walk("meta"):
        walked += 1
        if key == b"format":
            if value not in STORE_FORMATS:
                scan.add(Problem("meta", None, f"the store format marker is {value[:16]!r}, "
                                 f"not one of {', '.join(map(repr, STORE_FORMATS))}"))
            else:
                scan.report.store_format = int(value)
        elif key in _COUNTERS:
            if len(value) != 8:
                scan.add(Problem("meta", None, f"counter {key.decode()} holds {len(value)} "
                                 "bytes, not 8"))
        else:
            scan.add(Problem("meta", None, f"the meta database holds an unknown key "
                             f"{_show(key)}"))
    return walked


def _check_references(scan: _Scan) -> None:
    store, env = scan.store, scan.env
    objects_db = env.dbs["objects"]
    pending = sorted(scan.wanted.items())
    try:
        for start in range(0, len(pending), _CHUNK):
            chunk = pending[start:start + _CHUNK]
            with env.read() as txn:
                found = [txn.get(raw, db=objects_db) is not None for raw, _ in chunk]
            for (raw, holder), there in zip(chunk, found, strict=True):
                if there:
                    continue
                missing = Digest(raw)
                label = holder.hex if isinstance(holder, Digest) else f"ref {holder!r}"
                if raw in scan.present:
                    if raw in scan.index_damaged:
                        continue  # the walk reported it already
                    scan.add(Problem("index", missing, f"object {missing.hex}, referenced "
                                     f"by {label}, is in the objects database but a lookup "
                                     "misses it (a damaged branch page)", label))
                    continue
                # The scan reads in chunks: an object gc removed meanwhile, together
                # with everything that pointed to it, is not damage. Confirm first.
                if store.has(missing) or not _holder_still_there(store, holder):
                    continue
                scan.add(Problem("missing", missing, str(MissingObjectError(missing, label)),
                                 label))
    except StoreError as exc:
        scan.add(Problem("damaged", None, f"looking up referenced objects stopped: {exc}"))


def _holder_still_there(store: Store, holder: Digest | str) -> bool:
    if isinstance(holder, Digest):
        return store.has(holder)
    return store.get_ref(holder) is not None


def _digest_or_none(key: bytes) -> Digest | None:
    return Digest(key) if len(key) == DIGEST_SIZE else None


def _show(key: bytes) -> str:
    """A key as hex (digests) or its repr (names), short."""
    if len(key) == DIGEST_SIZE:
        return key.hex()
    return repr(key[:64]) + ("..." if len(key) > 64 else "")
