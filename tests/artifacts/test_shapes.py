"""The declared shapes of run, step, flow, env and code objects."""

from __future__ import annotations

import contextlib
import copy
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import codec, shapes
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.trees import check_structure
from pinrun.errors import CorruptObjectError, InputError, PinrunError

HEX = "ab" * 32
TAG = {"$digest": HEX}

RUN: dict[str, Any] = {
    "format": 1, "id": "20261123T013055012-4f1a2b", "flow": "pricing", "status": "failed",
    "inputs": TAG, "state": TAG, "timing": TAG, "flow_pin": TAG, "env": TAG,
    "entry": "examples.pricing:flow", "level_start": None, "replaces": None,
    "steps": [{"name": "load", "status": "failed", "inputs": TAG, "outputs": None,
               "events": TAG, "attempt": 1, "hazards": ["a key collision"], "code": TAG,
               "error": {"type": "KeyError", "message": "'x'", "traceback": "Traceback..."}}],
}
STEP: dict[str, Any] = {
    "name": "load", "module": "examples.pricing", "function": "load", "fingerprint": "ff",
    "version": None, "requires": ["order_id"], "optional": [], "writes": ["lines"],
    "after": None, "is_async": False, "includes": None, "code": [TAG],
}
FLOW: dict[str, Any] = {"name": "pricing", "on_collision": "warn", "max_concurrency": 1,
                        "steps": [TAG], "levels": [["load"]], "code": [TAG]}
ENV: dict[str, Any] = {"python": "3.11.7", "implementation": "cpython",
                       "platform": "linux-x86_64", "hash_seed": "0",
                       "distributions": {"pinrun": "0.1"}}
CODE: dict[str, Any] = {"module": "examples.pricing", "path": "examples/pricing.py",
                        "source": "x = 1\n"}
VALID = {Kind.RUN: RUN, Kind.STEP: STEP, Kind.FLOW: FLOW, Kind.ENV: ENV, Kind.CODE: CODE}


def _decoded(value: Any) -> Any:
    """``value`` with its digest tags as Digests (what the codec would decode)."""
    if value == TAG:
        return Digest.from_hex(HEX)
    if isinstance(value, dict):
        return {key: _decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return value


def _payload(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


KINDS = sorted(VALID, key=lambda kind: kind.value)


@pytest.mark.parametrize("kind", KINDS)
def test_objects_as_pinrun_writes_them_pass(kind: Kind) -> None:
    """Each shaped kind accepts the object pinrun writes, digest tags turned into Digests."""
    value = shapes.parse(compute_digest(kind, _payload(VALID[kind])), kind,
                         _payload(VALID[kind]))
    assert shapes.shape_problem(kind, VALID[kind]) is None
    if kind is Kind.RUN:
        assert value["inputs"] == Digest.from_hex(HEX)
        assert value["steps"][0]["code"] == Digest.from_hex(HEX)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda r: r.pop("inputs"), "inputs is missing"),
    (lambda r: r.update(status="exploded"), "status should be one of"),
    (lambda r: r["steps"][0].update(attempt="1"), "steps[0].attempt should be an integer"),
    (lambda r: r["steps"][0].update(attempt=0), "steps[0].attempt should be at least 1"),
    (lambda r: r["steps"][0].update(hazards=[3]), "steps[0].hazards[0] should be a string"),
    (lambda r: r["steps"][0].update(error={"type": "E"}), "steps[0].error.message is missing"),
    (lambda r: r.update(state={"$digest": "zz"}), "state holds a $digest tag"),
    (lambda r: r.update(inputs="ab" * 32), "inputs should be a digest"),
    (lambda r: r.update(id="../../precious"), "id should be a run id"),
    (lambda r: r.update(replaces="x\x1b[2J"), "replaces should be a run id"),
    (lambda r: r.update(format=3), "format should be 1 or 2"),
    (lambda r: r.update(state=None), "state should be a digest (only a running record"),
    (lambda r: r.update(format=2, state=None), "state should be a digest (only a running"),
    (lambda r: r.update(format=2, state=None, continues=TAG), "state should be a digest"),
    (lambda r: r.update(steps={}), "steps should be a list"),
])
def test_a_malformed_run_record_is_corrupt_and_says_where(change: Any, expected: str) -> None:
    """A bad field makes the record corrupt, and the error names the field."""
    record = copy.deepcopy(RUN)
    change(record)
    digest = compute_digest(Kind.RUN, _payload(record))
    with pytest.raises(CorruptObjectError, match=r".*") as caught:
        check_structure(digest, Kind.RUN, _payload(record))
    assert expected in str(caught.value)
    assert caught.value.digest == digest


