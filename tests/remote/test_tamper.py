"""A remote's bytes are someone else's: tampered, damaged or crafted, nothing is written."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from pinrun.artifacts.digest import Digest
from pinrun.errors import RemoteError
from pinrun.remote.index import decode_entry, encode_entry
from pinrun.remote.keys import SigningKey
from tests.remote.conftest import BUCKET, S3Server, ok, pinrun
from tests.remote.scenario import as_json, empty_machine, production


def _nothing_written(laptop: Path) -> None:
    runs: object = as_json(ok(pinrun(laptop, "runs", "--json")))
    assert runs == [], runs
    stats = as_json(ok(pinrun(laptop, "stats", "--json")))
    assert sum(stats["objects"].values()) == 0, stats


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.slow
def test_a_pack_tampered_in_the_bucket_is_refused_on_pull(tmp_path: Path,
                                                          s3_server: S3Server) -> None:
    """One bit changed in a pack on S3: pull exits 3 naming the pack, and writes nothing."""
    import obstore
    from obstore.store import S3Store

    url = s3_server.url(f"tamper-{tmp_path.name[:20].lower()}")
    prod, _ids = production(tmp_path / "prod", 2)
    ok(pinrun(prod, "push", "--remote", url, "--all", env=s3_server.env))
    bucket = S3Store(BUCKET, prefix=url.split("/", 3)[3], endpoint=s3_server.endpoint,
                     client_options={"allow_http": True}, region="us-east-1",
                     access_key_id=s3_server.env["AWS_ACCESS_KEY_ID"],
                     secret_access_key=s3_server.env["AWS_SECRET_ACCESS_KEY"])
    [pack] = [m["path"] for chunk in obstore.list(bucket, "packs") for m in chunk]
    data = bytes(obstore.get(bucket, pack).bytes())
    obstore.put(bucket, pack, _flip(data, len(data) - 60))  # inside the last record
    laptop = empty_machine(tmp_path / "laptop")
    pulled = pinrun(laptop, "pull", "--remote", url, "--all", env=s3_server.env)
    assert pulled.returncode == 3, pulled.stderr
    assert pack in pulled.stderr
    assert "tampered" in pulled.stderr
    assert "Traceback" not in pulled.stderr
    _nothing_written(laptop)


@pytest.mark.slow
def test_a_damaged_index_entry_is_refused_with_nothing_written(tmp_path: Path) -> None:
    """An index entry whose bytes changed no longer matches its name: exit 3, no runs."""
    remote = tmp_path / "remote"
    prod, _ = production(tmp_path / "prod", 1)
    ok(pinrun(prod, "push", "--remote", str(remote), "--all"))
    [entry] = (remote / "index").iterdir()
    entry.write_bytes(_flip(entry.read_bytes(), 20))
    laptop = empty_machine(tmp_path / "laptop")
    pulled = pinrun(laptop, "pull", "--remote", str(remote), "--all")
    assert pulled.returncode == 3, pulled.stderr
    assert "damaged" in pulled.stderr
    _nothing_written(laptop)


def _crafted(outer: dict[str, Any], body: dict[str, Any]) -> tuple[str, bytes]:
    import blake3

    outer = {**outer, "body": orjson.dumps(body).decode()}
    data = zstandard.ZstdCompressor().compress(orjson.dumps(outer))
    return f"index/{blake3.blake3(data).hexdigest()}", data


def _body(run_id: str = "20261206T120000000-abcdef", **changes: object) -> dict[str, Any]:
    run: dict[str, Any] = {"id": run_id, "digest": "ab" * 32, "flow": "orders",
                           "status": "succeeded", "replaces": None, "tags": [],
                           "signature": None}
    body = {"format": 1, "pack": "cd" * 32, "objects": "", "pushed_at": "2026-12-06T00:00:00+00:00",
            "runs": [run]}
    body.update(changes)
    return body


@pytest.mark.parametrize(("body", "words"), [
    (_body("../../etc/passwd"), "valid run id"),
    (_body(objects="not base64!"), "base64"),
    (_body(objects=base64.b64encode(b"x" * 43).decode()), "table of objects"),
    (_body(pack="../x"), "not a digest"),
    ({**_body(), "runs": [{**_body()["runs"][0], "tags": ["a b"]}]}, "ref name"),
    ({**_body(), "runs": [{**_body()["runs"][0], "status": "\x1b[2J"}]}, "malformed"),
])
def test_crafted_index_entries_are_refused_by_name(body: dict[str, Any], words: str) -> None:
    """Bad run ids, tables, pack names, tags and statuses are errors, never paths or text."""
    name, data = _crafted({"format": 1, "signer": None, "signature": None}, body)
    with pytest.raises(RemoteError, match=words):
        decode_entry(name, data, "test://remote")


def test_a_forged_signature_is_refused() -> None:
    """An entry signed by one key but claiming another's name and key is refused."""
    real, forger = SigningKey("prod", b"\x01" * 32), SigningKey("prod", b"\x02" * 32)
    from pinrun.remote.index import RemoteRun

    run = RemoteRun("20261206T120000000-abcdef", Digest(b"\x03" * 32), "orders",
                    "succeeded")
    name, data = encode_entry(None, [], [run], "2026-12-06T00:00:00+00:00", forger)
    outer = orjson.loads(zstandard.ZstdDecompressor().decompress(data))
    outer["signer"] = real.public.text
    name, data = _crafted(outer, orjson.loads(outer["body"]))
    with pytest.raises(RemoteError, match="signature"):
        decode_entry(name, data, "test://remote")
    # A run's own signature is checked too, even when the entry's is right.
    body = orjson.loads(orjson.loads(zstandard.ZstdDecompressor().decompress(
        encode_entry(None, [], [run], "2026-12-06T00:00:00+00:00", real)[1]))["body"])
    body["runs"][0]["digest"] = "04" * 32
    text = orjson.dumps(body)
    from pinrun.remote.keys import index_message

    outer = {"format": 1, "body": text.decode(), "signer": real.public.text,
             "signature": base64.b64encode(real.sign(index_message(text))).decode()}
    import blake3

    data = zstandard.ZstdCompressor().compress(orjson.dumps(outer))
    # It is found out when the run is pulled (a catalog read checks entries, not runs).
    decoded = decode_entry(f"index/{blake3.blake3(data).hexdigest()}", data, "test://remote")
    assert not decoded.runs[0].signature_holds()
    assert run.signature_holds()


