"""A counting proxy for a remote's object client, and what S3 makes of range reads.

:class:`Counting` wraps ``remote.client`` (the narrow :class:`ObjectClient`
interface push and pull use) and delegates every call, counting the calls by
type and the bytes sent and received. It sees pinrun's calls, not HTTP:

* ``list`` is one call however many objects it yields; S3 answers 1,000 keys
  per page, so its requests are ``ceil(keys / 1000)`` (at least one);
* ``get_ranges`` is one call for many ranges. pinrun merges ranges itself
  (records of a pack within 64 KiB of each other are one span) and the S3
  client then makes one GET per span, so the HTTP requests are the ranges
  asked for and the bytes are theirs. (Before that, obstore merged ranges
  within 1 MiB, ``OBJECT_STORE_COALESCE_DEFAULT``, fetching the gaps too;
  :func:`coalesce` computes what that did, for comparison.) A folder remote
  reads exactly the ranges asked for.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pinrun.remote.client import ObjectClient

__all__ = ["COALESCE", "Counting", "Traffic", "coalesce"]

#: object_store's OBJECT_STORE_COALESCE_DEFAULT: ranges this close share one GET.
COALESCE: Final = 1 << 20
#: Keys per page of an S3 ListObjectsV2 answer.
LIST_PAGE: Final = 1000


def coalesce(ranges: Sequence[tuple[int, int]], gap: int = COALESCE) -> list[tuple[int, int]]:
    """The ranges object_store actually requests for ``ranges`` (sorted, merged)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass
class Traffic:
    """What one operation asked of a remote."""

    calls: Counter[str] = field(default_factory=Counter)
    #: Ranges asked for by get_ranges calls, and the GETs S3 makes of them once merged.
    ranges: int = 0
    range_gets: int = 0
    #: Keys yielded by list calls, and the pages S3 answers them in.
    listed: int = 0
    list_pages: int = 0
    sent: int = 0
    #: Bytes pinrun received, and bytes an S3 server sends (merged ranges).
    received: int = 0
    received_s3: int = 0
    #: Seconds spent inside the remote's calls (the transfer, as pinrun waits on it).
    seconds: float = 0.0

    def requests(self, s3: bool) -> int:
        """HTTP requests for an S3 remote, or client calls for a folder."""
        if not s3:
            return sum(self.calls.values())
        return (self.calls["get"] + self.calls["put_new"] + self.range_gets
                + self.list_pages)

    def summary(self, s3: bool) -> dict[str, Any]:
        """The figures as ``extra_info`` notes."""
        out: dict[str, Any] = {f"calls_{name}": count for name, count in sorted(self.calls.items())}
        out.update(requests=self.requests(s3), bytes_sent=self.sent,
                   bytes_received=self.received_s3 if s3 else self.received,
                   transfer_s=round(self.seconds, 3))
        if self.ranges:
            out.update(ranges_asked=self.ranges, range_gets=self.range_gets)
        if s3 and self.received_s3 != self.received:
            out["bytes_pinrun_used"] = self.received
        return out


class Counting:
    """An :class:`ObjectClient` that counts what passes through it."""

    def __init__(self, inner: ObjectClient) -> None:
        self.inner = inner
        self.url = inner.url
        self.traffic = Traffic()

    def reset(self) -> Traffic:
        """The traffic so far; start counting afresh."""
        done, self.traffic = self.traffic, Traffic()
        return done

    def get(self, key: str) -> bytes | None:
        """Delegated, counted."""
        self.traffic.calls["get"] += 1
        started = time.perf_counter()
        data = self.inner.get(key)
        self.traffic.seconds += time.perf_counter() - started
        size = len(data) if data is not None else 0
        self.traffic.received += size
        self.traffic.received_s3 += size
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Delegated, counted (one GET per range on S3: pinrun merged them already)."""
        self.traffic.calls["get_ranges"] += 1
        self.traffic.ranges += len(ranges)
        self.traffic.range_gets += len(ranges)
        self.traffic.received_s3 += sum(end - start for start, end in ranges)
        started = time.perf_counter()
        parts = self.inner.get_ranges(key, ranges)
        self.traffic.seconds += time.perf_counter() - started
        self.traffic.received += sum(len(part) for part in parts)
        return parts

    def put_new(self, key: str, data: bytes) -> bool:
        """Delegated, counted."""
        self.traffic.calls["put_new"] += 1
        self.traffic.sent += len(data)
        started = time.perf_counter()
        created = self.inner.put_new(key, data)
        self.traffic.seconds += time.perf_counter() - started
        return created

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Delegated, counted (pages of 1,000 keys on S3)."""
        self.traffic.calls["list"] += 1
        started = time.perf_counter()
        items = list(self.inner.list(prefix))  # timed whole: the listing is the transfer
        self.traffic.seconds += time.perf_counter() - started
        self.traffic.listed += len(items)
        self.traffic.list_pages += max(1, -(-len(items) // LIST_PAGE))
        yield from items