def test_a_running_record_may_leave_its_state_out() -> None:
    """A record of a run still recording (format 2; a link, or its first commit) may have
    a null state: the loader rebuilds it."""
    link = {**copy.deepcopy(RUN), "format": 2, "status": "running", "state": None,
            "continues": TAG}
    assert shapes.shape_problem(Kind.RUN, link) is None
    assert shapes.check_shape(None, Kind.RUN, link)["state"] is None
    first = {key: value for key, value in link.items() if key != "continues"}
    assert shapes.shape_problem(Kind.RUN, first) is None
    assert shapes.shape_problem(Kind.RUN, {**link, "format": 1}) == \
        "state should be a digest (only a running record of format 2 may omit it), found null"


@pytest.mark.parametrize("text", [
    "AB" * 32,                    # capitals: bytes.fromhex takes them
    "ab " * 21 + "a",             # spaces: fromhex skips them between bytes
    " " + "ab" * 31 + "a",        # 64 characters, 31.5 bytes
    "ab" * 31 + "a\n",
    "ab" * 32 + "ab",             # too long
    "ab" * 31,                    # too short
    "gg" * 32,
    "\u0660" * 64,                # digits, but not ASCII ones
])
def test_a_digest_tag_is_64_lowercase_hex_characters_exactly(text: str) -> None:
    """A $digest tag is read only as 64 lowercase hex characters: nothing fromhex would
    also read (capitals, spaces) passes as a digest."""
    record = copy.deepcopy(RUN)
    record["state"] = {"$digest": text}
    assert shapes.shape_problem(Kind.RUN, record) == \
        "state holds a $digest tag that is not 64 lowercase hex characters"
    record["state"] = {"$digest": HEX}
    assert shapes.shape_problem(Kind.RUN, record) is None
    assert shapes.check_shape(None, Kind.RUN, record)["state"] == Digest.from_hex(HEX)


def test_a_lone_surrogate_in_an_error_message_is_kept() -> None:
    """A ``$str`` tag (how the codec writes a lone surrogate) is a string, decoded."""
    record = _decoded(RUN)
    record["steps"][0]["error"]["message"] = "bad \ud800"
    payload = codec.encode(record)  # the codec tags the surrogate
    assert b'"$str"' in payload
    value = shapes.parse(compute_digest(Kind.RUN, payload), Kind.RUN, payload)
    assert value["steps"][0]["error"]["message"] == "bad \ud800"


@pytest.mark.parametrize("seed", ["0", "4294967295", "random", "007"])
def test_hash_seeds_python_accepts_pass(seed: str) -> None:
    """A recorded hash seed Python starts with is a valid env field."""
    assert shapes.is_hash_seed(seed)
    assert shapes.shape_problem(Kind.ENV, {**ENV, "hash_seed": seed}) is None


@pytest.mark.parametrize("seed", ["4294967296", "-1", " 5", "5 ", "", "0x10", 5, "\u0661"])
def test_hash_seeds_python_refuses_are_corrupt(seed: object) -> None:
    """A hash seed that would kill the interpreter at start-up is refused at read."""
    assert not shapes.is_hash_seed(seed)
    env = {**ENV, "hash_seed": seed}
    with pytest.raises(CorruptObjectError, match="hash_seed"):
        shapes.parse(compute_digest(Kind.ENV, _payload(env)), Kind.ENV, _payload(env))


def test_a_value_never_stored_is_an_input_error() -> None:
    """Without a digest to name, a bad value is the caller's: InputError."""
    with pytest.raises(InputError, match="status should be"):
        shapes.check_shape(None, Kind.RUN, {**RUN, "status": 1})


@pytest.mark.parametrize("text", ["20261123T013055012-4f1a2b", "20990101T000000000-000000"])
def test_run_ids_as_the_recorder_makes_them(text: str) -> None:
    """Ids in the recorder's form are run ids."""
    assert shapes.is_run_id(text)


@pytest.mark.parametrize("text", ["../../precious", "x", "20261123T013055012-4f1a2b\n",
                                  "20261123T013055012-4F1A2B", "20261123T013055012-4f1a2b/..",
                                  "\x1b[2J", 20261123])
def test_anything_else_is_not_a_run_id(text: object) -> None:
    """Traversals, control characters, other cases and non-strings are not run ids."""
    assert not shapes.is_run_id(text)


# ------------------------------------------------------------- property tests

_LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=8)
           | st.sampled_from(["succeeded", "failed", "running", "warn", "0", "random",
                              RUN["id"], HEX]))
