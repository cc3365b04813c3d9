"""Run leases: one holder at a time, released however the holder ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pinrun.engine import lease
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
    lease._SPARES.remove_all()  # (a taker with a spare file would not open the path)
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


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_released_lease_file_is_the_next_ones(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A released lease's file stays as this process's spare, and the next lease in the
    folder links it at its own path: no file is made (the dear part of a lease)."""
    lease._SPARES.remove_all()
    spare = f".spare-{os.getpid()}.lock"
    first = RunLease(tmp_path, "r1")
    first.release()
    assert _files(tmp_path / "leases") == [spare]
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        opened.append(str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", counting_open)
    with RunLease(tmp_path, "r2") as second:
        assert opened == []
        assert second.path.stat().st_ino == (tmp_path / "leases" / spare).stat().st_ino
        assert is_live(tmp_path, "r2")
        assert not is_live(tmp_path, "r1")
        with pytest.raises(RunBusyError):
            RunLease(tmp_path, "r2")
        # The spare is taken: another run's lease meanwhile makes a file of its own.
        with RunLease(tmp_path, "r3") as third:
            assert third.path.stat().st_ino != second.path.stat().st_ino
            assert is_live(tmp_path, "r3")
        assert not is_live(tmp_path, "r3")
        assert is_live(tmp_path, "r2")
    monkeypatch.undo()
    assert not is_live(tmp_path, "r2")
    assert _files(tmp_path / "leases") == [spare]
    lease._SPARES.remove_all()
    assert _files(tmp_path / "leases") == []


def test_a_stale_lease_file_is_taken_over_with_a_spare_at_hand(tmp_path: Path) -> None:
    """A killed holder's file at the run's path is locked as it is (never replaced by the
    spare), and released like any lease."""
    RunLease(tmp_path, "other").release()  # a spare at hand
    stale = tmp_path / "leases" / "r1.lock"
    stale.write_text("12345\n")
    with RunLease(tmp_path, "r1") as taken:
        assert taken.path.stat().st_ino == stale.stat().st_ino
        assert stale.read_text() == f"{os.getpid()}\n"
        assert is_live(tmp_path, "r1")
    assert not stale.exists()
    assert not is_live(tmp_path, "r1")
    lease._SPARES.remove_all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_never_uses_its_parents_spare(tmp_path: Path) -> None:
    """A child's lease makes its own file: the parent's spare and its lock stay the
    parent's."""
    RunLease(tmp_path, "parent").release()
    spare = tmp_path / "leases" / f".spare-{os.getpid()}.lock"
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            with RunLease(tmp_path, "child") as child:
                code = 0 if child.path.stat().st_ino != spare.stat().st_ino else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert spare.exists()
    with RunLease(tmp_path, "parent-again") as again:
        assert again.path.stat().st_ino == spare.stat().st_ino
    lease._SPARES.remove_all()


def test_a_process_leaves_no_spare_when_it_exits(tmp_path: Path) -> None:
    """The spare is deleted at exit."""
    import subprocess
    import sys

    script = ("import sys; from pathlib import Path; from pinrun.engine.lease import RunLease;"
              "RunLease(Path(sys.argv[1]), 'r1').release(); RunLease(Path(sys.argv[1]), 'r2')"
              ".release()")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    assert _files(tmp_path / "leases") == []


def test_a_file_system_without_hard_links_makes_a_file_per_lease(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a hard link is refused, a lease makes its file as without spares, and none
    is kept there afterwards."""
    lease._SPARES.remove_all()

    def no_links(*args: object, **kwargs: object) -> None:
        raise PermissionError("no hard links here")

    RunLease(tmp_path, "r1").release()
    monkeypatch.setattr(os, "link", no_links)
    with RunLease(tmp_path, "r2"):
        assert is_live(tmp_path, "r2")
    assert _files(tmp_path / "leases") == []
    with RunLease(tmp_path, "r3"):
        assert is_live(tmp_path, "r3")
    assert not is_live(tmp_path, "r3")
    assert _files(tmp_path / "leases") == []
    lease._SPARES._no_links.clear()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_releasing_the_parents_lease_leaves_its_lock(tmp_path: Path) -> None:
    """A child that releases a lease it inherited (its copy of the parent's object) only
    closes its descriptor: the parent's lock on the file stays."""
    import fcntl

    RunLease(tmp_path, "first").release()
    held = RunLease(tmp_path, "run")  # linked from the spare
    spare = tmp_path / "leases" / f".spare-{os.getpid()}.lock"
    assert held.path.stat().st_ino == spare.stat().st_ino
    pid = os.fork()
    if pid == 0:  # the child
        try:
            held.release()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    probe = os.open(spare, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    held.release()
    lease._SPARES.remove_all()
