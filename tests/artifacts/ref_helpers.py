"""Helpers of the ref-check tests: stores edited as an attacker would, read as stored."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from pinrun.artifacts.digest import Digest
from pinrun.artifacts.store import Store
from tests.helpers import SRC

#: An edit of the refs and meta databases: ``edit(txn, refs_db, meta_db)``.
RawEdit = Callable[[Any, Any, Any], None]


def pinrun_cli(store: Path, *args: str, cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun --store STORE ARGS`` (in ``cwd``, importable from there too)."""
    path = os.pathsep.join([str(SRC), *([str(cwd)] if cwd else [])])
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.run([sys.executable, "-m", "pinrun", "--store", str(store), *args],
                          capture_output=True, text=True, env=env, check=False, timeout=300,
                          cwd=cwd)


def edit_refs(path: Path, edit: RawEdit) -> None:
    """Change the store's refs and meta databases with plain py-lmdb (as an attacker would)."""
    with lmdb.open(str(path), max_dbs=8, subdir=True) as env:
        refs = env.open_db(b"refs", create=False)
        meta = env.open_db(b"meta", create=False)
        with env.begin(write=True) as txn:
            edit(txn, refs, meta)


def raw_refs(path: Path) -> dict[bytes, bytes]:
    """The refs database as stored, read with plain py-lmdb."""
    with lmdb.open(str(path), max_dbs=8, readonly=True, lock=False, subdir=True) as env:
        refs = env.open_db(b"refs", create=False)
        with env.begin() as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor(db=refs)}


def format_one_store(path: Path) -> None:
    """A store as a pinrun before format 2 made it: format marker b"1", bare digests."""
    Store.open(path, create=True).close()
    edit_refs(path, lambda txn, refs, meta: txn.put(b"format", b"1", db=meta))


def tag_refs(store: Store, names: list[str]) -> dict[str, Digest]:
    """Refs ``names``, each to a small value of its own, in one commit."""
    with store.batch() as batch:
        targets = {name: batch.put_value({"n": n}) for n, name in enumerate(names)}
        for name, target in targets.items():
            batch.set_ref(name, target)
    return targets
