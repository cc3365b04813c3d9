"""The store commands through click's runner: output, --json, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pinrun.artifacts.store import Store
from pinrun.artifacts.trees import tree_entries
from pinrun.cli.main import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner working in an empty folder, with no PINRUN_STORE set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PINRUN_STORE", raising=False)
    return CliRunner()


def run(runner: CliRunner, *args: str, code: int = 0) -> Result:
    """Invoke pinrun and check its exit code."""
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr)
    return result


@pytest.fixture
def populated(runner: CliRunner, tmp_path: Path) -> Path:
    """A store in ./.pinrun holding a snapshot under snaps/one and a blob (and the format
    dictionary the snapshot's tree record is compressed with: 5 objects reach the ref)."""
    run(runner, "init")
    with Store.open(tmp_path / ".pinrun") as store:
        with store.batch() as batch:
            root = batch.put_snapshot({"order": "A1", "total": 12.5, "tags": ("a", "b")})
            batch.set_ref("snaps/one", root)
        store.put_blob(b"plain text blob\n")
    return tmp_path / ".pinrun"


def test_init_creates_and_is_idempotent(runner: CliRunner, tmp_path: Path) -> None:
    """init makes ./.pinrun once, then says it already exists and changes nothing."""
    assert "Created an empty pinrun store" in run(runner, "init").output
    assert (tmp_path / ".pinrun" / "data.mdb").is_file()
    assert "already exists" in run(runner, "init").output


def test_store_option_on_group_and_command(runner: CliRunner, tmp_path: Path) -> None:
    """--store works before or after the subcommand, and PINRUN_STORE is honoured."""
    run(runner, "init", "--store", "a")
    run(runner, "--store", "b", "init")
    assert (tmp_path / "a" / "data.mdb").exists()
    assert (tmp_path / "b" / "data.mdb").exists()
    out = runner.invoke(cli, ["stats", "--json"], env={"PINRUN_STORE": str(tmp_path / "a")})
    assert out.exit_code == 0
    assert json.loads(out.output)["store"] == str((tmp_path / "a").resolve())


def test_missing_store_is_exit_3_with_one_line(runner: CliRunner) -> None:
    """A command without a store fails with exit 3 and a one-line hint, no traceback."""
    result = run(runner, "stats", code=3)
    assert result.stderr.count("\n") == 1
    assert "pinrun init" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_cat_value_tree_blob_raw_json(runner: CliRunner, populated: Path) -> None:
    """cat shows trees as tables, values as JSON, blobs as text, --raw bytes, --json data."""
    with Store.open(populated) as store:
        root = store.ref("snaps/one")
        tags = tree_entries(store, root)["tags"]
        order = tree_entries(store, root)["order"]
        blob = store.put_blob(b"plain text blob\n")
    tree_out = run(runner, "cat", "snaps/one").output
    assert "order" in tree_out
    assert "value" in tree_out
    assert order.hex[:40] in tree_out
    assert run(runner, "cat", blob.hex[:8]).output == "plain text blob\n"
    assert run(runner, "cat", "--raw", order.hex).stdout_bytes == b'"A1"'
    assert json.loads(run(runner, "cat", tags.hex).output) == {"$tuple": ["a", "b"]}
    data = json.loads(run(runner, "cat", "--json", root.hex).output)
    assert data["kind"] == "tree"
    assert data["digest"] == root.hex
    assert data["content"]["type"] == "map"


def test_cat_bad_names_exit_2(runner: CliRunner, populated: Path) -> None:
    """Unknown, short or non-hex names are bad input: exit 2 with the reason."""
    assert "at least 6" in run(runner, "cat", "abc", code=2).stderr
    assert "hexadecimal" in run(runner, "cat", "12-34-56", code=2).stderr
    assert "no ref named 'snaps/none'" in run(runner, "cat", "snaps/none", code=2).stderr
    assert "no object" in run(runner, "cat", "0123456789", code=2).stderr


def test_stats_human_and_json(runner: CliRunner, populated: Path) -> None:
    """stats prints a table for people and the same figures as JSON for machines."""
    human = run(runner, "stats").output
    assert "compression" in human
    assert "dedup" in human
    assert "tree" in human
    data = json.loads(run(runner, "stats", "--json").output)
    assert data["objects"]["tree"] == 1
    assert data["refs"] == 1
    assert data["total_objects"] == 6
    # The one blob beyond the user's is pinrun's format dictionary, and stats says so.
    assert data["format_dictionary"] is True
    assert "pinrun's own, the 2 KiB blob above" in human


def test_stats_names_the_format_dictionary_only_when_held(runner: CliRunner,
                                                          tmp_path: Path) -> None:
    """A store with no record small enough for the format dictionary holds none: stats does
    not speak of it (human or JSON)."""
    run(runner, "init")
    with Store.open(tmp_path / ".pinrun") as store:
        store.put_blob(b"plain text blob\n")
    assert json.loads(run(runner, "stats", "--json").output)["format_dictionary"] is False
    assert "pinrun's own" not in run(runner, "stats").output


def test_fsck_ok_then_corrupt_exit_3(runner: CliRunner, populated: Path) -> None:
    """fsck exits 0 on a healthy store and 3, naming the digest, on a damaged one."""
    assert "ok" in run(runner, "fsck").output
    with Store.open(populated) as store:
        victim = store.resolve(store.put_value("victim " * 50).hex)
        env = store.environment
        record = bytearray(env.write(lambda txn: txn.get(victim.raw, db=env.dbs["objects"])))
        record[-2] ^= 0xFF
        env.write(lambda txn: txn.put(victim.raw, bytes(record), db=env.dbs["objects"]))
    result = run(runner, "fsck", code=3)
    assert victim.hex in result.output
    data = json.loads(run(runner, "fsck", "--json", code=3).output)
    assert [p["digest"] for p in data["problems"]] == [victim.hex]
    assert "corrupt" in run(runner, "cat", victim.hex, code=3).stderr


def test_gc_dry_run_then_sweep(runner: CliRunner, populated: Path) -> None:
    """gc --dry-run counts the loose blob; gc removes it; the ref survives."""
    assert "would delete 1 " in run(runner, "gc", "--dry-run").output
    data = json.loads(run(runner, "gc", "--json").output)
    assert data["deleted"] == 1
    assert data["reachable"] == 5
    run(runner, "cat", "snaps/one")


def test_export_import_round_trip(runner: CliRunner, populated: Path, tmp_path: Path) -> None:
    """export writes a bundle; import into another store brings the ref and its objects."""
    assert "wrote 5 objects" in run(runner, "export", "snaps/one", "-o", "b.pinrun").output
    out = run(runner, "--store", "other", "import", "b.pinrun").output
    assert "imported 5 objects (5 new)" in out
    assert "snaps/one" in out
    assert json.loads(run(runner, "--store", "other", "fsck", "--json").output)["ok"]
    run(runner, "export", "-o", "x.pinrun", code=2)


def test_import_of_damaged_bundle_exit_2(runner: CliRunner, populated: Path,
                                          tmp_path: Path) -> None:
    """A truncated bundle is refused with exit 2 and no store is made for it."""
    run(runner, "export", "--all", "-o", "b.pinrun")
    data = (tmp_path / "b.pinrun").read_bytes()
    (tmp_path / "b.pinrun").write_bytes(data[:-10])
    assert "truncated" in run(runner, "--store", "other", "import", "b.pinrun", code=2).stderr
    assert not (tmp_path / "other").exists()


def test_help_teaches(runner: CliRunner) -> None:
    """Every command has help text, and the group lists the commands and exit codes."""
    top = run(runner, "--help").output
    assert "Exit codes" in top
    for command in ("init", "cat", "stats", "fsck", "gc", "export", "import", "demo"):
        assert command in top
        assert "--store" in run(runner, command, "--help").output


def test_demo_runs(runner: CliRunner, tmp_path: Path) -> None:
    """The demo tours the store on a kept folder, ending with a clean fsck."""
    out = run(runner, "demo", "--store", str(tmp_path / "kept")).output
    assert "fsck: clean" in out
    assert "only 2 new objects" in out
    assert json.loads(run(runner, "--store", str(tmp_path / "kept"), "fsck", "--json")
                      .output)["ok"]


def test_debug_shows_the_traceback(runner: CliRunner) -> None:
    """--debug lets the error through with its traceback instead of the one-line message."""
    from pinrun.errors import StoreNotFoundError

    plain = runner.invoke(cli, ["stats"])
    assert plain.exit_code == 3
    assert plain.exception is None or isinstance(plain.exception, SystemExit)
    debug = runner.invoke(cli, ["--debug", "stats"])
    assert isinstance(debug.exception, StoreNotFoundError)
    assert debug.exc_info is not None


def test_cat_shows_keys_that_look_like_markup(runner: CliRunner, tmp_path: Path) -> None:
    """Snapshot keys are shown as text, even when they look like rich markup."""
    run(runner, "init")
    with Store.open(tmp_path / ".pinrun") as store:
        store.set_ref("snapshots/odd", store.put_snapshot({"[/bold]": 1, "[red]x": 2}))
    out = run(runner, "cat", "snapshots/odd").output
    assert "[/bold]" in out
    assert "[red]x" in out


def test_import_from_a_subfolder_uses_the_project_store(runner: CliRunner,
                                                        populated: Path,
                                                        tmp_path: Path) -> None:
    """import finds the store upward, as every command does, instead of making a new one."""
    run(runner, "export", "snaps/one", "-o", "b.pinrun")
    with Store.open(tmp_path / "elsewhere", create=True) as other:
        other_bundle = tmp_path / "other.pinrun"
        other.set_ref("snaps/two", other.put_snapshot({"x": 1}))
        from pinrun.artifacts.bundle import export_bundle

        export_bundle(other, ["snaps/two"], other_bundle)
    sub = tmp_path / "sub"
    sub.mkdir()
    import os

    os.chdir(sub)
    run(runner, "import", str(other_bundle))
    assert not (sub / ".pinrun").exists()
    with Store.open(populated) as store:
        assert store.get_ref("snaps/two") is not None
    assert "no bundle file" in run(runner, "import", "missing.pinrun", code=2).stderr
    assert not (sub / ".pinrun").exists()


def test_export_refuses_a_folder_and_mixed_roots(runner: CliRunner, populated: Path,
                                                 tmp_path: Path) -> None:
    """Exporting to a folder, or roots together with --all, are input errors (exit 2)."""
    (tmp_path / "adir").mkdir()
    assert "is a folder" in run(runner, "export", "--all", "-o", "adir", code=2).stderr
    assert "not both" in run(runner, "export", "snaps/one", "--all", "-o", "x", code=2).stderr


def test_cat_of_a_chunked_blob(runner: CliRunner, tmp_path: Path) -> None:
    """A large blob (stored in chunks) says how big it is, and --raw writes all its bytes."""
    import os

    from pinrun.artifacts.trees import CHUNK_THRESHOLD

    run(runner, "init")
    data = os.urandom(CHUNK_THRESHOLD + 10)
    with Store.open(tmp_path / ".pinrun") as store:
        store.set_ref("blobs/big", store.put_blob(data))
    assert "bytes of blob data in 5 chunks" in run(runner, "cat", "blobs/big").output
    assert run(runner, "cat", "--raw", "blobs/big").stdout_bytes == data