_TAGS = st.builds(lambda key, value: {key: value},
                  st.sampled_from(["$digest", "$str", "$map", "$tuple", "$x"]), _LEAVES)
JSONISH = st.recursive(
    _LEAVES | _TAGS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(list(RUN) + list(STEP)),
                      children, max_size=5),
    max_leaves=30)


def _mutations() -> st.SearchStrategy[tuple[Kind, Any]]:
    """A valid object of some kind with one field (or a step's field) replaced or removed."""
    def mutate(kind: Kind, field_index: int, value: Any, remove: bool) -> tuple[Kind, Any]:
        base = copy.deepcopy(VALID[kind])
        target = base["steps"][0] if kind is Kind.RUN and field_index % 2 else base
        name = sorted(target)[field_index % len(target)]
        if remove:
            del target[name]
        else:
            target[name] = value
        return kind, base
    return st.builds(mutate, st.sampled_from(KINDS),
                     st.integers(0, 40), JSONISH, st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KINDS), JSONISH)
def test_shape_checks_raise_only_pinrun_errors(kind: Kind, value: Any) -> None:
    """On any JSON-ish input the shape checks answer or raise a PinrunError, nothing else."""
    problem = shapes.shape_problem(kind, value)
    assert problem is None or isinstance(problem, str)
    with contextlib.suppress(PinrunError):
        shapes.check_shape(Digest(bytes(32)), kind, value)
    try:
        payload = _payload(value)
    except orjson.JSONEncodeError:
        return
    with contextlib.suppress(PinrunError):
        check_structure(compute_digest(kind, payload), kind, payload)


@settings(max_examples=300, deadline=None)
@given(_mutations())
def test_near_valid_records_raise_only_pinrun_errors(case: tuple[Kind, Any]) -> None:
    """A valid object with one field broken is accepted or refused as corrupt, never a crash."""
    from pinrun.engine.records import RunRecord

    kind, value = case
    payload = _payload(value)
    digest = compute_digest(kind, payload)
    problem = shapes.shape_problem(kind, orjson.loads(payload))
    if problem is not None:
        with pytest.raises(CorruptObjectError, match=re.escape(digest.hex)):
            shapes.parse(digest, kind, payload)
        return
    parsed = shapes.parse(digest, kind, payload)
    if kind is Kind.RUN:
        assert RunRecord.from_value(parsed, digest=digest).digest == digest


@settings(max_examples=200, deadline=None)
@given(JSONISH)
def test_run_record_from_value_raises_only_pinrun_errors(value: Any) -> None:
    """RunRecord.from_value never lets a KeyError, TypeError or AttributeError out."""
    from pinrun.engine.records import RunRecord

    for digest in (None, Digest(bytes(32))):
        with contextlib.suppress(PinrunError):
            RunRecord.from_value(value, digest=digest)


def test_the_tables_cover_the_structured_kinds() -> None:
    """Every kind pinrun writes as structured JSON has a table (and these tests an example)."""
    assert set(VALID) == shapes.SHAPED_KINDS


RECORDED = """
import pinrun


@pinrun.step
def first(n: int) -> dict:
    return {"a": n}


@pinrun.step(after=[], version="v2", writes=["b"])
async def second(n: int, extra: int = 0) -> dict:
    return {"b": n + extra}


@pinrun.step(after=["first", "second"])
def third(a: int, b: int, ctx: pinrun.Context) -> dict:
    if a > 1:
        raise ValueError("too big \\ud800")
    return {"c": a + b + ctx.random().random(), "at": ctx.now()}


flow = pinrun.Flow("shapes", [first, second, third], max_concurrency=2)
"""


def test_every_object_a_real_run_writes_has_its_shape(project: Any, project_store: Any) -> None:
    """Runs that succeed and fail, DAG levels, versions and async steps all pass their tables."""
    import pinrun
    from pinrun.artifacts.objects import open_record
    from pinrun.engine.records import load_run
    from pinrun.errors import RunFailedError

    project.write("shapes_flow", RECORDED)
    flow = project.load("shapes_flow")
    ok = pinrun.record(flow, {"n": 1}, store=project_store)
    with pytest.raises(RunFailedError):
        pinrun.record(flow, {"n": 2}, store=project_store)
    seen: set[Kind] = set()
    for key, record in project_store.iter_records():
        digest = Digest(key)
        kind, payload = open_record(digest, record, project_store._load_dictionary)
        if kind in shapes.SHAPED_KINDS:
            shapes.parse(digest, kind, payload)
            seen.add(kind)
    assert seen == shapes.SHAPED_KINDS
    assert load_run(project_store, ok.id) == ok


