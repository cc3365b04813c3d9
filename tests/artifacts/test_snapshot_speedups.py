"""The C loops of wide snapshots store exactly what the pure-Python code stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from pinrun.artifacts import _speedups, codec, snapshot_pages, trees
from pinrun.artifacts.digest import Digest, Kind, compute_digest

# Run in a fresh interpreter that cannot import the C module (as without a compiler),
# and in this one: each prints the digests of the same snapshots.
_DIGESTS = r'''
import json, sys
from pinrun.artifacts import trees
from pinrun.artifacts.digest import compute_digest
sys.path.insert(0, sys.argv[1])
from snapshots import snapshots

class Sink:
    def put(self, kind, payload, digest=None):
        return compute_digest(kind, payload)

print(json.dumps([trees.store_snapshot(Sink(), state, payloads=payloads).hex
                  for state, payloads in snapshots()]))
'''

_SNAPSHOTS = r'''
from pinrun.artifacts import codec, trees

def snapshots():
    """Wide states of every kind of key and value, with and without known encodings."""
    wide = {f"k{i:05d}": {"id": i, "name": f"item {i}"} for i in range(4000)}
    odd = dict(wide, **{"$dollar": 1, "quote\"key": "x", "tab\tkey": [1], "\u00e9": "e",
                        "lone\ud800": 2, "raw": b"\x00" * 100, "big": "y" * 20000,
                        "table": {f"n{i:05d}": i for i in range(12000)},
                        "tagged": (1, frozenset({2}))})
    small = {"a": 1, "b": [2], "c": b"three"}
    out = []
    for state in (wide, odd, small):
        payloads = {key: trees.encode_entry(value) for key, value in state.items()}
        out += [(state, payloads), (state, None)]
    return out
'''


class _Sink:
    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        made = compute_digest(kind, payload)
        assert digest is None or digest == made
        return made


@pytest.mark.slow
def test_compiled_and_pure_python_snapshots_have_the_same_digests(tmp_path: Any) -> None:
    """Without the C module (no compiler), every snapshot gets the same tree digest."""
    (tmp_path / "snapshots.py").write_text(_SNAPSHOTS)
    outputs = []
    for blocked in (True, False):
        prelude = "import sys; sys.modules['pinrun.artifacts._speedups'] = None\n" \
            if blocked else ""
        check = "\nfrom pinrun.artifacts import snapshot_pages\n" \
            f"assert (snapshot_pages._speedups is None) is {blocked}\n"
        done = subprocess.run([sys.executable, "-c", prelude + check + _DIGESTS,
                               str(tmp_path)], capture_output=True, text=True, check=True,
                              env=dict(os.environ, PYTHONHASHSEED="0"))
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert len(set(outputs[0])) == 3  # each state one digest, with or without payloads


def test_a_state_grown_entry_by_entry_has_the_digest_of_the_state_stored_whole() -> None:
    """Entries kept from earlier snapshots and new ones make the tree of the whole state."""
    state = {f"k{i:05d}": {"id": i} for i in range(20_000)}
    entries: dict[str, trees.Entry] = {}
    trees.store_snapshot(_Sink(), {k: v for k, v in state.items() if k < "k10000"},
                         entries_out=entries)
    trees.store_snapshot(_Sink(), {k: v for k, v in state.items() if k >= "k10000"},
                         entries_out=entries)
    entries["k00042"] = trees.store_entry(_Sink(), state["k00042"], "x")  # own object
    changed = dict(state, k00042=state["k00042"])
    whole = trees.store_snapshot(_Sink(), changed)
    grown = snapshot_pages.store_entries(_Sink(), entries)
    assert grown != whole  # k00042 as its own object is another layout of the same value
    kept = snapshot_pages.inline("k00042", codec.encode(state["k00042"]))
    assert kept is not None
    entries["k00042"] = kept
    assert snapshot_pages.store_entries(_Sink(), entries) == whole


def test_store_entries_joins_pages_as_the_python_loop_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """page_plan's pages, own-object keys and split pages are the Python loop's."""
    state: dict[str, Any] = {f"k{i:05d}": "v" * (i % 300) for i in range(30_000)}
    state["k00100"] = b"bytes: an object of its own"
    state["k00200"] = "z" * 20_000  # over INLINE_LIMIT: an object of its own
    entries: dict[str, trees.Entry] = {}
    compiled = trees.store_snapshot(_Sink(), state, entries_out=entries)
    assert type(entries["k00100"]) is Digest
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_pages, "_speedups", None)
        patch.setattr(trees, "_inline_entries", None)
        assert trees.store_snapshot(_Sink(), state) == compiled
        assert snapshot_pages.store_entries(_Sink(), entries) == compiled


def test_the_c_inline_entry_is_the_python_one() -> None:
    """Inline made in C carries the member, start, cut and payload inline() gives."""
    made = _speedups.inline_entries({"key": [1]}, {"key": b"[1]"}, 100)
    assert made is not None
    entry = made[0]["key"]
    python = snapshot_pages._Inline(b'"key":[1]', 6, entry.cut)
    assert (entry.member, entry.start, entry.payload) == (python.member, python.start,
                                                         python.payload)
    assert entry.cut == snapshot_pages.inline("key", b"[1]").cut  # type: ignore[union-attr]
    assert repr(entry) == "Inline(b'\"key\":[1]')"
    with pytest.raises(AttributeError):
        entry.cut = 0  # read-only in C
    with pytest.raises(ValueError, match="out of range"):
        _speedups.Inline(b"ab", 3, 0)


def test_inline_entries_leave_to_python_what_it_must_decide() -> None:
    """Unknown encodings, bytes, large values and escaped keys come back as the rest."""
    state: dict[str, Any] = {"known": 1, "unknown": 2, "raw": b"x", "large": "y" * 50,
                             "quote\"": 3, "$dollar": 4, "lone\ud800": 5}
    payloads = {key: codec.encode(value) for key, value in state.items()
                if key != "unknown" and type(value) is not bytes}
    payloads["raw"] = trees.encode_entry(b"x")
    made = _speedups.inline_entries(state, payloads, 20)
    assert made is not None
    assert list(made[0]) == ["known"]
    assert made[1] == ["unknown", "raw", "large", "quote\"", "$dollar", "lone\ud800"]
    not_str: dict[Any, Any] = {1: 1}
    assert _speedups.inline_entries(not_str, {}, 20) is None  # the Python code names the key
