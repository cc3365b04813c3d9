"""Findings of an attacker's review of issue 8, each a test of the fix.

The attacker hands the victim a store folder or a bundle. Every test builds a
real store with the real CLI (``python -m pinrun`` in a child process), then
changes it the way a hostile bundle or folder could, and checks one promise
of the trust model that did not hold when the review found it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import open_store
from tests.helpers import SRC
from tests.hostile import EVIL_MODULE, TWO_STEP_FLOW, pinrun_cli, write_bundle, zstd_record

pytestmark = pytest.mark.slow


#: Environment variables that would make rich or click style output on their own.
_STYLE_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE",
              "PINRUN_STORE", "PYTHONHASHSEED", "PINRUN_HASH_SEED_SET", "GITHUB_ACTIONS")


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _pinrun(cwd: Path, *args: str, lib: Path | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    """``python -m pinrun ARGS`` in ``cwd`` as a user runs it (``lib`` on PYTHONPATH too)."""
    env = {key: value for key, value in os.environ.items() if key not in _STYLE_ENV}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), *([str(lib)] if lib else [])]),
               COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A project with one honest recorded run (copied by each test that changes it)."""
    project = tmp_path_factory.mktemp("recorded") / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "flows.py").write_text(TWO_STEP_FLOW)
    assert _pinrun(project, "init").returncode == 0
    done = _pinrun(project, "run", "app.flows:flow", "--set", 'order_id="A"', "--json")
    assert done.returncode == 0, done.stderr
    return project, json.loads(done.stdout)["id"]


@pytest.fixture
def victim(recorded: tuple[Path, str], tmp_path: Path) -> tuple[Path, str, Path]:
    """A copy of the recorded project, its run id, and a lib folder holding evil_mod."""
    project = tmp_path / "project"
    shutil.copytree(recorded[0], project, symlinks=True)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "evil_mod.py").write_text(EVIL_MODULE)
    return project, recorded[1], lib


def _crafted_run(project: Path, base_id: str, suffix: str,
                 change: Callable[[dict[str, Any], Any], dict[str, Any]]) -> str:
    """Store a copy of run ``base_id`` changed by ``change(record, batch)`` as a new run."""
    with open_store(project / ".pinrun") as store:
        base = codec.decode_tagged(store.load(store.ref(f"runs/{base_id}"))[1])
        new_id = base_id[:-6] + suffix
        with store.batch() as batch:
            record = change({**base, "id": new_id}, batch)
            batch.set_ref(f"runs/{new_id}", batch.put(Kind.RUN, _json(record)))
    return new_id


