"""A pool of worker processes: how they start and how they end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pinrun.world.processes import worker_pool
from tests.helpers import SRC
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


_FLOWS = '''
import pinrun

@pinrun.step
def double(x):
    return {"y": x * 2}

flow = pinrun.Flow("demo", [double])
'''

#: A user's script that records and verifies at top level, with no main guard.
_SCRIPT = '''
import pinrun
from pinrun.verifier.verify import verify_runs
from app.flows import flow

with open("top-level-ran", "a") as marks:
    marks.write("ran\\n")
with pinrun.open_store(".pinrun", create=True) as store:
    runs = [pinrun.record(flow, {"x": x}, store=store).id for x in (1, 2)]
    verdicts = [result.verdict for result in
                verify_runs(store, runs, code="pinned", guards="warn", jobs=2)]
    print(" ".join(verdicts), len(list(store.iter_refs("runs/"))))
'''


def test_a_script_without_a_main_guard_runs_once_when_it_verifies_with_workers(
        tmp_path: Path) -> None:
    """The pool's processes are not told of the script as their main module: its top-level
    code (which records runs) does not run again in each worker, which then failed."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "flows.py").write_text(_FLOWS)
    (tmp_path / "script.py").write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED="0")
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.split() == ["reproduced", "reproduced", "2"]
    assert (tmp_path / "top-level-ran").read_text() == "ran\n"


_TRACKER_FIRST = '''
import os
from multiprocessing import resource_tracker
from pinrun.world.processes import start_pool_support, worker_pool
from tests.world import pool_targets

tracker = resource_tracker._resource_tracker
assert tracker._pid is None, "a fresh interpreter has no tracker yet"
start_pool_support()
started = tracker._pid
os.kill(started, 0)  # it runs
with worker_pool(2, None, pool_targets.nothing, ()) as pool:
    assert pool.submit(os.getpid).result() != os.getpid()
print("same" if tracker._pid == started else "another")
'''


def test_the_pools_tracker_can_start_before_the_first_pool() -> None:
    """start_pool_support starts multiprocessing's resource tracker at once (what
    `pinrun verify` calls before its selection), and the pools started later use that
    one: no second tracker."""
    done = subprocess.run([sys.executable, "-c", _TRACKER_FIRST], capture_output=True,
                          text=True, check=False, cwd=SRC.parent,
                          env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{SRC.parent}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["same"]
