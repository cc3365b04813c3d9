"""Wide (branch h-wide10): a step's wide outputs, many small values, seen as they were
encoded, so that the check before a step is handed the whole ``state`` tells them by
identity instead of walking each against its bytes.

The guarantee is the one of docs/recording.md: a step taking ``state`` is given the
values its record says. Each flow below changes a wide output after the step that wrote
it returned (through a later step, another thread, a finalizer) and checks that the next
reader of the whole state is not given the changed object, and that the record keeps
the value as it was written.
"""

from __future__ import annotations

import math
import sys
from types import ModuleType
from typing import Any

import orjson
import pytest

from pinrun.artifacts import _speedups, codec, seen
from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.verifier.replayer import replay
from tests.helpers import Project

pytestmark = pytest.mark.skipif(not hasattr(_speedups, "encode_wide"),
                                reason="no C compiler here, so pinrun's C module (and Wide) is not "
                                "built; test_compiled_plain_check_is_built_where_a_"
                                "compiler_is fails where one is and it is not (CI has one)")


def _table(count: int = 200) -> dict[str, Any]:
    return {f"k{i:04d}": {"id": i, "sub": {"x": [1, {"y": 2}]}, "tags": ["a"]}
            for i in range(count)}


def test_encode_wide_gives_the_bytes_encode_gives_each_value() -> None:
    """The encodings are codec.encode's, value by value, and encode_many's."""
    values: dict[str, Any] = {**_table(), "n": 1, "s": "text", "f": 2.5, "b": True,
                              "z": None, "l": [1, [2, {"a": None}]], "e": {}}
    made = seen.encode_wide(values)
    assert made is not None
    encodings, wide = made
    assert list(encodings) == list(values)
    assert encodings == {key: codec.encode(value) for key, value in values.items()}
    assert encodings == codec.encode_many(values)
    assert wide.unchanged()


@pytest.mark.parametrize("odd", [
    {"b": 1, "a": 2},            # a map whose keys are not in order
    {"$ref": 1},                 # a key the codec writes in a tagged form
    "$text",                     # a string that starts with $
    math.nan,                    # a float JSON cannot hold
    [1, (2, 3)],                 # a tuple
    1 << 70,                     # an int past 64 bits
    b"bytes",
])
def test_encode_wide_leaves_other_values_to_the_codec(odd: Any) -> None:
    """Anything that does not read back as it is: None, and the engine encodes as before."""
    assert seen.encode_wide({**_table(100), "odd": odd}) is None
    assert seen.encode_wide({**_table(100), "odd": {"in": [odd]}}) is None


def test_encode_wide_needs_many_string_keys() -> None:
    assert seen.encode_wide(_table(seen.WIDE_FROM - 1)) is None
    assert seen.encode_wide({**_table(100), 7: 1}) is None  # type: ignore[dict-item]
    assert seen.encode_wide(_table(seen.WIDE_FROM)) is not None


def _made() -> tuple[dict[str, Any], dict[str, bytes], seen.Wide]:
    values = _table()
    made = seen.encode_wide(values)
    assert made is not None
    return values, made[0], made[1]


@pytest.mark.parametrize("change", [
    lambda values, encodings: values["k0001"].__setitem__("id", 9),
    lambda values, encodings: values["k0001"]["sub"]["x"][1].__setitem__("y", 3),
    lambda values, encodings: values["k0001"]["tags"].append("b"),
    # an equal str, another object, in place
    lambda values, encodings: values["k0001"]["tags"].__setitem__(0, "".join(["", "a"])),
    lambda values, encodings: values.__setitem__("k0001", dict(values["k0001"])),
    lambda values, encodings: values.pop("k0199"),
    lambda values, encodings: encodings.__setitem__("k0001", b'{"id":1}'),
])
def test_a_wide_is_unchanged_only_while_everything_it_saw_is(change: Any) -> None:
    """A change to the outputs, to any container inside a value, or to the encodings
    (even one that puts back equal content) makes the Wide no longer vouch."""
    values, encodings, wide = _made()
    change(values, encodings)
    assert not wide.unchanged()


