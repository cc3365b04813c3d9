"""Run records: their fast encoding is the codec's encoding."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.engine.records import RunRecord, StepError, StepRecord, built


def _digest(n: int) -> Digest:
    return compute_digest(Kind.VALUE, str(n).encode())


@given(message=st.text(), hazards=st.lists(st.text(), max_size=3), attempt=st.integers(1, 5),
       entry=st.none() | st.text(), linked=st.booleans())
def test_run_records_encode_as_the_codec_would(message: str, hazards: list[str], attempt: int,
                                               entry: str | None, linked: bool) -> None:
    """Whatever the messages hold (lone surrogates too), the bytes are the codec's; also
    with file inputs, a level's start and a link's continuation."""
    steps = (
        StepRecord(name="a", status="succeeded", inputs=_digest(1), outputs=_digest(2),
                   events=_digest(3), code=_digest(4),
                   files=_digest(10) if linked else None),
        StepRecord(name="b", status="failed", inputs=_digest(5), outputs=None,
                   events=_digest(6), error=StepError("ValueError", message, "tb"),
                   attempt=attempt, hazards=tuple(hazards), code=None),
    )
    run = RunRecord(id="20260101T000000000-abcdef", flow="f", status="failed",
                    inputs=_digest(7), state=_digest(8), steps=steps, timing=None,
                    flow_pin=_digest(9), env=None, entry=entry,
                    level_start=_digest(11) if linked else None,
                    continues=_digest(12) if linked else None)
    assert run.encode() == codec.encode(run.to_value())
    assert RunRecord.from_value(codec.decode(run.encode())) == run


@given(st.dictionaries(st.text(), st.integers(0, 50), max_size=6))
def test_digest_maps_encode_as_the_codec_would(entries: dict[str, int]) -> None:
    """The fast tree encoding equals the generic one, '$' keys and surrogates included."""
    digests = {key: _digest(n) for key, n in entries.items()}
    assert codec.encode_digest_map({"type": "map"}, "entries", digests) == \
        codec.encode({"type": "map", "entries": digests})


def test_built_records_are_what_init_makes() -> None:
    """built() makes the record StepRecord(...) makes: equal, with the same fields, still
    frozen, hashed and pickled the same; a missing or unknown field is a TypeError, as it
    is for the dataclass."""
    values: dict[str, Any] = {
        "name": "a", "status": "succeeded", "inputs": _digest(1), "outputs": _digest(2),
        "events": _digest(3), "error": None, "attempt": 2, "hazards": ("h",),
        "code": _digest(4), "files": None}
    step = built(StepRecord, **values)
    made = StepRecord(**values)
    assert type(step) is StepRecord
    assert step == made
    assert vars(step) == vars(made)
    assert hash(step) == hash(made)
    assert pickle.loads(pickle.dumps(step)) == made
    with pytest.raises(FrozenInstanceError):
        step.name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        built(StepRecord, **{k: v for k, v in values.items() if k != "files"})
    with pytest.raises(TypeError):
        built(StepRecord, **values, extra=1)


def test_a_checked_step_holds_exactly_a_step_records_fields() -> None:
    """The run table's step fields are StepRecord's fields: from_value takes a checked
    step's dict as the record's own (a field added to one must be added to the other)."""
    from dataclasses import fields

    from pinrun.artifacts import shapes

    table = shapes._STEP_RECORD
    assert {*table.required, *table.optional} == {item.name for item in fields(StepRecord)}


def test_a_loaded_step_record_equals_one_made_by_its_constructor() -> None:
    """A step loaded from its stored form is the record it was stored from, error and
    hazards included."""
    tag = Digest(bytes(range(32)))
    step = StepRecord("load", "failed", tag, None, tag, StepError("KeyError", "'x'", "tb"),
                      2, ("a hazard",), tag, tag)
    run = RunRecord(id="20261123T013055012-4f1a2b", flow="f", status="failed", inputs=tag,
                    state=tag, steps=(step,), timing=None, flow_pin=tag, env=None,
                    entry=None, level_start=None)
    loaded = RunRecord.from_value(codec.decode_tagged(run.encode()))
    assert loaded.steps == (step,)
    assert type(loaded.steps[0].hazards) is tuple
    assert type(loaded.steps[0].error) is StepError
