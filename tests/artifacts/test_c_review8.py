"""Review (session 8) of the C added for issue 13: small_digest, put_map, iso_time.

Each test holds the C function to the answers of the Python path that runs without a
compiler, on inputs chosen to reach its edges (block and chunk boundaries, borrowed
references across Python callbacks, keys that run Python code, error paths)."""

from __future__ import annotations

import datetime as dt
import gc
import sys
import zlib
from typing import Any

import blake3
import orjson
import pytest

from pinrun.artifacts import _speedups
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.snapshot_pages import Inline

KINDS = (Kind.VALUE, Kind.VALUE.tag, Kind.TREE, Kind.TREE.tag)
LIMITS = (4096, 4096, 1 << 26)


def _inline(key: str, payload: bytes) -> Inline:
    quoted = orjson.dumps(key)
    return Inline(quoted + b":" + payload, len(quoted) + 1, zlib.crc32(quoted))


# ------------------------------------------------------------------ small_digest


@pytest.mark.parametrize("tag_size", [0, 1, 5, 6, 63, 64, 65, 130, 1023, 1024])
def test_small_digest_is_blake3_for_every_split_up_to_a_chunk(tag_size: int) -> None:
    """Every total length 0..1024, with tags that end before, at and past a block (the
    gathering of a block from two parts); one byte more is None."""
    pattern = bytes((i * 31 + 7) & 0xFF for i in range(2100))
    tag = pattern[:tag_size]
    for size in range(1025 - tag_size):
        payload = pattern[1000:1000 + size]
        made = _speedups.small_digest(Digest, tag, payload)
        assert made is not None
        assert type(made) is Digest
        assert made.raw == blake3.blake3(tag + payload).digest(), (tag_size, size)
    assert _speedups.small_digest(Digest, tag, pattern[:1025 - tag_size]) is None


def test_small_digest_of_every_kind_is_compute_digests() -> None:
    """Each kind's tag (not only the value's, which the import-time check covers)."""
    for kind in Kind:
        for size in (0, 1, 63, 64, 1024 - len(kind.tag)):
            payload = b"q" * size
            made = _speedups.small_digest(Digest, kind.tag, payload)
            assert made is not None
            assert made.raw == blake3.blake3(kind.tag + payload).digest()


@pytest.mark.parametrize("call", ["small_digest(t, b'', b'')", "new_digest(t, b'x' * 32)",
                                  "put_map({'a': value}, {}, {}, set(), t, KINDS, LIMITS, "
                                  "compute_digest)"])
@pytest.mark.parametrize("made", ["bool", "range", "slice", "memoryview", "type",
                                  "types.FunctionType", "dict_subclass"])