@pytest.mark.parametrize(("name", "kind", "value", "expected"), [
    (f"runs/{RUN['id']}", Kind.RUN, RUN, None),
    ("tags/nightly", Kind.RUN, RUN, None),
    ("runs/x", Kind.RUN, {**RUN, "id": "../../precious"}, "id should be a run id"),
    ("runs/20261123T013055012-000000", Kind.RUN, RUN, "names the record of run"),
    (f"runs/{RUN['id']}", Kind.VALUE, {}, "not a run record"),
])
def test_a_run_ref_names_the_record_of_its_run(name: str, kind: Kind, value: Any,
                                               expected: str | None) -> None:
    """runs/<id> must name a well-formed record of run <id>; other refs are not judged."""
    problem = shapes.run_ref_problem(name, kind, value)
    assert problem == expected if expected is None else expected in (problem or "")


#: The record walk in C, as imported (the tests set the module's name to None and back).
_C_WALK = shapes._record_fields


def _both_walks(kind: Kind, value: Any, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """What the C walk and the Python walk each make of ``value`` (a result or an error)."""
    answers: list[tuple[str, Any]] = []
    for walk in (_C_WALK, None):
        monkeypatch.setattr(shapes, "_record_fields", walk)
        try:
            answers.append(("checked", shapes.check_shape(Digest(bytes(32)), kind, value)))
        except PinrunError as exc:
            answers.append(("refused", f"{type(exc).__name__}: {exc}"))
    return answers[0], answers[1]


@pytest.mark.skipif(_C_WALK is None, reason="the C speedups are not built")
@settings(max_examples=400, deadline=None)
@given(st.one_of(_mutations(), st.tuples(st.sampled_from(KINDS), JSONISH)))
def test_the_walk_in_c_answers_as_the_tables_do(case: tuple[Kind, Any]) -> None:
    """A record's walk in C gives the Python walk's result (equal values, digests as
    Digest, lists copied), and refuses what it refuses with the same message."""
    kind, value = case
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = _both_walks(kind, value, monkeypatch)
    assert fast == slow
    assert [type(item) for item in _leaves(fast[1])] == [type(item) for item in _leaves(slow[1])]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for key in value for leaf in (key, *_leaves(value[key]))]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_the_walk_in_c_copies_lists_and_reads_tags() -> None:
    """A valid run record comes back with new lists and its tags as Digests."""
    checked = shapes.check_shape(None, Kind.RUN, RUN)
    assert checked["steps"][0]["hazards"] == RUN["steps"][0]["hazards"]
    assert checked["steps"][0]["hazards"] is not RUN["steps"][0]["hazards"]
    assert checked["inputs"] == Digest.from_hex(HEX)
    assert checked["continues"] is None


#: Values at the edges of what the fields' fast paths take.
_EDGES: list[Any] = [
    None, True, False, 0, 1, 2, -1, 1.0, "", "x", "succeeded", "failed", "running", "warn",
    RUN["id"], [], ["a"], ["a", 1], [{"$str": "YQ=="}], [None], {}, {"a": 1}, {"$str": "YQ=="},
    {"$str": "!"}, TAG, {"$digest": HEX.upper()}, {"$digest": HEX[:-1]}, {"$digest": 5},
    {"$digest": HEX, "more": 1}, {"$digest": " " + HEX[1:]}, Digest.from_hex(HEX),
]


@pytest.mark.skipif(_C_WALK is None, reason="the C speedups are not built")
@pytest.mark.parametrize("kind", KINDS)
def test_the_walk_in_c_answers_as_the_tables_do_at_the_edges(
        kind: Kind, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field (and a run's step's), set to each edge value or removed: the C walk and
    the Python walk agree."""
    targets = [(), ("steps", 0)] if kind is Kind.RUN else [()]
    for where in targets:
        names = [*sorted(VALID[kind] if not where else VALID[kind]["steps"][0]), "continues"]
        for name in names:
            for value in [*_EDGES, _ABSENT_FIELD]:
                base = copy.deepcopy(VALID[kind])
                target = base if not where else base["steps"][0]
                if value is _ABSENT_FIELD:
                    target.pop(name, None)
                else:
                    target[name] = value
                fast, slow = _both_walks(kind, base, monkeypatch)
                assert fast == slow, (where, name, value)
                assert [type(item) for item in _leaves(fast[1])] == \
                    [type(item) for item in _leaves(slow[1])], (where, name, value)


_ABSENT_FIELD = object()