def test_an_entry_that_inflates_without_bound_is_refused() -> None:
    """A small entry claiming to inflate past the limit is refused before it is read."""
    import blake3

    from pinrun.remote import index

    compressor = zstandard.ZstdCompressor(level=1)
    data = compressor.compress(b" " * (index.MAX_ENTRY + 10))
    with pytest.raises(RemoteError, match="inflates"):
        decode_entry(f"index/{blake3.blake3(data).hexdigest()}", data, "test://remote")


def test_a_fifo_in_a_folder_remote_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A named pipe where the remote's marker should be: an error, never a hang."""
    import os

    from pinrun.remote.client import FolderClient

    root = tmp_path / "remote"
    root.mkdir()
    os.mkfifo(root / "pinrun-remote.json")
    with pytest.raises(RemoteError, match="not a file pinrun wrote"):
        FolderClient(root).get("pinrun-remote.json")


def test_a_table_naming_a_huge_record_is_refused() -> None:
    """A pack table claiming a 4 GiB record is refused before any range is fetched."""
    import struct

    rows = struct.pack("<32sQI", b"\x05" * 32, 0, 0xFFFFFFFF)
    name, data = _crafted({"format": 1, "signer": None, "signature": None},
                          _body(objects=base64.b64encode(rows).decode()))
    with pytest.raises(RemoteError, match="larger than any"):
        decode_entry(name, data, "test://remote")


@pytest.mark.slow
def test_a_store_that_pulled_passes_fsck(tmp_path: Path) -> None:
    """What a pull writes (runs, origins, the settings and the index cache) is a sound store."""
    remote = str(tmp_path / "remote")
    prod, _ = production(tmp_path / "prod", 2)
    ok(pinrun(prod, "push", "--remote", remote, "--all"))
    laptop = empty_machine(tmp_path / "laptop")
    ok(pinrun(laptop, "remote", "add", "team", remote))
    ok(pinrun(laptop, "pull", "--all"))
    ok(pinrun(laptop, "fsck"))
    ok(pinrun(laptop, "gc"))
    assert len(as_json(ok(pinrun(laptop, "runs", "--json")))) == 2
    config = (laptop / ".pinrun" / "config.json").read_text()
    assert "team" in config
    assert "SECRET" not in config.upper()
