"""The ``pinrun`` console script, as pip writes it for the installed entry point."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from tests.helpers import SRC, Project

FLOWS = """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


orders = pinrun.Flow("orders", [double])
"""

#: What pip writes for a console script (``ENTRY`` is ``module:function``).
SCRIPT = """\
import re
import sys
from {module} import {function}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({function}())
"""


def test_a_verify_worker_does_not_load_the_command_line(project: Project) -> None:
    """``pinrun verify`` started from the console script: its worker (which runs the
    script again, skipping its call) imports the command line's commands not at all."""
    project.write("flows", FLOWS)
    with Store.open(project.root / ".pinrun", create=True, durable=False) as store:
        record(project.load("flows", "orders"), {"n": 2}, store=store, durability="none")
    entry = importlib.metadata.entry_points(group="console_scripts", name="pinrun")
    module, _, function = next(iter(entry)).value.partition(":")
    script = project.root / "pinrun-script"
    script.write_text(SCRIPT.format(module=module, function=function))
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # each process lists its imports on stderr
    done = subprocess.run([sys.executable, str(script), "verify", "-j", "1"],
                          cwd=project.root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 reproduced" in done.stdout
    imports = [line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:")]
    assert imports.count("pinrun.verifier.worker") == 2  # the command and its worker
    assert imports.count("pinrun.cli.main") == 1  # the command only


def test_the_script_exits_with_the_commands_status(tmp_path: Path) -> None:
    """The entry point gives the command's exit status back (not 0 for a missing store)."""
    entry = importlib.metadata.entry_points(group="console_scripts", name="pinrun")
    module, _, function = next(iter(entry)).value.partition(":")
    script = tmp_path / "pinrun-script"
    script.write_text(SCRIPT.format(module=module, function=function))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, str(script), "--store", str(tmp_path / "none"),
                           "fsck"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0
    ok = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0
    assert "Usage: pinrun" in ok.stdout
