"""What someone who can write to a remote tries, and what stops it.

The attacker here holds no trusted key; they can only add objects to the
remote (index entries, packs), as anyone with write access to a bucket can.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.errors import UntrustedRunError
from pinrun.remote.client import FolderClient
from pinrun.remote.index import Catalog, RemoteRun, encode_entry
from pinrun.remote.keys import SigningKey
from pinrun.remote.origin import check_trusted
from pinrun.remote.remotes import open_remote
from pinrun.remote.selection import RemoteSelection, select_remote_runs
from tests.remote.conftest import ok, pinrun
from tests.remote.scenario import as_json, empty_machine, production


def _publish(remote: Path, runs: list[RemoteRun], *, pushed_at: str | None = None,
             table: list[tuple[Digest, int, int]] | None = None, pack: str | None = None,
             key: SigningKey | None = None) -> None:
    """Add one index entry to a folder remote, as an attacker with write access can."""
    when = pushed_at or datetime.now(UTC).isoformat()
    name, data = encode_entry(pack, table or [], runs, when, key)
    assert FolderClient(remote).put_new(name, data)


def _signed_corpus(tmp_path: Path, count: int = 2) -> tuple[Path, Path, list[str], str]:
    """Production pushes ``count`` runs signed by key prod-1; returns its folders, ids, key."""
    remote = tmp_path / "remote"
    prod, ids = production(tmp_path / "prod", count)
    ok(pinrun(prod, "key", "generate", "prod-1"))
    public = as_json(ok(pinrun(prod, "key", "list", "--json")))["signing"]
    ok(pinrun(prod, "push", "--remote", str(remote), "--all"))
    return prod, remote, ids, public


@pytest.mark.slow
def test_an_unsigned_entry_cannot_hide_strip_or_replace_signed_runs(tmp_path: Path) -> None:
    """Republishing signed runs unsigned, later, as replaced or replacing each other, changes
    nothing: the gate still selects every signed run, signed."""
    _prod, remote, ids, _ = _signed_corpus(tmp_path)
    catalog = open_remote(None, str(remote)).catalog()
    forged = [dataclasses.replace(catalog.runs[ids[0]], signer=None, signature=None,
                                  replaces=ids[1], status="failed"),
              dataclasses.replace(catalog.runs[ids[1]], signer=None, signature=None,
                                  replaces=ids[0])]
    _publish(remote, forged, pushed_at="2026-12-06T23:59:59+00:00")
    after = open_remote(None, str(remote)).catalog()
    chosen = select_remote_runs(after, RemoteSelection(everything=True))
    assert sorted(run.id for run in chosen) == sorted(ids)
    assert all(run.signer is not None and run.status == "succeeded" for run in chosen)


def test_a_push_time_in_the_future_or_not_a_time_is_refused(tmp_path: Path) -> None:
    """An entry cannot sort itself after every later push with a made-up time."""
    from pinrun.errors import RemoteError

    remote = tmp_path / "remote"
    remote.mkdir()
    client = FolderClient(remote)
    client.put_new("pinrun-remote.json", b'{"format": 1}')
    _publish(remote, [], pushed_at="9999-01-01T00:00:00+00:00")
    with pytest.raises(RemoteError, match="push time"):
        open_remote(None, str(remote)).catalog()


@pytest.mark.slow
def test_false_places_for_records_neither_block_a_pull_nor_a_push(tmp_path: Path) -> None:
    """An entry naming a missing pack for every record: pull takes the true places, and a
    signed push does not count on the attacker's word that the remote holds them."""
    prod, remote, ids, public = _signed_corpus(tmp_path)
    catalog = open_remote(None, str(remote)).catalog()
    table = [(Digest(raw), 0, 10) for raw in catalog.objects]
    _publish(remote, [], pushed_at="2000-01-01T00:00:00+00:00", pack="00" * 32, table=table)
    laptop = empty_machine(tmp_path / "laptop")
    ok(pinrun(laptop, "key", "trust", public))
    pulled = as_json(ok(pinrun(laptop, "pull", "--remote", str(remote), "--all", "--json")))
    assert sorted(pulled["pulled"]) == sorted(ids)
    assert "2 reproduced" in ok(pinrun(laptop, "verify", "--code", "pinned"))
    # A new run shares the code records the forged entry claims: its push sends them.
    new = ok(pinrun(prod, "run", "shop.orders:flow", "--set", 'order_id="N-1"')).strip()
    ok(pinrun(prod, "push", "--remote", str(remote), new))
    fresh = empty_machine(tmp_path / "fresh")
    ok(pinrun(fresh, "pull", "--remote", str(remote), new))


