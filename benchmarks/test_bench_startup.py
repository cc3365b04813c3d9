"""Start-up time of ``pinrun --help`` (import cost), against bare interpreters.

Each round starts a new interpreter and waits for it to exit. Baselines: an
interpreter that does nothing (``-c pass``) and one that imports click (the
CLI framework, which ``pinrun --help`` cannot avoid). Target: ``pinrun --help``
under 150 ms, measured as ``python -m pinrun --help`` and, when installed, as
the ``pinrun`` console script. The processes run in an empty folder, with the same
environment as the test run; their bytecode caches are warm (a warm-up round
runs first).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._harness import RESULTS, BenchmarkFixture, report

ROUNDS = 20
WARMUP_ROUNDS = 2
TARGET_MS = 150.0
GROUP = "startup (one new interpreter per round)"

COMMANDS: dict[str, list[str]] = {
    "python-bare": [sys.executable, "-c", "pass"],
    "python-import-click": [sys.executable, "-c", "import click"],
    "pinrun-help": [sys.executable, "-m", "pinrun", "--help"],
    # The console script installed next to this interpreter (what users type).
    "pinrun-script-help": [str(Path(sys.executable).with_name("pinrun")), "--help"],
}


def _start(command: list[str], cwd: Path) -> None:
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_startup(benchmark: BenchmarkFixture, tmp_path: Path, name: str) -> None:
    """Seconds from spawning an interpreter to its exit: pinrun --help vs bare baselines."""
    command = COMMANDS[name]
    if not Path(command[0]).exists():
        pytest.skip(f"{command[0]} is not installed")
    probe = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        last_line = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{' '.join(command[1:])} exits {probe.returncode}: {last_line}")
    benchmark.group = GROUP
    benchmark.pedantic(_start, args=(command, tmp_path), rounds=ROUNDS,
                       warmup_rounds=WARMUP_ROUNDS)
    metadata = benchmark.stats
    notes: dict[str, object] = {}
    if metadata:
        median_ms = float(metadata.stats.median) * 1000
        notes["median_ms"] = round(median_ms, 1)
        bare = RESULTS.get(GROUP, {}).get("python-bare")
        if bare is not None and name != "python-bare":
            notes["over_bare_python_ms"] = round(median_ms - bare.median_s * 1000, 1)
            notes["times_bare_python"] = round(median_ms / (bare.median_s * 1000), 2)
        if name.startswith("pinrun"):
            notes["target_ms"] = TARGET_MS
            notes["meets_target"] = median_ms < TARGET_MS
    report(benchmark, name, 1, unit="starts", notes=notes)