def test_read_back_all_with_a_wide_still_answers_as_without() -> None:
    """A Wide only saves walks: every answer of read_back_all is the same as without it."""
    values, encodings, wide = _made()
    state, encoded = {"n": 1, **values}, {"n": b"1", **encodings}
    assert codec.read_back_all(state, encoded, (wide,))
    # A value changed in place: no longer vouched for, and walked: not the same.
    values["k0005"]["id"] = -5
    assert not codec.read_back_all(state, encoded, (wide,))
    values["k0005"]["id"] = 5  # back: the Wide no longer vouches, the walk says yes
    assert not wide.unchanged()
    assert codec.read_back_all(state, encoded, (wide,))

    values, encodings, wide = _made()
    state, encoded = dict(values), dict(encodings)
    # Another object or other bytes in the state under a key: walked, never vouched for.
    state["k0002"] = {"id": 2, "sub": {"x": [1, {"y": 2}]}, "tags": ["a"]}
    assert codec.read_back_all(state, encoded, (wide,))
    state["k0002"] = {"id": 3, "sub": {"x": [1, {"y": 2}]}, "tags": ["a"]}
    assert not codec.read_back_all(state, encoded, (wide,))
    state["k0002"] = values["k0002"]
    encoded["k0003"] = b'{"id":4,"sub":{"x":[1,{"y":2}]},"tags":["a"]}'
    assert not codec.read_back_all(state, encoded, (wide,))
    encoded["k0003"] = codec.encode(values["k0003"])  # equal bytes, another object
    assert codec.read_back_all(state, encoded, (wide,))
    assert wide.unchanged()  # (none of that touched what it saw)
    # A key the Wide does not hold, or one more encoding than values: as without it.
    assert not codec.read_back_all({**state, "x": 1}, {**encoded, "x": b"2"}, (wide,))
    assert not codec.read_back_all(state, {**encoded, "x": b"2"}, (wide,))


def test_read_back_all_takes_many_wides_and_others() -> None:
    """Several Wides, and objects that are not Wides, in the tuple: each value is still
    told, by one that vouches for it or by its walk."""
    first, first_encodings, first_wide = _made()
    second: dict[str, Any] = {f"m{i:04d}": [i, {"a": i}] for i in range(100)}
    made = seen.encode_wide(second)
    assert made is not None
    state, encoded = {**first, **second}, {**first_encodings, **made[0]}
    for wides in ((first_wide, made[1]), (made[1], first_wide), (object(), first_wide),
                  tuple([first_wide] * 12)):
        assert codec.read_back_all(state, encoded, wides)  # type: ignore[arg-type]
    second["m0050"][1]["a"] = -1
    assert not codec.read_back_all(state, encoded, (first_wide, made[1]))


COMMON = """
import gc
import threading

import pinrun

KEPT = {}
SEEN = {}


@pinrun.step
def spread(n: int) -> dict:
    made = {f"k{i:04d}": {"id": i, "sub": {"x": [1, {"y": 2}]}, "tags": ["a"]}
            for i in range(200)}
    KEPT["made"] = made
    return made


@pinrun.step(after=[spread])
def middle(n: int) -> dict:
    CHANGE(KEPT["made"])
    return {"middle": 1}


@pinrun.step(after=[middle])
def whole(state) -> dict:
    SEEN["whole"] = state["k0001"]
    return {"total": sum(v["id"] for k, v in state.items() if k[:1] == "k")}


flow = pinrun.Flow("wide_seen", [spread, middle, whole])
"""

ORIGINAL_1 = {"id": 1, "sub": {"x": [1, {"y": 2}]}, "tags": ["a"]}


def _run(project: Project, store: Store, change: str) -> tuple[Any, ModuleType]:
    project.write("wide_seen", COMMON + "\n" + change)
    run = record(project.load("wide_seen"), {"n": 1}, store=store)
    return run, sys.modules[f"{project.package}.wide_seen"]


