"""Naming remotes, and the errors a user meets on the way."""

from __future__ import annotations

from pathlib import Path

from tests.remote.conftest import ok, pinrun
from tests.remote.scenario import as_json, empty_machine


def test_remote_add_list_remove(tmp_path: Path) -> None:
    """Remotes are named, listed with the default marked, and forgotten; no secret is kept."""
    here = empty_machine(tmp_path / "m")
    ok(pinrun(here, "remote", "add", "shared", str(tmp_path / "disk")))
    ok(pinrun(here, "remote", "add", "prod", "s3://acme-runs/pricing/", "--region", "eu-west-1",
              "--endpoint-url", "https://s3.example.test", "--default"))
    listed = as_json(ok(pinrun(here, "remote", "list", "--json")))
    assert [(r["name"], r["url"], r["default"]) for r in listed] == [
        ("prod", "s3://acme-runs/pricing", True),
        ("shared", (tmp_path / "disk").resolve().as_uri(), False)]
    assert "* prod" in ok(pinrun(here, "remote", "list"))
    again = pinrun(here, "remote", "add", "prod", "s3://other")
    assert again.returncode == 2
    assert "exists already" in again.stderr
    ok(pinrun(here, "remote", "remove", "prod"))
    assert [r["name"] for r in as_json(ok(pinrun(here, "remote", "list", "--json")))] == [
        "shared"]
    assert "AWS" not in (here / ".pinrun" / "config.json").read_text()


def test_bad_urls_names_and_selections_are_one_line_errors(tmp_path: Path) -> None:
    """Each mistake is exit 2 with a sentence saying what to do, never a traceback."""
    here = empty_machine(tmp_path / "m")
    cases = [
        (["remote", "add", "x", "ftp://host/runs"], "s3://BUCKET"),
        (["remote", "add", "x", "s3://No_Such"], "bucket name"),
        (["remote", "add", "../x", "s3://bucket"], "not a remote name"),
        (["push", "--remote", str(tmp_path / "r")], "say which runs"),
        (["pull", "--remote", "nosuch", "--all"], "no remote named 'nosuch'"),
        (["push", "--all"], "no default remote"),
        (["key", "trust", "prod:not-base64"], "not a public key"),
        (["remote", "add", "y", str(tmp_path / "r"), "--allow-http"], "for s3:// remotes"),
    ]
    for args, words in cases:
        result = pinrun(here, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_an_unreachable_s3_endpoint_is_exit_3_naming_it(tmp_path: Path) -> None:
    """A server that is not there: one line naming the remote and endpoint, exit 3."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    here = empty_machine(tmp_path / "m")
    result = pinrun(here, "pull", "--remote", "s3://bucket/x", "--all",
                    env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "PINRUN_ALLOW_HTTP": "1",
                         "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, timeout=180)
    assert result.returncode == 3, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_pulling_from_where_nothing_was_pushed_says_so(tmp_path: Path) -> None:
    """A URL with no pinrun remote behind it is exit 2 naming it; so is pushing no runs."""
    here = empty_machine(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    result = pinrun(here, "pull", "--remote", str(tmp_path / "empty"), "--all")
    assert result.returncode == 2
    assert "holds no pinrun runs" in result.stderr
    nothing = pinrun(here, "push", "--remote", str(tmp_path / "empty"), "--all")
    assert nothing.returncode == 2
    assert "no run in this store matches" in nothing.stderr
    assert not (tmp_path / "empty" / "pinrun-remote.json").exists()  # nothing was written
