"""README's two fresh-machine commands: the first really runs, the second is what CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The commands of README's first shell block, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no ```bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands() -> None:
    """The first block holds exactly two commands: install-and-demo, and the tests."""
    commands = readme_commands()
    assert len(commands) == 2
    assert "pinrun run examples.pricing:flow" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """.ci/run runs exactly the test command README gives."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_commands()[1] in ci.splitlines()


@pytest.mark.slow
def test_first_command_installs_records_and_shows(tmp_path: Path) -> None:
    """README's first command, in a brand-new virtualenv, installs, records a run, shows it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The store goes to a temporary folder, not into the checkout.
    env = dict(os.environ, VIRTUAL_ENV=str(venv), PINRUN_STORE=str(tmp_path / "store"),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        ["bash", "-c", readme_commands()[0]], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "status succeeded" in result.stdout
    assert "price_order" in result.stdout
    assert "exchange_rate" in result.stdout
    assert (venv / "bin" / "pinrun").exists()
    assert (tmp_path / "store" / "data.mdb").is_file()  # the run went to PINRUN_STORE


@pytest.mark.slow
def test_the_api_example_works_as_written(tmp_path: Path) -> None:
    """README's Python example, saved as a script and run, records a run that replays
    (pinned and workdir) without running its main block again."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Recording a run.*?```python\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no API example"
    (tmp_path / "pricing_job.py").write_text(block.group(1))
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = str(ROOT / "src")
    recorded = subprocess.run([sys.executable, "pricing_job.py"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert recorded.returncode == 0, recorded.stderr
    run_id, status = recorded.stdout.split()
    assert status == "succeeded"
    for code in ("pinned", "workdir"):
        replayed = subprocess.run([sys.executable, "-m", "pinrun", "replay", run_id, "--code",
                                   code], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "reproduced" in replayed.stdout
    runs = subprocess.run([sys.executable, "-m", "pinrun", "runs"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    assert runs.stdout.count("pricing") == 1  # no replay recorded a run of its own
