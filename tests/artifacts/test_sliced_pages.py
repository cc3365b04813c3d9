"""A large nested map's pages are cut from its own encoding, byte for byte as before."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import _speedups, codec, trees
from pinrun.artifacts.digest import Digest, Kind, compute_digest


class _Sink:
    """A write batch that only remembers what it was given (digests as the store makes them)."""

    def __init__(self) -> None:
        self.objects: dict[Digest, tuple[Kind, bytes]] = {}

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        made = compute_digest(kind, payload)
        assert digest is None or digest == made
        self.objects[made] = (kind, bytes(payload))
        return made


def _stored(value: dict[Any, Any], monkeypatch: pytest.MonkeyPatch,
            sliced: bool) -> tuple[Digest, dict[Digest, tuple[Kind, bytes]]]:
    """Store ``value`` as a nested map, with the pages sliced in C or cut in Python."""
    sink = _Sink()
    with monkeypatch.context() as patch:
        if not sliced:
            patch.setattr(trees, "_page_cuts", None)
        digest = trees.store_entry(sink, value, "value")
    return digest, sink.objects


def _table(keys: int, extra: dict[Any, Any] | None = None) -> dict[Any, Any]:
    table: dict[Any, Any] = {f"k{i:06d}": {"id": i, "name": f"item {i}", "qty": i % 7}
                             for i in range(keys)}
    table.update(extra or {})
    return table


@pytest.mark.parametrize("extra", [
    {},
    {"k000007": {"when": (1, 2), "tags": {"a", "b"}, "raw": b"\x00\x01"}},  # tagged values
    {"\u00e9t\u00e9": "caf\u00e9", "\U0001f600": [1.5, None, True]},  # keys past ASCII
    {"k000010": "a \"quoted\", {braced} [bracketed] \\ string"},  # JSON syntax in a string
    {"k000011": "\ud800 lone"},  # a lone surrogate in a value: a $str tag
    {"quote\"key": 1},  # a key JSON escapes: cut in Python
    {"$dollar": 1},  # a key the codec escapes: the map is a $map tag, cut in Python
    {"big": "x" * (1100 * 1024)},  # a page over PAGE_SPLIT: stored key by key
    {5: "an int key"},  # not a map of string keys: one value, as before
])
def test_sliced_pages_match_pages_cut_in_python(extra: dict[Any, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages sliced from the map's encoding are the objects the Python cut makes."""
    value = _table(5_000, extra)
    assert _stored(value, monkeypatch, sliced=True) == _stored(value, monkeypatch, sliced=False)


def test_the_last_key_may_end_a_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """A map whose last key is a cut key makes no empty page after it."""
    keys = [f"key{i}" for i in range(60_000)]
    mask = 3
    last = next(key for key in reversed(keys) if not zlib.crc32(key.encode()) & mask)
    value = dict.fromkeys(keys[:keys.index(last) + 1], "v" * 40)
    payload = codec.encode(value)
    cut = _speedups.page_cuts(payload, mask)
    assert cut is not None
    assert cut[1][-1] == (len(value) - 1, len(payload) - 1)
    assert _stored(value, monkeypatch, sliced=True) == _stored(value, monkeypatch, sliced=False)


def _quoted(key: str) -> bytes:
    """The key as JSON writes it (a lone surrogate: escaped, as the codec's $map form is)."""
    try:
        return orjson.dumps(key)
    except TypeError:
        return b"\\"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6), max_size=30), st.integers(0, 7))
def test_page_cuts_find_every_cut_key(value: dict[str, Any], mask: int) -> None:
    """page_cuts names each key whose CRC-32 has the mask's bits clear, and where it ends."""
    payload = codec.encode(value)
    found = _speedups.page_cuts(payload, mask)
    keys = sorted(value)
    if not keys or any(key[:1] == "$" or b"\\" in _quoted(key) for key in keys):
        assert found is None
        return
    assert found is not None
    count, cuts = found
    assert count == len(keys)
    assert [index for index, _ in cuts] == [
        index for index, key in enumerate(keys)
        if not zlib.crc32(key.encode("utf-8", "surrogatepass")) & mask]
    for index, end in cuts:  # each cut ends its member: the next byte is "," or the end
        member = codec.encode({keys[index]: value[keys[index]]})[1:-1]
        assert payload[end - len(member):end] == member
        assert payload[end:end + 1] in (b",", b"}")


@pytest.mark.parametrize("payload", [b"", b"{}", b"[1]", b'{"a":1', b'{"a":[1}', b'{"a"1}',
                                     b'{"a":"x}', b'{"a":1}}', b'{"a":1,}', b'{"a":1]'])
def test_page_cuts_refuse_what_is_not_a_plain_object(payload: bytes) -> None:
    """Anything but a whole JSON object of plain keys is left to the Python cut (None)."""
    assert _speedups.page_cuts(payload, 0) is None
