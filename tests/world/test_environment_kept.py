"""environment_put_back: after the block, every variable as it was (set, changed,
removed, added), also through the guards' stand-in, and nothing written when nothing
changed."""

from __future__ import annotations

import os

import pytest

from pinrun.world.environment_kept import environment_put_back
from pinrun.world.guards import Guards


def test_every_kind_of_change_is_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINRUN_KEPT_A", "a")
    monkeypatch.setenv("PINRUN_KEPT_B", "b")
    monkeypatch.delenv("PINRUN_KEPT_C", raising=False)
    before = dict(os.environ)
    with environment_put_back():
        os.environ["PINRUN_KEPT_A"] = "changed \u00e9"
        del os.environ["PINRUN_KEPT_B"]
        os.environ["PINRUN_KEPT_C"] = "added"
    assert dict(os.environ) == before
    # The process's own environment too (what a child process or C code reads).
    assert os.getenv("PINRUN_KEPT_C") is None
    assert os.environb.get(b"PINRUN_KEPT_A") == b"a"


def test_changes_through_the_guards_stand_in_are_put_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINRUN_KEPT_A", "a")
    before = dict(os.environ)
    with Guards([], "warn"), environment_put_back():
        os.environ["PINRUN_KEPT_A"] = "through the stand-in"
        os.environ["PINRUN_KEPT_D"] = "new"
    assert dict(os.environ) == before


def test_an_untouched_environment_is_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing changed: no variable is set again (putenv is never called)."""
    calls: list[str] = []
    monkeypatch.setattr(os, "putenv", lambda key, value: calls.append(key))
    monkeypatch.setattr(os, "unsetenv", calls.append)
    with environment_put_back():
        _ = os.environ.get("HOME")
    assert calls == []


def test_an_error_in_the_block_still_puts_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINRUN_KEPT_E", raising=False)
    with pytest.raises(RuntimeError), environment_put_back():
        os.environ["PINRUN_KEPT_E"] = "set"
        raise RuntimeError("the step failed")
    assert "PINRUN_KEPT_E" not in os.environ
