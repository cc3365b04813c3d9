"""Environment drift in replays and diffs, and environments recorded by an older pinrun."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from click.testing import CliRunner

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.cli.hash_seed import ensure_hash_seed
from pinrun.cli.main import cli
from pinrun.engine.records import RunRecord, load_env, load_run, run_ref
from pinrun.engine.run import record
from pinrun.flows.environment import place_state
from pinrun.verifier.causes import environment_drift
from pinrun.verifier.compare import diff_runs
from pinrun.verifier.replayer import replay
from tests.helpers import Project

FLOW = """
import pinrun


@pinrun.step
def total(n: int) -> dict:
    return {"total": n * 2}


flow = pinrun.Flow("totals", [total])
"""

OLD_KEYS = ("python", "implementation", "platform", "distributions")


def _with_env(store: Store, run: RunRecord, env: dict[str, Any], run_id: str) -> RunRecord:
    """A copy of ``run`` under ``run_id`` whose environment is ``env`` (as a bundle could)."""
    stored = {key: value for key, value in env.items()  # absent, not null (as written)
              if value is not None or key == "hash_seed"}
    with store.batch() as batch:
        digest = batch.put(Kind.ENV, codec.encode(stored, root="environment"))
        copy = dataclasses.replace(run, id=run_id, env=digest, digest=None)
        batch.set_ref(run_ref(run_id), batch.put(Kind.RUN, copy.encode()))
    return load_run(store, run_id)


@pytest.fixture
def runs(project: Project, project_store: Store) -> tuple[RunRecord, RunRecord]:
    """A run recorded now, and the same run as an older pinrun recorded it (no time zone,
    locale, machine, project, closure; a null hash seed)."""
    project.write("totals", FLOW)
    new = record(project.load("totals"), {"n": 2}, store=project_store)
    env = load_env(project_store, new)
    old_env = {**{key: env[key] for key in OLD_KEYS}, "hash_seed": None,
               "distributions": {name: version for name, version in env["distributions"].items()
                                 if name == "pinrun"}}
    return new, _with_env(project_store, new, old_env, "20200101T000000000-0a0b0c")


def test_an_old_environment_loads_replays_and_shows(project_store: Store,
                                                    runs: tuple[RunRecord, RunRecord]) -> None:
    """An environment from before loads (new fields absent), shows, replays, and its
    missing fields are no drift."""
    new, old = runs
    env = load_env(project_store, old)
    assert env["hash_seed"] is None
    assert env["timezone"] is None
    assert env["project"] is None
    assert environment_drift(project_store, old) == []
    assert replay(old.id, store=project_store).reproduced
    shown = CliRunner().invoke(cli, ["--store", str(project_store.path), "show", old.id],
                               catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "hash seed unknown" in shown.output
    assert "TZ" not in shown.output
    assert diff_runs(project_store, old.id, new.id).environment == []
    assert diff_runs(project_store, new.id, old.id).environment == []


def test_drift_and_diff_list_the_same_changes(project_store: Store,
                                              runs: tuple[RunRecord, RunRecord]) -> None:
    """One list of changes for replay causes and for `pinrun diff`: the time zone, a locale
    category, the hash seed, a distribution."""
    new, _ = runs
    env = load_env(project_store, new)
    moved = {**env, "timezone": "Antarctica/Troll", "hash_seed": "4242",
             "locale": {**env["locale"], "LC_TIME": "xx_XX.UTF-8"},
             "distributions": {**env["distributions"], "pinrun": "0.0.1"}}
    other = _with_env(project_store, new, moved, "20200101T000000000-0d0e0f")
    expected = [f"TZ: Antarctica/Troll -> {env['timezone']}",
                f"hash seed: 4242 -> {env['hash_seed']}",
                f"locale LC_TIME: xx_XX.UTF-8 -> {env['locale']['LC_TIME']}",
                f"pinrun: 0.0.1 -> {env['distributions']['pinrun']}"]
    causes = environment_drift(project_store, other)
    assert [c.message for c in causes if c.kind == "environment drift"] == expected
    assert diff_runs(project_store, other.id, new.id).environment == expected


def test_a_run_recorded_with_a_random_seed_is_named_as_such(
        project_store: Store, runs: tuple[RunRecord, RunRecord],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its drift names the random seed as a cause, and `pinrun replay` does not restart
    itself under PYTHONHASHSEED=random for it."""
    new, _ = runs
    random = _with_env(project_store, new, {**load_env(project_store, new),
                                            "hash_seed": "random"},
                       "20200101T000000000-0a0a0a")
    (cause,) = [c for c in environment_drift(project_store, random) if c.kind == "hash seed"]
    assert "random when the run was recorded" in cause.message
    assert "PYTHONHASHSEED=0" in cause.message

    def refuse(*args: object) -> None:
        raise AssertionError(f"re-executed: {args}")

    monkeypatch.setattr(os, "execv", refuse)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    monkeypatch.delenv("PINRUN_HASH_SEED_SET", raising=False)
    for command in ("replay", "resume"):
        ensure_hash_seed(["--store", str(project_store.path), command, random.id])
    assert "PYTHONHASHSEED" not in os.environ


HOSTILE = "\x1b]0;pwned\x07\x1b[2Jhost"


def test_a_hostile_place_is_shown_escaped_and_named_as_drift(
        project_store: Store, runs: tuple[RunRecord, RunRecord]) -> None:
    """A crafted record's host name and home (escape sequences, within bounds) reach
    `show` and the drift causes escaped, never as control characters."""
    new, _ = runs
    env = {**load_env(project_store, new), "hostname": HOSTILE, "home": f"/home/{HOSTILE}",
           "umask": "0000"}
    crafted = _with_env(project_store, new, env, "20200101T000000000-0c0c0c")
    shown = CliRunner().invoke(cli, ["--store", str(project_store.path), "show", crafted.id],
                               catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output
    assert "\x07" not in shown.output
    assert "place: host \\x1b]0;pwned\\x07\\x1b[2Jhost, home" in shown.output
    assert "umask 0000" in shown.output
    drift = [c.message for c in environment_drift(project_store, crafted)
             if c.kind == "environment drift"]
    here = place_state()  # this process's place, as the replay here reads it
    assert f"hostname: {HOSTILE} -> {here['hostname']}" in drift
    assert f"umask: 0000 -> {here['umask']}" in drift


@pytest.mark.parametrize(("field", "value"), [("hostname", "h" * 300), ("home", "/" * 257),
                                              ("cwd", ["/srv"]), ("umask", "0o77")])
def test_an_out_of_bounds_place_is_a_damaged_record(
        project_store: Store, runs: tuple[RunRecord, RunRecord], field: str,
        value: Any) -> None:
    """A crafted place too long or of the wrong type: `show` and `replay` say in one line
    that the environment object is damaged (exit 3), with no traceback."""
    new, _ = runs
    crafted = _with_env(project_store, new, {**load_env(project_store, new), field: value},
                        "20200101T000000000-0d0d0d")
    for command in ("show", "replay"):
        result = CliRunner().invoke(cli, ["--store", str(project_store.path), command,
                                          crafted.id])
        assert result.exit_code == 3, (command, result.output)
        assert field in result.output, result.output
        assert "Traceback" not in result.output
