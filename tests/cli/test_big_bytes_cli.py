"""A run holding 5 MiB of bytes, through the CLI as a user runs it: show, export,
import, replay, fsck and gc (real subprocesses)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Kind
from tests.helpers import Project, project_cli
from tests.hostile import honest, pinrun_cli, write_bundle

FLOW = """
import blake3
import pinrun


@pinrun.step
def make(seed: str) -> dict:
    return {"blob": blake3.blake3(seed.encode()).digest(length=5 * 1024 * 1024 + 7)}


@pinrun.step
def measure(blob: bytes) -> dict:
    return {"size": len(blob)}


flow = pinrun.Flow("big", [make, measure])
"""


def _ok(project: Project, *args: str) -> str:
    done = project_cli(project, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.mark.slow
def test_big_bytes_show_export_import_replay_fsck_gc(project: Project) -> None:
    """show names the bytes by size and start; the run exports, imports, replays, checks."""
    project.write("big", FLOW)
    _ok(project, "init")
    _ok(project, "run", project.entry("big"), "--set", 'seed="abc"')
    run_id = json.loads(_ok(project, "runs", "--json"))[0]["id"]

    shown = json.loads(_ok(project, "show", run_id, "--values", "--json"))
    blob = shown["steps"][0]["values"]["outputs"]["entries"]["blob"]
    assert blob["size"] == 5 * 1024 * 1024 + 7
    assert blob["value"].startswith("b'")
    assert "bytes of 5,242,887 bytes, cut" in blob["note"]
    text = _ok(project, "show", run_id, "--values")
    assert "blob = b'" in text
    assert len(text) < 6000

    bundle = project.root / "run.bundle"
    _ok(project, "export", run_id, "-o", str(bundle))
    other = project.root / "other-store"
    env_store = ("--store", str(other))
    _ok(project, *env_store, "import", str(bundle))
    replayed = json.loads(_ok(project, *env_store, "replay", run_id, "--json"))
    assert replayed["verdict"] == "reproduced"
    assert json.loads(_ok(project, *env_store, "fsck", "--json"))["problems"] == []
    _ok(project, *env_store, "gc")
    replayed = json.loads(_ok(project, *env_store, "replay", run_id, "--json"))
    assert replayed["verdict"] == "reproduced"
    assert os.path.getsize(bundle) > 5 * 1024 * 1024  # incompressible: carried whole


def test_a_bundle_naming_4_gib_of_bytes_is_refused_cheaply(tmp_path: Path) -> None:
    """A bundle whose chunk tree names one 1 MiB chunk 4,096 times (4 GiB) is refused
    at import, exit 2, in tens of MiB."""
    chunk_digest, chunk = honest(Kind.BLOB, bytes(range(256)) * 4096)
    tree = codec.encode({"type": "chunks", "chunks": [chunk_digest] * 4096, "size": 4 << 30})
    tree_digest, tree_record = honest(Kind.TREE, tree)
    folder = tmp_path / "victim"
    folder.mkdir()
    bundle = write_bundle(folder / "huge.pinrun", [(chunk_digest, chunk),
                                                   (tree_digest, tree_record)],
                          refs={"tags/huge": tree_digest.hex})
    result = pinrun_cli(folder, "import", str(bundle))
    assert result.returncode == 2, result.stderr
    assert result.one_line_error, result.stderr
    assert b"not a valid tree" in result.stderr
    assert not (folder / ".pinrun").exists()
    assert result.peak_rss_kib < 64 * 1024, result.peak_rss_kib
