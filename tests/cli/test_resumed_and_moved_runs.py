"""Issue 9, items 5 and 7, as a user meets them: a run fixed and resumed replays with the
code each attempt ran, and a flow moved to another module keeps its recorded runs.

Every command runs as ``python -m pinrun`` in a throwaway project (package ``orders``)
whose modules the test process never imports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SRC

ORDERS = """
import pinrun


@pinrun.step
def load(n: int) -> dict:
    return {"items": list(range(n))}


@pinrun.step
def price(items: list) -> dict:
    total = sum(items)
    raise RuntimeError("the bug")
    return {"total": total}


flow = pinrun.Flow("orders", [load, price])
"""

SLOW = """
import os
import time

import pinrun

HERE = os.path.dirname(__file__)


@pinrun.step
def load(n: int) -> dict:
    return {"items": list(range(n))}


@pinrun.step
def wait(items: list) -> dict:
    seconds = 30
    with open(os.path.join(HERE, f"sleeping-{seconds}"), "w"):  # the test sees it start
        pass
    time.sleep(seconds)
    return {"total": sum(items)}


flow = pinrun.Flow("slow", [load, wait])
"""


def _project(root: Path, modules: dict[str, str]) -> Path:
    """A project folder with package ``orders`` holding ``modules`` and a store."""
    (root / "orders").mkdir(parents=True)
    (root / "orders" / "__init__.py").write_text("")
    for name, source in modules.items():
        (root / "orders" / f"{name}.py").write_text(textwrap.dedent(source))
    _cli(root, "init")
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = str(SRC)  # the project imports from the working folder, as a user's
    return env


def _cli(root: Path, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun ARGS`` in the project folder; checks the exit code."""
    result = subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=root, env=_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    if code is not None:
        assert result.returncode == code, (result.stdout, result.stderr)
    return result


def _json(root: Path, *args: str, code: int = 0) -> Any:
    return json.loads(_cli(root, *args, "--json", code=code).stdout)


def _only_run(root: Path) -> str:
    runs = _json(root, "runs")
    assert len(runs) == 1, runs
    return str(runs[0]["id"])


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_fixed_and_resumed_run_replays_with_each_attempts_code(tmp_path: Path) -> None:
    """A run fixed on disk and resumed reproduces with pinned and with workdir code, and
    the replay names the resumed step's code as the one its second attempt ran."""
    root = _project(tmp_path / "p", {"flow": ORDERS})
    _cli(root, "run", "orders.flow:flow", "--set", "n=4", code=1)
    run_id = _only_run(root)
    _edit(root / "orders" / "flow.py", '    raise RuntimeError("the bug")\n', "")
    _cli(root, "resume", run_id)

    report = _json(root, "replay", run_id)
    assert report["verdict"] == "reproduced", report["explanation"]
    steps = {step["name"]: step for step in report["steps"]}
    shown = _json(root, "show", run_id)["steps"]
    assert (steps["price"]["attempt"], steps["price"]["resumed_code"]) == (2, True)
    assert steps["price"]["code"] == shown[-1]["code"] != shown[-2]["code"]
    assert steps["load"]["resumed_code"] is False
    assert [step["resumed_code"] for step in shown] == [False, False, True]
    assert "not the code it started with" in " ".join(_cli(root, "show", run_id).stdout.split())
    assert "which the run was resumed with" in " ".join(_cli(root, "replay", run_id).stdout.split())

    assert _json(root, "replay", run_id, "--code", "workdir")["verdict"] == "reproduced"
    assert "1 reproduced" in _cli(root, "verify", "--code", "pinned").stdout


def test_workdir_drift_of_a_resumed_step_is_against_the_code_it_resumed_with(
        tmp_path: Path) -> None:
    """After a resume, a later change shows as code drift against the resumed attempt's
    code (its diff holds the change, not the bug fixed before the resume)."""
    root = _project(tmp_path / "p", {"flow": ORDERS})
    _cli(root, "run", "orders.flow:flow", "--set", "n=4", code=1)
    run_id = _only_run(root)
    _edit(root / "orders" / "flow.py", '    raise RuntimeError("the bug")\n', "")
    _cli(root, "resume", run_id)
    _edit(root / "orders" / "flow.py", "total = sum(items)", "total = sum(items) + 1")

    report = _json(root, "replay", run_id, "--code", "workdir", code=1)
    price = next(step for step in report["steps"] if step["name"] == "price")
    drift = next(cause for cause in price["causes"] if cause["kind"] == "code drift")
    assert "+    total = sum(items) + 1" in drift["detail"]
    assert "the bug" not in drift["detail"]


def test_steps_resumed_with_the_same_code_share_one_import_of_it(tmp_path: Path) -> None:
    """Two steps whose attempts ran the same resumed sources import them once per replay,
    beside the run's own pinned code: the module runs twice, not three times."""
    counted = ORDERS.replace("import pinrun\n", """import os

import pinrun

with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as log:
    log.write("imported\\n")
""").replace('flow = pinrun.Flow("orders", [load, price])', """@pinrun.step
def ship(total: int) -> dict:
    return {"shipped": total}


flow = pinrun.Flow("orders", [load, price, ship])""")
    root = _project(tmp_path / "p", {"flow": counted})
    _cli(root, "run", "orders.flow:flow", "--set", "n=4", code=1)
    run_id = _only_run(root)
    _edit(root / "orders" / "flow.py", '    raise RuntimeError("the bug")\n', "")
    _cli(root, "resume", run_id)
    log = root / "orders" / "imports.log"
    log.unlink()

    report = _json(root, "replay", run_id)
    assert report["verdict"] == "reproduced", report["explanation"]
    assert [step["resumed_code"] for step in report["steps"]] == [False, True, True]
    assert log.read_text().splitlines() == ["imported", "imported"]


