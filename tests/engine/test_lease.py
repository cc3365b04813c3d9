"""Run leases: one holder at a time, released however the holder ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pinrun.engine.lease import RunLease, is_live
from pinrun.errors import RunBusyError


def test_one_holder_at_a_time(tmp_path: Path) -> None:
    """A second lease on the same run is refused until the first is released."""
    first = RunLease(tmp_path, "r1")
    assert is_live(tmp_path, "r1")
    with pytest.raises(RunBusyError, match="r1"):
        RunLease(tmp_path, "r1")
    first.release()
    assert not is_live(tmp_path, "r1")
    with RunLease(tmp_path, "r1"):
        assert is_live(tmp_path, "r1")
    assert not (tmp_path / "leases" / "r1.lock").exists()


def test_a_lease_taken_on_a_file_being_released_is_taken_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A taker that opened the old file just before its release ends up on the new one."""
    old = RunLease(tmp_path, "r2")
    stale = os.open(old.path, os.O_RDWR)  # opened before the holder lets go
    old.release()
    real_open = os.open
    calls: list[str] = []

    def racing_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        calls.append(str(path))
        return stale if len(calls) == 1 else real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", racing_open)
    taker = RunLease(tmp_path, "r2")
    monkeypatch.undo()
    assert len(calls) == 2  # the stale file was dropped and the path opened again
    assert is_live(tmp_path, "r2")
    with pytest.raises(RunBusyError):
        RunLease(tmp_path, "r2")
    taker.release()