def _with_output(payload: bytes) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A change giving the run's first step (and the run's state) one crafted output value."""
    def change(record: dict[str, Any], batch: Any) -> dict[str, Any]:
        tree = batch.put_entries({"items": batch.put(Kind.VALUE, payload)})
        steps = [dict(step) for step in record["steps"]]
        steps[0]["outputs"] = {"$digest": tree.hex}
        return {**record, "steps": steps, "state": {"$digest": tree.hex}}
    return change


_TREE_PEAK = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "pinrun", *sys.argv[1:]], check=False)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_of_tree(cwd: Path, *args: str) -> tuple[int, int]:
    """Exit code of ``pinrun ARGS``, and the peak RSS (KiB) of its largest process."""
    env = {key: value for key, value in os.environ.items() if key not in _STYLE_ENV}
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run([sys.executable, "-c", _TREE_PEAK, *args], cwd=cwd, env=env,
                          capture_output=True, timeout=180, check=True)
    returncode, peak = done.stdout.split()[-2:]
    return int(returncode), int(peak)


# ---------------------------------------------------------------- findings


def test_verify_and_replay_never_import_a_module_a_record_names(
        victim: tuple[Path, str, Path]) -> None:
    """A run record whose entry names a module outside the project makes no command import it."""
    project, base_id, lib = victim
    hostile = _crafted_run(project, base_id, "0e0001",
                           lambda record, batch: {**record, "entry": "evil_mod:flow"})
    for command in (["verify", hostile], ["replay", hostile, "--code", "workdir"],
                    ["replay", hostile]):
        result = _pinrun(project, *command, lib=lib)
        assert b"Traceback" not in result.stdout + result.stderr, command
        assert not (lib / "IMPORTED").exists(), f"{command} imported evil_mod"


def test_a_record_naming_a_stdlib_main_module_cannot_forge_the_verdict(
        victim: tuple[Path, str, Path]) -> None:
    """verify exits non-zero for a run it cannot replay, and writes nothing outside the store."""
    project, base_id, _ = victim
    _crafted_run(project, base_id, "0e0002",
                 lambda record, batch: {**record, "entry": "venv.__main__:flow"})
    before = sorted(path.name for path in project.iterdir())
    result = _pinrun(project, "verify")
    after = sorted(path.name for path in project.iterdir())
    assert after == before, f"verify created {set(after) - set(before)} in the project"
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)


def test_diff_of_a_hash_flooded_set_finishes_quickly(victim: tuple[Path, str, Path]) -> None:
    """diff of a run whose output is a 2 MB set of colliding integers ends within seconds."""
    project, base_id, _ = victim
    prime = (1 << 61) - 1
    items = [{"$int": str(k * prime)} if k * prime >= 1 << 64 else k * prime
             for k in range(1, 60_001)]
    hostile = _crafted_run(project, base_id, "0c0111",
                           _with_output(_json({"$set": items})))
    # Today this takes ~20 s (and ~10 minutes at 300,000 items, a 10 MB value).
    result = _pinrun(project, "diff", hostile, base_id, timeout=8)
    assert result.returncode in (0, 1, 3)


def test_a_deeply_nested_output_is_one_line_in_diff_replay_and_verify(
        victim: tuple[Path, str, Path]) -> None:
    """diff, replay and verify of a run with a 1000-deep output print no traceback."""
    project, base_id, _ = victim
    depth = 1000  # orjson reads up to 1024 levels; the codec stores what it reads
    hostile = _crafted_run(project, base_id, "0d0001",
                           _with_output(b"[" * depth + b"]" * depth))
    for command in (["diff", hostile, base_id], ["replay", hostile], ["verify", hostile]):
        result = _pinrun(project, *command)
        shown = result.stdout + result.stderr
        assert b"Traceback" not in shown, (command, shown[-400:])


def _naming_one_tree_over_and_over(record: dict[str, Any], batch: Any) -> dict[str, Any]:
    """The first step's outputs (and the run's state): five map trees of 100 entries, each
    naming the tree below, 10^10 values from ~30 KB."""
    digest = batch.put(Kind.VALUE, b"1")
    for _ in range(5):
        digest = batch.put(Kind.TREE, _json({"type": "map", "entries": {
            f"k{i}": {"$digest": digest.hex} for i in range(100)}}))
    steps = [dict(step) for step in record["steps"]]
    steps[0]["outputs"] = {"$digest": digest.hex}
    return {**record, "steps": steps, "state": {"$digest": digest.hex}}


def test_trees_naming_one_tree_over_and_over_are_one_line_everywhere(
        victim: tuple[Path, str, Path]) -> None:
    """diff, replay and verify of a run whose outputs are a DAG bomb end in seconds with a
    line naming it, where they used to run until memory ran out; show --values shows it."""
    project, base_id, _ = victim
    hostile = _crafted_run(project, base_id, "0b0001", _naming_one_tree_over_and_over)
    shown = _pinrun(project, "show", hostile, "--values", timeout=60)
    assert shown.returncode == 0  # (it names large values by digest: nothing rebuilt)
    for command in (["diff", hostile, base_id], ["replay", hostile], ["verify", hostile]):
        result = _pinrun(project, *command, timeout=60)
        output = result.stdout + result.stderr
        assert b"Traceback" not in output, (command, output[-400:])
        assert b"over and over" in output, (command, output[-400:])
        assert result.returncode in (1, 3), (command, result.returncode)


def test_fsck_checks_an_honest_value_bomb_in_bounded_memory(tmp_path: Path) -> None:
    """fsck of a store holding a true 256 MiB value (8 KB in the bundle) stays at tens of MiB."""
    import blake3
    import zstandard

    size = 256 << 20
    text = b'"' + b"a" * (size - 2) + b'"'  # a valid JSON string: it even decodes
    digest = Digest(blake3.blake3(Kind.VALUE.tag + text).digest())
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(text)
    del text
    bundle = write_bundle(tmp_path / "bomb.pinrun",
                          [(digest, zstd_record(Kind.VALUE, digest, size, frame))],
                          refs={"tags/bomb": digest.hex})
    assert bundle.stat().st_size < 20_000
    imported = pinrun_cli(tmp_path, "import", str(bundle))
    assert imported.returncode == 0, imported.stderr
    assert imported.peak_rss_kib < 64 * 1024  # import holds: it streams the value
    # fsck scans in a child process of its own: measure the largest of the whole tree.
    returncode, peak_kib = _peak_of_tree(tmp_path, "fsck")
    assert returncode == 0
    assert peak_kib < 64 * 1024, f"fsck peaked at {peak_kib} KiB"
    for command in (["cat", "tags/bomb"], ["cat", "--json", "tags/bomb"]):
        returncode, peak_kib = _peak_of_tree(tmp_path, *command)
        assert returncode == 0
        assert peak_kib < 64 * 1024, f"{command} peaked at {peak_kib} KiB"


def test_json_output_escapes_c1_controls_and_bidi_overrides(
        victim: tuple[Path, str, Path]) -> None:
    """show --json and diff --json never write U+009B or U+202E as they are."""
    project, base_id, _ = victim
    evil = "\x9b31m\u202eevil"

    def change(record: dict[str, Any], batch: Any) -> dict[str, Any]:
        steps = [dict(step) for step in record["steps"]]
        steps[0]["hazards"] = [evil]
        return {**record, "flow": "demo" + evil, "steps": steps}

    hostile = _crafted_run(project, base_id, "0e0e01", change)
    for command in (["show", hostile, "--json"], ["diff", base_id, hostile, "--json"],
                    ["runs", "--json"]):
        result = _pinrun(project, *command)
        shown = result.stdout + result.stderr
        assert "\x9b".encode() not in shown, command
        assert "\u202e".encode() not in shown, command


def test_a_symlinked_lock_file_never_writes_outside_the_store(
        victim: tuple[Path, str, Path], tmp_path: Path) -> None:
    """pinrun runs on a handed store whose lock.mdb links elsewhere leaves that file alone."""
    project, _, _ = victim
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    lock = project / ".pinrun" / "lock.mdb"
    lock.unlink()
    lock.symlink_to(precious)
    result = _pinrun(project, "runs")
    assert b"Traceback" not in result.stdout + result.stderr
    assert precious.read_bytes() == b"the user's own file\n"


def test_malformed_recorded_events_are_one_line_in_replay_and_verify(
        victim: tuple[Path, str, Path]) -> None:
    """replay and verify of a run whose events log is not a list of events print no traceback."""
    project, base_id, _ = victim
    logs = {"0f0004": {"a": 1}, "0f0005": [{"kind": "effect", "name": 5}], "0f0006": [1, "x"]}
    for suffix, log in logs.items():
        def change(record: dict[str, Any], batch: Any, log: Any = log) -> dict[str, Any]:
            steps = [dict(step) for step in record["steps"]]
            steps[0]["events"] = {"$digest": batch.put(Kind.VALUE, _json(log)).hex}
            return {**record, "steps": steps}

        hostile = _crafted_run(project, base_id, suffix, change)
        for command in (["replay", hostile], ["verify", hostile]):
            result = _pinrun(project, *command)
            shown = result.stdout + result.stderr
            assert b"Traceback" not in shown, (command, log, shown[-300:])
            assert result.returncode == 3, (command, log, result.returncode)


@pytest.mark.parametrize("name", ["data.mdb", "open.lock", "leases"])
def test_other_store_files_that_are_links_are_refused(
        victim: tuple[Path, str, Path], tmp_path: Path, name: str) -> None:
    """data.mdb, open.lock and leases/ linking elsewhere: refused as damage, target untouched."""
    project, base_id, _ = victim
    store = project / ".pinrun"
    target = tmp_path / f"elsewhere-{name}"
    if name == "leases":
        target.mkdir()
        shutil.rmtree(store / "leases", ignore_errors=True)
    else:
        target.write_bytes((store / name).read_bytes() if (store / name).exists() else b"")
        (store / name).unlink(missing_ok=True)
    (store / name).symlink_to(target)
    before = sorted(p.name for p in target.iterdir()) if target.is_dir() else target.read_bytes()
    command = ["resume", base_id] if name == "leases" else ["runs"]
    result = _pinrun(project, *command)
    assert result.returncode == 3, (command, result.stdout, result.stderr)
    assert b"Traceback" not in result.stderr
    assert b"symbolic link" in result.stderr
    after = sorted(p.name for p in target.iterdir()) if target.is_dir() else target.read_bytes()
    assert after == before
