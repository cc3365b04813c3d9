"""A pool of worker processes: how its processes end."""

from __future__ import annotations

from pathlib import Path

from pinrun.world.processes import worker_pool
from tests.world import pool_targets


def test_a_pool_process_ends_without_tearing_its_interpreter_down(tmp_path: Path) -> None:
    """A pool's process ends once the pool lets it go, without freeing what it holds (the
    pool waits for that end); the exit hooks its tasks registered still run."""
    with worker_pool(1, None, pool_targets.nothing, ()) as pool:
        assert pool.submit(pool_targets.leave_behind, str(tmp_path)).result() == "left"
    assert (tmp_path / "hook").read_text() == "ran"
    assert not (tmp_path / "freed").exists()


def test_a_pool_process_whose_stdout_a_task_closed_still_ends_at_once(tmp_path: Path) -> None:
    """Flushing a closed stdout fails: the process still ends without its teardown."""
    with worker_pool(1, None, pool_targets.nothing, ()) as pool:
        assert pool.submit(pool_targets.close_stdout, str(tmp_path)).result() == "closed"
    assert (tmp_path / "hook").read_text() == "ran"
    assert not (tmp_path / "freed").exists()


def test_a_child_whose_stdout_its_call_closed_still_ends_at_once(tmp_path: Path) -> None:
    """call_in_child's child ends as a pool's process does: with its stdout closed, the
    flush fails and it still ends without running the project's exit hooks."""
    from pinrun.world.processes import call_in_child

    result = call_in_child("tests.world.pool_targets:close_stdout_and_hook", str(tmp_path))
    assert result.value == "closed"
    assert not (tmp_path / "hook").exists()