def _told_by_wides(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """From now on, for each check of a whole state: whether Wides were given to it and
    all of them vouched (the list returned fills as the checks come)."""
    told: list[bool] = []
    compiled = codec._all_still_encode
    assert compiled is not None

    def spy(*args: Any) -> bool:
        told.append(len(args) == 3 and all(wide.unchanged() for wide in args[2]))
        return compiled(*args)

    monkeypatch.setattr(codec, "_all_still_encode", spy)
    return told


def test_unchanged_wide_outputs_are_handed_over_as_they_are(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader of the whole state is given the very objects, told by the Wide."""
    told = _told_by_wides(monkeypatch)
    run, module = _run(project, project_store, "def CHANGE(t):\n    pass\n")
    assert run.status == "succeeded"
    assert told == [True]
    assert module.SEEN["whole"] is module.KEPT["made"]["k0001"]
    assert project_store.get_snapshot(run.state)["total"] == sum(range(200))


@pytest.mark.parametrize("change", [
    "def CHANGE(t):\n    t['k0001']['sub']['x'][1]['y'] = 3\n",
    "def CHANGE(t):\n    t['k0001']['tags'] += ['b']\n",
    "def CHANGE(t):\n    t['k0001'] |= {'id': 5}\n",
    "def CHANGE(t):\n    t['k0001']['sub']['x'].reverse()\n",
    "def CHANGE(t):\n    t['k0001'].clear(); t['k0001'].update(dict(id=-1))\n",
])
def test_a_wide_output_changed_in_place_later_is_not_handed_on(
        project: Project, project_store: Store, change: str) -> None:
    """A step changes a value an earlier step wrote (through a reference it kept): the
    reader of the whole state is given the recorded value, and the record keeps it."""
    run, module = _run(project, project_store, change)
    assert run.status == "succeeded"
    assert module.SEEN["whole"] is not module.KEPT["made"]["k0001"]
    assert module.SEEN["whole"] == ORIGINAL_1
    state = project_store.get_snapshot(run.state)
    assert state["k0001"] == ORIGINAL_1
    assert state["total"] == sum(range(200))


def test_a_wide_output_changed_back_to_equal_content_is_handed_over(
        project: Project, project_store: Store) -> None:
    """Changed and put back: no longer vouched for, but its walk says it is the same."""
    run, module = _run(project, project_store,
                       "def CHANGE(t):\n    t['k0001']['id'] = 9; t['k0001']['id'] = 1\n")
    assert run.status == "succeeded"
    assert module.SEEN["whole"] is module.KEPT["made"]["k0001"]
    assert project_store.get_snapshot(run.state)["k0001"] == ORIGINAL_1


def test_a_wide_output_changed_by_another_thread_is_not_handed_on(
        project: Project, project_store: Store) -> None:
    """A thread the writer left behind changes its output before the state is read."""
    run, module = _run(project, project_store, """
def meddle():
    KEPT["go"].wait(10)
    KEPT["made"]["k0001"]["sub"]["x"].append(9)


def CHANGE(t):
    KEPT["go"].set()
    KEPT["thread"].join(10)


KEPT["go"] = threading.Event()
KEPT["thread"] = threading.Thread(target=meddle, daemon=True)
KEPT["thread"].start()
""")
    assert run.status == "succeeded"
    assert module.KEPT["made"]["k0001"]["sub"]["x"] == [1, {"y": 2}, 9]
    assert module.SEEN["whole"] == ORIGINAL_1
    assert project_store.get_snapshot(run.state)["k0001"] == ORIGINAL_1


def test_a_wide_output_changed_by_a_finalizer_is_not_handed_on(
        project: Project, project_store: Store) -> None:
    """An object in a cycle whose __del__ changes a wide output, collected in between."""
    run, module = _run(project, project_store, """
class Meddler:
    def __del__(self):
        KEPT["made"]["k0001"]["id"] = -1


def CHANGE(t):
    m = Meddler()
    m.cycle = m
    del m
    gc.collect()
""")
    assert run.status == "succeeded"
    assert module.KEPT["made"]["k0001"]["id"] == -1  # the finalizer ran
    assert module.SEEN["whole"] == ORIGINAL_1
    assert project_store.get_snapshot(run.state)["k0001"] == ORIGINAL_1


def test_a_wide_output_written_again_is_told_by_its_new_encoding(
        project: Project, project_store: Store) -> None:
    """A later step writes a key of the wide outputs again: the state's value there is
    not the one the Wide saw, so it is walked against its new encoding."""
    project.write("wide_again", COMMON.replace(
        'return {"middle": 1}', 'return {"middle": 1, "k0001": {"id": 1000}}') +
        "\ndef CHANGE(t):\n    pass\n")
    again = record(project.load("wide_again"), {"n": 1}, store=project_store)
    module = sys.modules[f"{project.package}.wide_again"]
    assert again.status == "succeeded"
    assert module.SEEN["whole"] == {"id": 1000}
    assert project_store.get_snapshot(again.state)["total"] == sum(range(200)) - 1 + 1000


def test_without_the_wide_the_same_bytes_are_stored(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without encode_wide (no compiler, or values it leaves alone) the very same objects
    are recorded."""
    run, _ = _run(project, project_store, "def CHANGE(t):\n    t['k0001']['id'] = 5\n")
    with_wide = (run.state, [(s.name, s.inputs, s.outputs) for s in run.steps])
    monkeypatch.setattr(seen, "_encode_wide", None)
    assert seen.encode_wide(_table()) is None
    again = record(project.load("wide_seen"), {"n": 1}, store=project_store)
    assert (again.state, [(s.name, s.inputs, s.outputs) for s in again.steps]) == with_wide


def test_encode_wide_refuses_what_orjson_refuses() -> None:
    """A lone surrogate in a key: orjson raises, and encode_wide leaves it to the codec."""
    values = {**_table(100), "\ud800": 1}
    with pytest.raises(TypeError):
        orjson.dumps(values)
    assert seen.encode_wide(values) is None


@pytest.mark.parametrize("value", [
    {"a": 1, "b": {"x": [1, {"k": "v"}], "y": None}, "c": [True, False, 1.5]},
    {"A": 1, "_": 2, "a": 3, "z": 4, "é": {"\u00ff": 1, "\u0100": 2, "\uffff": 3}},
    {"a": 1, "\uffff": 2, "\U0001f600": 3},  # an astral key after U+FFFF (code points)
    {f"k{i:05d}": {"id": i, "name": f"ñ {i}"} for i in range(500)},
    [{"b": 1, "c": 2}, {"": 0, "a": 1}, [], {}],
])
def test_encode_seen_writes_what_encode_writes(value: Any) -> None:
    """encode_seen asks orjson not to sort (its walk found every map's keys in order):
    the bytes are still codec.encode's, whatever the keys' characters."""
    made = seen.encode_seen(value)
    assert made is not None
    assert made[0] == codec.encode(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("value", [
    {"b": 1, "a": 2},
    {"a": {"\U0001f600": 1, "\uffff": 2}},  # out of order by code point
    [{"z": 1, "y": 2}],
])
def test_encode_seen_leaves_maps_out_of_order_to_the_codec(value: Any) -> None:
    assert seen.encode_seen(value) is None


@pytest.mark.parametrize("change", [
    "def CHANGE(t):\n    pass\n",
    "def CHANGE(t):\n    t['k0001']['sub']['x'][1]['y'] = 3\n",
    "def CHANGE(t):\n    t['k0001'] |= {'id': 5}\n",
])
def test_a_replay_hands_on_what_the_recording_did(
        project: Project, project_store: Store, monkeypatch: pytest.MonkeyPatch,
        change: str) -> None:
    """Replay uses the Wide too: a replayed wide output is vouched for by it while unchanged,
    and one a later step changes in place is given to the reader as recorded; the replay
    reproduces either way, and the reader gets what it got when recorded."""
    run, module = _run(project, project_store, change)
    told = _told_by_wides(monkeypatch)
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced, report.explain()
    assert told == [change.endswith("pass\n")]
    assert module.SEEN["whole"] == ORIGINAL_1
    assert (module.SEEN["whole"] is module.KEPT["made"]["k0001"]) is change.endswith("pass\n")
