"""Shared plumbing: the benchmark fixture's type, and the ratio bookkeeping.

Every benchmark calls :func:`report` after its ``benchmark.pedantic`` run. That
writes the throughput into ``benchmark.extra_info`` (so it lands in
``--benchmark-json`` output), and, for a pinrun variant, the ratio of its
throughput to every baseline already measured in the same group. The
``conftest.py`` terminal-summary hook prints the same figures as one table per
group at the end of the run. Timings are never asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "RESULTS",
    "BenchmarkFixture",
    "Result",
    "report",
]

T = TypeVar("T")

#: Name prefix that marks the system under test; everything else is a baseline.
TARGET_PREFIX = "pinrun"


class BenchmarkFixture(Protocol):
    """The parts of pytest-benchmark's ``benchmark`` fixture these benchmarks use."""

    group: str | None
    extra_info: dict[str, Any]

    @property
    def stats(self) -> Any: ...

    def pedantic(
        self,
        target: Callable[..., T],
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]] | None = None,
        teardown: Callable[..., None] | None = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
    ) -> T: ...


@dataclass
class Result:
    """One benchmark's figures, kept for the end-of-run summary."""

    group: str
    name: str
    unit: str
    count: int
    median_s: float
    min_s: float
    rounds: int
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Items (objects, reads, snapshots, starts) per second, from the median round."""
        return self.count / self.median_s if self.median_s > 0 else float("inf")


#: group -> implementation name -> result, in the order they ran.
RESULTS: dict[str, dict[str, Result]] = {}


def report(
    benchmark: BenchmarkFixture,
    name: str,
    count: int,
    unit: str = "objects",
    notes: dict[str, Any] | None = None,
) -> Result | None:
    """Record throughput (and ratios to baselines) for the run just measured.

    Returns ``None`` when benchmarking is disabled (``--benchmark-disable``).
    """
    notes = dict(notes or {})
    benchmark.extra_info.update(notes)
    metadata = benchmark.stats
    if not metadata:
        return None
    stats = metadata.stats
    group = benchmark.group or "default"
    result = Result(group, name, unit, count, float(stats.median), float(stats.min),
                    int(stats.rounds), notes)
    benchmark.extra_info["implementation"] = name
    benchmark.extra_info[unit] = count
    benchmark.extra_info[f"{unit}_per_s"] = round(result.rate, 1)
    peers = RESULTS.setdefault(group, {})
    if name.startswith(TARGET_PREFIX):
        for other in peers.values():
            if not other.name.startswith(TARGET_PREFIX):
                ratio = result.rate / other.rate
                benchmark.extra_info[f"ratio_vs_{other.name}"] = round(ratio, 3)
                print(f"[{group}] {name} / {other.name} throughput ratio: {ratio:.3f}")
    peers[name] = result
    return result