@pytest.mark.slow
def test_a_run_published_with_another_runs_record_is_refused(tmp_path: Path) -> None:
    """Run Y published with X's record: the pull names it, exit 3, nothing written."""
    _prod, remote, ids, _ = _signed_corpus(tmp_path)
    catalog = open_remote(None, str(remote)).catalog()
    victim = catalog.runs[ids[0]]
    liar = dataclasses.replace(victim, id="20261206T000000000-abcdef", signer=None,
                               signature=None)
    _publish(remote, [liar])
    laptop = empty_machine(tmp_path / "laptop")
    pulled = pinrun(laptop, "pull", "--remote", str(remote), liar.id)
    assert pulled.returncode == 3, pulled.stderr
    assert liar.id in pulled.stderr
    assert as_json(ok(pinrun(laptop, "runs", "--json"))) == []


@pytest.mark.slow
def test_a_pulled_run_whose_record_changed_here_runs_no_pinned_code(tmp_path: Path) -> None:
    """The trusted signature covers the record that was pulled, not whatever the run's ref
    names now: another record under the same id is refused."""
    _prod, remote, ids, public = _signed_corpus(tmp_path, 1)
    laptop = empty_machine(tmp_path / "laptop")
    ok(pinrun(laptop, "key", "trust", public))
    ok(pinrun(laptop, "pull", "--remote", str(remote), "--all"))
    with Store.open(laptop / ".pinrun") as store:
        check_trusted(store, ids[0])  # as pulled: trusted
        run = load_run(store, ids[0])
        other = dataclasses.replace(run, status="failed")
        with store.batch() as batch:
            digest = batch.put(Kind.RUN, other.encode())
            batch.set_ref(f"runs/{run.id}", digest)
        with pytest.raises(UntrustedRunError, match="not the one that was pulled"):
            check_trusted(store, ids[0])
    assert pinrun(laptop, "replay", ids[0]).returncode == 2


def test_a_stray_file_in_the_index_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """A README or .DS_Store under index/ does not break every pull; it is named."""
    remote = tmp_path / "remote"
    (remote / "index").mkdir(parents=True)
    FolderClient(remote).put_new("pinrun-remote.json", b'{"format": 1}')
    (remote / "index" / "README").write_text("hello")
    catalog = open_remote(None, str(remote)).catalog()
    assert catalog.skipped == ["index/README"]
    here = empty_machine(tmp_path / "m")
    result = pinrun(here, "pull", "--remote", str(remote), "--all")
    assert result.returncode == 0, result.stderr
    assert "index/README" in result.stderr


def test_a_second_key_with_a_trusted_name_is_not_trusted_by_name(tmp_path: Path) -> None:
    """Trust is by key, never by name: another key named like a trusted one is refused, and
    `key trust` will not add a second key under a name in use."""
    here = empty_machine(tmp_path / "m")
    real, fake = SigningKey("prod", b"\x01" * 32), SigningKey("prod", b"\x02" * 32)
    ok(pinrun(here, "key", "trust", real.public.text))
    second = pinrun(here, "key", "trust", fake.public.text)
    assert second.returncode == 2
    assert "another key named 'prod'" in second.stderr


def test_a_signing_key_is_never_echoed(tmp_path: Path) -> None:
    """A malformed PINRUN_SIGNING_KEY is refused without printing any of it."""
    here = empty_machine(tmp_path / "m")
    secret = "bm90LWEtc2VlZC1vZi10aGUtcmlnaHQtc2l6ZSE="  # 29 bytes: not a seed
    for value in (secret, f"prod:{secret}"):
        result = pinrun(here, "key", "list", env={"PINRUN_SIGNING_KEY": value})
        assert result.returncode == 2, result.stderr
        assert secret not in result.stderr
        assert secret[:12] not in result.stderr


def test_the_pusher_survives_an_error_that_is_not_pinruns(tmp_path: Path) -> None:
    """A push failing with an OSError keeps its runs and the thread: the next push sends them."""
    from pinrun.engine.publishing import BackgroundPusher

    remote = tmp_path / "remote"
    with Store.open(tmp_path / "store", create=True) as store:
        pusher = BackgroundPusher(store, str(remote), every_runs=1000, every_seconds=600)
        pusher.recorded("20261206T000000000-abcdef")  # no such run here: the push fails
        pusher.flush()
        assert pusher.errors
        assert pusher._thread.is_alive()
        assert pusher._pending == ["20261206T000000000-abcdef"]
        pusher._pending.clear()
        pusher.close()


def test_catalog_keeps_every_place_of_a_record() -> None:
    """Places named by signed entries come first; later unsigned claims come after."""
    from pinrun.remote.index import Entry, Located

    raw = b"\x07" * 32
    unsigned = Entry("index/a", "aa" * 32, {raw: Located("aa" * 32, 0, 5)}, [], "2026-01-01")
    signed = Entry("index/b", "bb" * 32, {raw: Located("bb" * 32, 0, 5, b"k" * 32)}, [],
                   "2026-01-02")
    catalog = Catalog.fold([unsigned, signed])
    assert [place.pack for place in catalog.objects[raw]] == ["bb" * 32, "aa" * 32]
    assert catalog.held(b"k" * 32) == {raw}
    assert catalog.held(b"x" * 32) == set()
