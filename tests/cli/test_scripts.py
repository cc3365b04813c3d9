"""A flow defined in a script run as ``python script.py`` is pinned under its path.

The README's own example is such a script: it records from its
``if __name__ == "__main__":`` block. Replay and verify load the script
under its place in the project (never as ``__main__``), so that block never
runs again: nothing is recorded, written or called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pinrun import open_store
from pinrun.artifacts.digest import Kind
from pinrun.engine.records import load_run
from pinrun.flows.loader import pinned_sources
from tests.helpers import SRC

SCRIPT = """
    import pathlib

    import pinrun

    PRICES = {"A-1": 12.5, "B-2": 4.0}


    def fetch_lines(order_id):
        return [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 3}]


    @pinrun.step
    def load_order(order_id: str) -> dict:
        return {"lines": fetch_lines(order_id)}


    @pinrun.step
    def price_order(lines: list) -> dict:
        return {"total": sum(PRICES[line["sku"]] * line["qty"] for line in lines)}


    flow = pinrun.Flow("nightly", [load_order, price_order])

    if __name__ == "__main__":
        with open("main-ran.txt", "a") as marker:  # what must never happen on replay
            marker.write("ran\\n")
        with pinrun.open_store(create=True) as store:
            run = pinrun.record(flow, {"order_id": "A-1001"}, store=store)
        print(run.id)
"""


def _pinrun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PINRUN_STORE",)}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _record(project: Path, script: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PINRUN_STORE",)}
    env["PYTHONPATH"] = str(SRC)
    result = subprocess.run([sys.executable, script], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize(("script", "identity", "entry"), [
    ("nightly.py", "nightly", "nightly:flow"),
    ("jobs/nightly-run.py", "jobs.nightly_run", "jobs/nightly-run.py:flow"),
])
def test_a_script_replays_without_running_its_main_block(
        tmp_path: Path, script: str, identity: str, entry: str) -> None:
    """Recorded by `python SCRIPT`, the run pins the script under its path; pinned and
    workdir replay and verify reproduce, and the main block never runs again."""
    path = tmp_path / script
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(SCRIPT))
    run_id = _record(tmp_path, script)
    marker = tmp_path / "main-ran.txt"
    assert marker.read_text() == "ran\n"

    with open_store(tmp_path / ".pinrun") as store:
        run = load_run(store, run_id)
        assert run.entry == entry
        assert run.flow_pin is not None
        assert set(pinned_sources(store, run.flow_pin)) == {identity}
        step = store.get_object(run.steps[0].code, Kind.STEP)  # type: ignore[arg-type]
        assert step["module"] == identity

    for code in ("pinned", "workdir"):
        replayed = _pinrun(tmp_path, "replay", run_id, "--code", code, "--json")
        assert replayed.returncode == 0, (code, replayed.stdout, replayed.stderr)
        assert json.loads(replayed.stdout)["verdict"] == "reproduced"
    verified = _pinrun(tmp_path, "verify")
    assert verified.returncode == 0, (verified.stdout, verified.stderr)
    listed = json.loads(_pinrun(tmp_path, "runs", "--json").stdout)
    assert [item["id"] for item in listed] == [run_id]  # replay recorded nothing new
    assert marker.read_text() == "ran\n"  # and the main block never ran again
