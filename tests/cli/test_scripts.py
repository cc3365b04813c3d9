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

#: Module-level values a step reads: a frozen dataclass and an enum member of the script.
VALUES = """
import dataclasses
import enum


@dataclasses.dataclass(frozen=True)
class Config:
    scale: int = 1


class Currency(enum.Enum):
    USD = "USD"


CONFIG = Config()
HOME = (Currency.USD, CONFIG)
"""


def _pinrun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PINRUN_STORE",)}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _record(project: Path, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PINRUN_STORE",)}
    env["PYTHONPATH"] = str(SRC)
    result = subprocess.run([sys.executable, *argv], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize(("script", "argv", "pinned", "entry"), [
    ("nightly.py", ["nightly.py"], {"nightly"}, "nightly.py:flow"),
    ("jobs/nightly-run.py", ["jobs/nightly-run.py"], {"jobs.nightly_run"},
     "jobs/nightly-run.py:flow"),
    ("pkg/job.py", ["-m", "pkg.job"], {"pkg", "pkg.job"}, "pkg.job:flow"),
], ids=["script", "path-script", "python-m"])
def test_a_script_replays_without_running_its_main_block(
        tmp_path: Path, script: str, argv: list[str], pinned: set[str], entry: str) -> None:
    """Recorded by `python SCRIPT` (or `python -m`), the run pins the script under its
    place in the project; pinned and workdir replay and verify reproduce, and so does a
    pinned replay in an empty folder the run was imported into; the main block never
    runs again."""
    project = tmp_path / "project"
    path = project / script
    path.parent.mkdir(parents=True, exist_ok=True)
    if script.startswith("pkg/"):
        (path.parent / "__init__.py").write_text("")
    path.write_text(textwrap.dedent(SCRIPT))
    run_id = _record(project, *argv)
    marker = project / "main-ran.txt"
    assert marker.read_text() == "ran\n"

    with open_store(project / ".pinrun") as store:
        run = load_run(store, run_id)
        assert run.entry == entry
        assert run.flow_pin is not None
        assert set(pinned_sources(store, run.flow_pin)) == pinned
        step = store.get_object(run.steps[0].code, Kind.STEP)  # type: ignore[arg-type]
        assert step["module"] == entry.partition(":")[0].removesuffix(".py").replace(
            "/", ".").replace("-", "_")

    for code in ("pinned", "workdir"):
        replayed = _pinrun(project, "replay", run_id, "--code", code, "--json")
        assert replayed.returncode == 0, (code, replayed.stdout, replayed.stderr)
        assert json.loads(replayed.stdout)["verdict"] == "reproduced"
    verified = _pinrun(project, "verify")
    assert verified.returncode == 0, (verified.stdout, verified.stderr)
    listed = json.loads(_pinrun(project, "runs", "--json").stdout)
    assert [item["id"] for item in listed] == [run_id]  # replay recorded nothing new
    assert marker.read_text() == "ran\n"  # and the main block never ran again

    bundle = tmp_path / "run.pinrun"
    assert _pinrun(project, "export", run_id, "-o", str(bundle)).returncode == 0
    laptop = tmp_path / "laptop"  # none of the project's files
    laptop.mkdir()
    assert _pinrun(laptop, "init").returncode == 0
    assert _pinrun(laptop, "import", str(bundle)).returncode == 0
    there = _pinrun(laptop, "replay", run_id, "--json")
    assert there.returncode == 0, (there.stdout, there.stderr)
    assert json.loads(there.stdout)["verdict"] == "reproduced"
    assert not (laptop / "main-ran.txt").exists()


@pytest.mark.slow
def test_a_script_pins_the_same_code_run_as_a_script_or_by_pinrun_run(tmp_path: Path) -> None:
    """`python nightly.py` and `pinrun run nightly:flow` pin identical step code (the
    module-level dict, frozen dataclass and enum member it reads included), so neither
    looks like a code change."""
    script = textwrap.dedent(SCRIPT).replace("PRICES = {", VALUES + "\nPRICES = {").replace(
        'return {"total": sum(', 'return {"home": HOME[0].value, "total": CONFIG.scale * sum(')
    assert "CONFIG.scale" in script
    (tmp_path / "nightly.py").write_text(script)
    by_script = _record(tmp_path, "nightly.py")
    by_cli = _pinrun(tmp_path, "run", "nightly:flow", "--set", 'order_id="A-1001"')
    assert by_cli.returncode == 0, by_cli.stderr
    with open_store(tmp_path / ".pinrun") as store:
        first, second = load_run(store, by_script), load_run(store, by_cli.stdout.strip())
        assert [step.code for step in first.steps] == [step.code for step in second.steps]
        assert first.flow_pin == second.flow_pin


SIBLING = """
    import util

    import pinrun


    @pinrun.step
    def total(n: int) -> dict:
        return {"total": util.double(n)}


    flow = pinrun.Flow("sibling", [total])

    if __name__ == "__main__":
        with pinrun.open_store(create=True) as store:
            print(pinrun.record(flow, {"n": 4}, store=store).id)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["python", "pinrun run"])
def test_a_script_importing_a_module_beside_it_replays(tmp_path: Path, how: str) -> None:
    """A script in jobs/ that imports util.py beside it (as `python jobs/etl-run.py`
    allows), recorded by python or by `pinrun run jobs/etl-run.py:flow`, replays with
    either code."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "util.py").write_text("def double(n):\n    return 2 * n\n")
    (tmp_path / "jobs" / "etl-run.py").write_text(textwrap.dedent(SIBLING))
    if how == "python":
        run_id = _record(tmp_path, "jobs/etl-run.py")
    else:
        assert _pinrun(tmp_path, "init").returncode == 0
        recorded = _pinrun(tmp_path, "run", "jobs/etl-run.py:flow", "--set", "n=4")
        assert recorded.returncode == 0, recorded.stderr
        run_id = recorded.stdout.strip()
    with open_store(tmp_path / ".pinrun") as store:
        assert load_run(store, run_id).entry == "jobs/etl-run.py:flow"
    for code in ("pinned", "workdir"):
        replayed = _pinrun(tmp_path, "replay", run_id, "--code", code, "--json")
        assert replayed.returncode == 0, (code, replayed.stdout, replayed.stderr)
        assert json.loads(replayed.stdout)["verdict"] == "reproduced"


@pytest.mark.slow
def test_scripts_use_the_modules_beside_them_as_python_does(tmp_path: Path) -> None:
    """Two scripts whose own helpers.py differ, and a config.py beside the project root
    that a script's own config.py shadows (its folder comes first, as in Python): `verify`
    replays both runs in one process, each with its own modules, without false drift."""
    (tmp_path / "config.py").write_text("RATE = 1000\n")
    for folder, factor in (("jobs", 2), ("reports", 3)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "helpers.py").write_text(
            f"def double(n):\n    return {factor} * n\n")
        (tmp_path / folder / "config.py").write_text(f"RATE = {factor}\n")
        (tmp_path / folder / "main.py").write_text(textwrap.dedent(SIBLING).replace(
            "import util", "import config\nimport helpers").replace(
            "util.double(n)", "helpers.double(n) * config.RATE").replace(
            '"sibling"', f'"{folder}"'))
        _record(tmp_path, f"{folder}/main.py")
    verified = _pinrun(tmp_path, "verify", "--json", "-")
    assert verified.returncode == 0, verified.stdout + verified.stderr
