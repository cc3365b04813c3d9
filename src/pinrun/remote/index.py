"""A remote's index: entries that publish packs and run refs, and the catalog they fold to.

Layout of a remote (under its URL)::

    pinrun-remote.json        {"format": 1}: what this prefix is
    packs/<blake3>.pack        a pack: records in the bundle format, named by its bytes
    index/<blake3>             an entry (zstd JSON), named by its bytes

An entry says: "pack P holds these records at these offsets; these runs now
point at these records". It is written after its pack, so a reader who sees
an entry finds its pack. Entries are only ever added, each under the digest
of its bytes, so concurrent pushes never overwrite one another; the catalog
of a remote is all its entries folded together. A run pushed twice (a run
still running when first pushed) is the one of its latest entry.

The signed part of an entry is its ``body``, kept as the exact text that was
signed; each run in it carries its own signature too, over its id and record
digest, so a single pulled run stays provable in the store that pulled it.
Everything here is someone else's data: sizes are bounded before anything
is decompressed or allocated, every field is checked before it is used.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import blake3
import orjson
import zstandard

from pinrun.artifacts.bundle_format import MAX_RECORD
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.shapes import is_run_id
from pinrun.artifacts.tags import validate_tag
from pinrun.errors import PinrunError, RemoteError
from pinrun.remote.keys import PublicKey, SigningKey, index_message, parse_public, run_message

__all__ = ["INDEX_PREFIX", "MARKER", "PACK_PREFIX", "Catalog", "Entry", "Located",
           "RemoteRun", "decode_entry", "encode_entry", "pack_key"]

MARKER: Final = "pinrun-remote.json"
INDEX_PREFIX: Final = "index/"
PACK_PREFIX: Final = "packs/"
FORMAT: Final = 1
#: An entry's stored size and its decompressed size are bounded before reading.
MAX_ENTRY: Final = 64 << 20
#: The most runs and records one entry may name (a push writes at most PUSH_CHUNK runs).
MAX_ENTRY_RUNS: Final = 50_000
MAX_ENTRY_ROWS: Final = 2_000_000
#: One object in a pack's table: raw digest, offset, length.
_ROW: Final = struct.Struct("<32sQI")


def check_marker(data: bytes, url: str) -> None:
    """The remote's marker says it is a pinrun remote of a format this pinrun reads."""
    try:
        fmt = orjson.loads(data)["format"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise RemoteError(url, f"its {MARKER} is not pinrun's; is this the right URL?") \
            from None
    if fmt != FORMAT:
        raise RemoteError(url, f"it has remote format {fmt!r}; this pinrun reads format "
                          f"{FORMAT} (upgrade pinrun)")


def pack_key(pack: str) -> str:
    """The key of the pack named ``pack`` (64 hex characters)."""
    return f"{PACK_PREFIX}{pack}.pack"


@dataclass(frozen=True)
class RemoteRun:
    """One run as a remote publishes it."""

    id: str
    digest: Digest
    flow: str
    status: str
    replaces: str | None = None
    tags: tuple[str, ...] = ()
    signer: PublicKey | None = None
    signature: bytes | None = None

    def signature_holds(self) -> bool:
        """The run's signature, if it has one, is its signer's over its id and record."""
        return self.signature is None or (self.signer is not None and self.signer.verify(
            self.signature, run_message(self.id, self.digest)))


@dataclass(frozen=True)
class Located:
    """Where one record lives on the remote (as an entry says, signed or not)."""

    pack: str
    offset: int
    length: int
    #: The raw public key that signed the entry saying so, if any.
    signer: bytes | None = None


@dataclass
class Entry:
    """One index entry: a pack's table and the runs it publishes."""

    name: str
    pack: str | None
    objects: dict[bytes, Located]
    runs: list[RemoteRun]
    pushed_at: str


def encode_entry(pack: str | None, table: list[tuple[Digest, int, int]],
                 runs: list[RemoteRun], pushed_at: str,
                 key: SigningKey | None) -> tuple[str, bytes]:
    """An entry's stored bytes and its key (``index/<blake3>``), signed with ``key``."""
    rows = b"".join(_ROW.pack(d.raw, offset, length) for d, offset, length in table)
    body = orjson.dumps({
        "format": FORMAT, "pack": pack, "objects": base64.b64encode(rows).decode(),
        "pushed_at": pushed_at,
        "runs": [{"id": r.id, "digest": r.digest.hex, "flow": r.flow, "status": r.status,
                  "replaces": r.replaces, "tags": list(r.tags),
                  "signature": (base64.b64encode(key.sign(run_message(r.id, r.digest)))
                                .decode() if key else None)} for r in runs],
    }, option=orjson.OPT_SORT_KEYS)
    outer = {"format": FORMAT, "body": body.decode(),
             "signer": key.public.text if key else None,
             "signature": base64.b64encode(key.sign(index_message(body))).decode()
             if key else None}
    data = zstandard.ZstdCompressor(level=3).compress(orjson.dumps(outer))
    return f"{INDEX_PREFIX}{blake3.blake3(data).hexdigest()}", data


def decode_entry(name: str, data: bytes, where: str, *, check_signature: bool = True) -> Entry:
    """Check and read the entry stored as ``name``; any damage is a :class:`RemoteError`.

    The entry's signature is checked unless ``check_signature`` is False (a copy
    this store cached after checking it). Each run's own signature is checked
    when that run is pulled (:meth:`RemoteRun.check_signature`), not here: a
    catalog of many thousand runs is read at every push and pull.
    """
    def bad(reason: str) -> RemoteError:
        return RemoteError(where, f"index entry {name} is damaged or not pinrun's: {reason}")

    if name != f"{INDEX_PREFIX}{blake3.blake3(data).hexdigest()}":
        raise bad("its bytes do not match its name")
    try:
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            text = reader.read(MAX_ENTRY + 1)
        if len(text) > MAX_ENTRY:
            raise bad(f"it inflates past {MAX_ENTRY >> 20} MiB")
        outer = orjson.loads(text)
        if outer.get("format") != FORMAT:
            raise bad(f"its format {outer.get('format')!r} is not {FORMAT}; upgrade pinrun")
        body_text = outer["body"].encode()
        signer = parse_public(outer["signer"]) if outer["signer"] is not None else None
        signature = _b64(outer["signature"]) if outer["signature"] is not None else None
        if (signer is None) != (signature is None):
            raise bad("it has a signer without a signature, or the reverse")
        if check_signature and signer is not None and signature is not None and \
                not signer.verify(signature, index_message(body_text)):
            raise bad(f"its signature is not {signer.name}'s")
        body = orjson.loads(body_text)
        pack = body["pack"]
        if pack is not None and (not isinstance(pack, str) or len(pack) != 64
                                 or not set(pack) <= set("0123456789abcdef")):
            raise bad("it names a pack that is not a digest")
        rows = _b64(body["objects"])
        if len(rows) % _ROW.size or (rows and pack is None):
            raise bad("its table of objects is malformed")
        if len(rows) // _ROW.size > MAX_ENTRY_ROWS or len(body["runs"]) > MAX_ENTRY_RUNS:
            raise bad("it names more runs or records than one push ever does")
        who = signer.raw if signer is not None else None
        objects = {raw: Located(pack, offset, length, who)
                   for raw, offset, length in _ROW.iter_unpack(rows)} if pack else {}
        if any(located.length > MAX_RECORD for located in objects.values()):
            raise bad("its table names a record larger than any pinrun writes")
        runs = [_run(item, signer) for item in body["runs"]]
        pushed_at = _push_time(body["pushed_at"])
        if pushed_at is None:
            raise bad("its push time is not a UTC time up to now")
    except RemoteError:
        raise
    except (zstandard.ZstdError, orjson.JSONDecodeError, KeyError, TypeError, ValueError,
            AttributeError, PinrunError) as exc:
        raise bad(str(exc)[:200]) from None
    return Entry(name, pack, objects, runs, pushed_at)


def _push_time(text: Any) -> str | None:
    """``text`` if it is an ISO UTC time no later than a day from now (clocks drift)."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
        return None
    return text if moment <= datetime.now(UTC) + timedelta(days=1) else None


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("base64 text expected")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None


def _run(item: Any, signer: PublicKey | None) -> RemoteRun:
    if not isinstance(item, dict) or not is_run_id(item["id"]):
        raise ValueError(f"a run entry has no valid run id ({str(item)[:80]})")
    flow, status, replaces = item["flow"], item["status"], item["replaces"]
    if not isinstance(flow, str) or len(flow) > 255 or \
            status not in ("running", "succeeded", "failed") or \
            (replaces is not None and not is_run_id(replaces)):
        raise ValueError(f"run {item['id']} has a malformed flow, status or replaces")
    tags = tuple(validate_tag(tag) for tag in item["tags"])
    signature = _b64(item["signature"]) if item["signature"] is not None else None
    digest = Digest.from_hex(item["digest"])
    if signature is not None and signer is None:
        raise ValueError(f"run {item['id']} carries a signature and names no signer")
    return RemoteRun(item["id"], digest, flow, status, replaces,
                     tags, signer if signature is not None else None, signature)


#: The name of an index entry: its bytes' digest.
ENTRY_NAME: Final = re.compile(r"index/[0-9a-f]{64}")


def may_supersede(new: RemoteRun, old: RemoteRun) -> bool:
    """Whether ``new`` may speak for a run (or replace one) that ``old`` published.

    A signed run is superseded or replaced only by what its own key signed:
    an entry anyone could write cannot hide a signed run from the gate, move
    it to another record, or strip its signature.
    """
    return old.signer is None or (new.signer is not None and new.signer.raw == old.signer.raw)


@dataclass
class Catalog:
    """What a remote holds: its runs (latest entry wins) and where each record is."""

    runs: dict[str, RemoteRun] = field(default_factory=dict)
    #: Each record's places, as entries name them (signed entries' first).
    objects: dict[bytes, list[Located]] = field(default_factory=dict)
    #: Names under ``index/`` that are no entry (a stray file): left out.
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def fold(cls, entries: Iterable[Entry]) -> Catalog:
        """The catalog of ``entries``, in push order (then by name, for ties)."""
        catalog = cls()
        for entry in sorted(entries, key=lambda e: (e.pushed_at, e.name)):
            for raw, located in entry.objects.items():
                catalog.objects.setdefault(raw, []).append(located)
            for run in entry.runs:
                earlier = catalog.runs.get(run.id)
                if earlier is None or may_supersede(run, earlier):
                    catalog.runs[run.id] = run
        for places in catalog.objects.values():
            places.sort(key=lambda located: located.signer is None)  # stable: push order kept
        return catalog

    def held(self, signer: bytes | None) -> set[bytes]:
        """The records a pusher can count on: all of them, or those its own key published."""
        if signer is None:
            return set(self.objects)
        return {raw for raw, places in self.objects.items()
                if any(place.signer == signer for place in places)}