def test_a_digest_type_that_is_not_a_plain_class_is_refused(call: str, made: str) -> None:
    """FINDING: small_digest, put_map (and new_digest, from an earlier session) make an
    instance of whatever type they are given with tp_alloc, skipping its tp_new: a builtin
    type aborts or crashes the interpreter when that half-made object is set or freed, or
    comes back half made (a type, a function, a dict with no table). Refused: TypeError."""
    import subprocess
    import textwrap

    code = textwrap.dedent(f"""
        import gc, types, zlib
        from pinrun.artifacts import _speedups
        from pinrun.artifacts.digest import Kind, compute_digest
        from pinrun.artifacts.snapshot_pages import Inline
        class dict_subclass(dict):
            __slots__ = ("raw",)
        KINDS = (Kind.VALUE, Kind.VALUE.tag, Kind.TREE, Kind.TREE.tag)
        LIMITS = (4096, 4096, 1 << 26)
        value = Inline(b'"a":1', 4, zlib.crc32(b'"a"'))
        t = {made}
        try:
            answer = _speedups.{call}
        except TypeError:
            print("refused")
        else:
            print("answered", type(answer).__name__)
            if isinstance(answer, dict):
                answer["x"] = 1
            repr(answer)
            del answer
        gc.collect()
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-400:]
    assert done.stdout.strip() == "refused", done.stdout


# ------------------------------------------------------------------ put_map


def _python_put_map(entries: dict[Any, Any], known: dict[bytes, Any],
                    pending: dict[bytes, Any], held: set[bytes]) -> tuple[Digest, int, int]:
    """What ValueDigests.put_map + WriteBatch.put_known do (the no-compiler path)."""
    from pinrun.artifacts import codec
    from pinrun.engine.value_digests import _MAP

    items = []
    digests = {}
    for key, entry in entries.items():
        if type(entry) is not Inline:
            digests[key] = entry
            continue
        payload = entry.payload
        digest = known.get(payload)
        if digest is None:
            digest = compute_digest(Kind.VALUE, payload)
            if len(payload) <= LIMITS[0]:
                if len(known) >= LIMITS[1]:
                    known.clear()
                known[payload] = digest
        items.append((Kind.VALUE, payload, digest))
        digests[key] = digest
    payload = codec.encode_digest_map(_MAP, "entries", digests)
    tree = compute_digest(Kind.TREE, payload)
    items.append((Kind.TREE, payload, tree))
    size = 0
    for kind, payload, digest in items:
        size += len(payload)
        if digest.raw not in held:
            pending.setdefault(digest.raw, (kind, payload))
    return tree, len(items), size


def test_put_map_agrees_with_python_on_duplicates_held_and_large_values() -> None:
    """Two keys with one payload, a value already held, a value over one chunk (hashed by
    the callback), a Digest entry: the same tree, queue and counts as the Python path."""
    same = b'"dup"'
    large = b'"' + b"L" * 3000 + b'"'
    held_payload = b"12345"
    entries: dict[str, Any] = {
        "a": _inline("a", same), "b": _inline("b", same), "c": _inline("c", large),
        "d": _inline("d", held_payload), "e": compute_digest(Kind.VALUE, b"7"),
        "\u00e9": _inline("\u00e9", b"[]"),
    }
    held = {compute_digest(Kind.VALUE, held_payload).raw}
    c_known: dict[bytes, Any] = {}
    c_pending: dict[bytes, Any] = {}
    made = _speedups.put_map(entries, c_known, c_pending, held, Digest, KINDS, LIMITS,
                             compute_digest)
    py_known: dict[bytes, Any] = {}
    py_pending: dict[bytes, Any] = {}
    assert made == _python_put_map(entries, py_known, py_pending, held)
    assert c_pending == py_pending
    assert list(c_pending) == list(py_pending)  # the queue's order: values, then the tree
    assert c_known == py_known


def test_put_map_with_keys_that_run_python_code_declines_safely() -> None:
    """A str subclass key whose __hash__ empties the kept digests, the queue and the held
    set while the C loop holds digests from them: no crash, None, nothing queued."""
    known: dict[bytes, Any] = {b"1": compute_digest(Kind.VALUE, b"1")}
    pending: dict[bytes, Any] = {}
    held: set[bytes] = set()

    class Meddling(str):
        __slots__ = ()

        def __hash__(self) -> int:
            known.clear()
            held.clear()
            pending.clear()
            gc.collect()
            return str.__hash__(self)

    entries: dict[Any, Any] = {"a": _inline("a", b"1"), Meddling("b"): _inline("b", b"1")}
    assert _speedups.put_map(entries, known, pending, held, Digest, KINDS, LIMITS,
                             compute_digest) is None
    assert pending == {}


def test_put_map_error_paths_leak_no_references() -> None:
    """A callback that raises, and limits that are not ints: the payloads, the kept
    digests and the entries are released (their reference counts come back)."""
    payload_holder = _inline("b", b'"' + b"x" * 2000 + b'"')
    payload = payload_holder.payload
    entries = {"b": payload_holder}

    def failing(kind: Kind, data: bytes) -> Digest:
        raise RuntimeError("no")

    before = sys.getrefcount(payload), sys.getrefcount(payload_holder)
    for _ in range(50):
        with pytest.raises(RuntimeError):
            _speedups.put_map(entries, {}, {}, set(), Digest, KINDS, LIMITS, failing)
        with pytest.raises(TypeError):
            not_ints: Any = (1, "x", 2)
            _speedups.put_map(entries, {}, {}, set(), Digest, KINDS, not_ints, compute_digest)
    assert (sys.getrefcount(payload), sys.getrefcount(payload_holder)) == before


# ------------------------------------------------------------------ iso_time


def _python_iso_time() -> Any:
    """The iso_time engine/run.py binds when the C module is not built: run.py executed
    afresh (as a private copy) with the C module's import made to fail."""
    import importlib.util

    spec = importlib.util.find_spec("pinrun.engine.run")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("pinrun.artifacts._speedups")
    sys.modules["pinrun.artifacts._speedups"] = None  # type: ignore[assignment]
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules["pinrun.artifacts._speedups"] = saved  # type: ignore[assignment]
    assert module.iso_time is not _speedups.iso_time
    return module.iso_time


@pytest.mark.parametrize("zone", [None, dt.UTC, dt.timezone(dt.timedelta(0)),
                                  dt.timezone(dt.timedelta(hours=-11, minutes=-59)),
                                  dt.timezone(dt.timedelta(hours=5), "X")])
def test_iso_time_is_isoformat_at_the_edges(zone: dt.tzinfo | None) -> None:
    """Years 1, 999, 1000, 9999; microseconds 0, 1, 999999; fold 0 and 1."""
    for year in (1, 9, 99, 999, 1000, 2026, 9999):
        for micro in (0, 1, 10, 999999):
            for fold in (0, 1):
                value = dt.datetime(year, 12, 31, 23, 59, 59, micro, tzinfo=zone, fold=fold)
                assert _speedups.iso_time(value) == value.isoformat()
                assert _speedups.iso_time(value) == _python_iso_time()(value)


def _answer(call: Any, value: Any) -> Any:
    try:
        return "text", call(value)
    except Exception as error:  # the kind of error is what is compared
        return "error", type(error)


def test_iso_time_of_a_datetime_subclass_is_the_no_compiler_paths() -> None:
    """FINDING: a datetime subclass overriding isoformat (what a World's now() could
    return, e.g. a library's datetime type). The C path calls the override; the Python
    path (dt.datetime.isoformat, unbound) does not: two installs record two texts."""

    class Stamp(dt.datetime):
        def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
            return "mine"

    value = Stamp(2020, 1, 1, tzinfo=dt.UTC)
    assert _answer(_speedups.iso_time, value) == _answer(_python_iso_time(), value)


def test_iso_time_of_what_is_not_a_datetime_is_the_no_compiler_paths() -> None:
    """FINDING: a date (not a datetime): the Python path raises TypeError (the unbound
    datetime.isoformat refuses it); C answers "2020-01-02"."""
    for value in (dt.date(2020, 1, 2), dt.time(1, 2)):
        assert _answer(_speedups.iso_time, value) == _answer(_python_iso_time(), value)