@pytest.mark.slow
def test_run_killed_in_a_sleep_edited_and_resumed_replays_the_edited_code(
        tmp_path: Path) -> None:
    """A run killed inside sleep(30), edited to sleep(0) and resumed replays with the code
    it was resumed with: the 30-second version never runs again."""
    root = _project(tmp_path / "p", {"flow": SLOW})
    started = root / "orders" / "sleeping-30"
    child = subprocess.Popen([sys.executable, "-m", "pinrun", "run", "orders.flow:flow",
                              "--set", "n=3"], cwd=root, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert child.poll() is None, "the run ended before its step started"
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    run_id = _only_run(root)
    _edit(root / "orders" / "flow.py", "seconds = 30", "seconds = 0")
    _cli(root, "resume", run_id)
    started.unlink()
    (root / "orders" / "sleeping-0").unlink()

    report = _json(root, "replay", run_id)
    assert report["verdict"] == "reproduced", report["explanation"]
    wait = next(step for step in report["steps"] if step["name"] == "wait")
    assert wait["resumed_code"] is True
    assert wait["code"] == _json(root, "show", run_id)["steps"][-1]["code"]
    assert not started.exists()  # the old version never ran
    assert (root / "orders" / "sleeping-0").exists()  # the resumed one did


@pytest.mark.slow
def test_moved_flow_keeps_its_runs_with_entry(tmp_path: Path) -> None:
    """After orders/flow.py moves to orders/pipeline.py, replay, verify and accept say
    how to name the new place, and with --entry they replay and accept the old runs."""
    fixed = ORDERS.replace('    raise RuntimeError("the bug")\n', "")
    root = _project(tmp_path / "p", {"flow": fixed})
    _cli(root, "run", "orders.flow:flow", "--set", "n=4")
    run_id = _only_run(root)
    (root / "orders" / "flow.py").rename(root / "orders" / "pipeline.py")
    expected = (f"the flow of run {run_id} was recorded at orders.flow:flow, which no longer "
                "imports (No module named 'orders.flow'); if it moved, say where it lives "
                "now: --entry MODULE:FLOW")

    report = _json(root, "replay", run_id, "--code", "workdir", code=1)
    assert (report["verdict"], report["error"]) == ("error", expected)
    failed = _cli(root, "verify", code=1)
    assert "--entry MODULE:FLOW" in " ".join(failed.stdout.split())
    assert _json(root, "replay", run_id)["verdict"] == "reproduced"  # pinned: the old module

    moved = _json(root, "replay", run_id, "--code", "workdir", "--entry",
                  "orders.pipeline:flow")
    assert moved["verdict"] == "reproduced", moved["explanation"]
    assert _json(root, "replay", run_id, "--code", "workdir", "--entry",
                 "orders/pipeline.py:flow")["verdict"] == "reproduced"
    assert "1 reproduced" in _cli(root, "verify", "--entry", "orders.pipeline:flow").stdout

    refused = _cli(root, "accept", run_id, code=2)
    assert expected in " ".join(refused.stderr.split())
    accepted = _cli(root, "accept", run_id, "--entry", "orders.pipeline:flow").stdout
    new_id = accepted.split(" -> ")[1].split()[0]
    assert _json(root, "show", new_id)["entry"] == "orders.pipeline:flow"
    assert "1 reproduced" in _cli(root, "verify").stdout  # the new baseline, at its new place


def test_wrong_entry_is_refused_with_the_steps_that_differ(tmp_path: Path) -> None:
    """An --entry whose flow has other steps, names no selected run's flow, or comes with
    pinned code is bad input (exit 2), saying what is wrong."""
    fixed = ORDERS.replace('    raise RuntimeError("the bug")\n', "")
    other = """
        import pinrun


        @pinrun.step
        def load(n: int) -> dict:
            return {"items": [n]}


        @pinrun.step
        def ship(items: list) -> dict:
            return {"shipped": True}


        flow = pinrun.Flow("orders", [load, ship])
        other = pinrun.Flow("other", [load, ship])
    """
    root = _project(tmp_path / "p", {"flow": fixed, "other": other})
    _cli(root, "run", "orders.flow:flow", "--set", "n=4")
    run_id = _only_run(root)

    wrong = _cli(root, "replay", run_id, "--code", "workdir", "--entry", "orders.other:flow",
                 code=2).stderr
    assert "lacks step(s) 'price'" in wrong
    assert "has step(s) 'ship' the run did not record" in " ".join(wrong.split())
    assert "lacks step(s) 'price'" in " ".join(_cli(
        root, "accept", run_id, "--entry", "orders.other:flow", code=2).stderr.split())
    result = _cli(root, "verify", "--json", "-", "--entry", "orders.other:flow", code=1)
    assert "lacks step(s) 'price'" in json.loads(result.stdout)["results"][0]["error"]

    unused = _cli(root, "verify", "--entry", "orders.other:other", code=2).stderr
    assert "matches no selected run" in " ".join(unused.split())
    pinned = _cli(root, "replay", run_id, "--entry", "orders.flow:flow", code=2).stderr
    assert "--code workdir" in " ".join(pinned.split())
