"""codec.encode copies short encodings out of orjson's working buffer (issue 13)."""

from __future__ import annotations

import orjson
import pytest

from pinrun.artifacts import codec

BOUNDARY = codec.COMPACT_BELOW  # the length from which orjson's own buffer is kept


@pytest.mark.parametrize("length", [0, 1, BOUNDARY - 3, BOUNDARY - 2, BOUNDARY - 1, BOUNDARY,
                                    BOUNDARY + 1, 4 * BOUNDARY])
def test_encodings_either_side_of_the_copy_boundary_are_exact(length: int) -> None:
    """A string encoding just under, at and over the copy boundary is the canonical bytes."""
    value = {"s": "x" * length}
    out = codec.encode(value)
    assert type(out) is bytes
    assert out == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert codec.decode(out) == value


def test_many_short_encodings_are_distinct_exact_values() -> None:
    """100,000 small records each keep their own exact encoding (as the engine holds them)."""
    records = [{"id": i, "name": f"item {i}", "qty": i % 7} for i in range(100_000)]
    encoded = [codec.encode(record) for record in records]
    assert len(set(encoded)) == len(records)
    assert all(codec.decode(raw) == record for raw, record in zip(encoded, records, strict=True))
