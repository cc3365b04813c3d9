"""The flows of ``test_bench_values.py``: large bytes, and wide state.

Each step makes its data itself (the same data the baselines are handed), so
a recording times the engine, the codec and the store, plus the step's own
making of the data, which the benchmark measures separately (``make_*``).
"""

from __future__ import annotations

from typing import Any

import blake3

import pinrun

#: The bytes value: 100 MiB of incompressible bytes (the store's worst case).
BYTES_SIZE = 100 * 1024 * 1024
#: Keys of the wide state, top-level and nested.
WIDE_KEYS = 100_000


def make_bytes(size: int = BYTES_SIZE) -> bytes:
    """``size`` incompressible bytes, the same every time (BLAKE3's output stream)."""
    return blake3.blake3(b"pinrun-bench-values").digest(length=size)


def make_table(keys: int = WIDE_KEYS) -> dict[str, Any]:
    """A map of ``keys`` small records (about 50 bytes of JSON each)."""
    return {f"k{i:06d}": {"id": i, "name": f"item {i}", "qty": i % 7} for i in range(keys)}


@pinrun.step
def produce(size: int) -> dict[str, Any]:
    """Return ``size`` bytes as one state value."""
    return {"blob": make_bytes(size)}


@pinrun.step
def measure(blob: bytes) -> dict[str, Any]:
    """Read the bytes back (a step reading a large value)."""
    return {"length": len(blob)}


bytes_flow = pinrun.Flow("bench-bytes", [produce, measure])


@pinrun.step
def spread(keys: int) -> dict[str, Any]:
    """Write ``keys`` top-level keys."""
    return make_table(keys)


@pinrun.step
def tally(state: Any) -> dict[str, Any]:
    """Read every top-level key."""
    return {"total": sum(value["qty"] for key, value in state.items() if key != "keys")}


wide_flow = pinrun.Flow("bench-wide", [spread, tally])


@pinrun.step
def tabulate(keys: int) -> dict[str, Any]:
    """Write one key holding a map of ``keys`` keys."""
    return {"table": make_table(keys)}


@pinrun.step
def sum_table(table: dict[str, Any]) -> dict[str, Any]:
    """Read the nested map."""
    return {"total": sum(value["qty"] for value in table.values())}


nested_flow = pinrun.Flow("bench-nested", [tabulate, sum_table])
