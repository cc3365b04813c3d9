"""Random generators through the CLI, as a user would: recorded with ``pinrun run``, replayed
with ``pinrun replay --json`` in a real process (where numpy loads its random part lazily,
inside the first step that uses it: the false alarm's setting).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SRC, Project
from tests.verifier.test_generators import LIBRARY

pytestmark = pytest.mark.slow

# numpy alone: its random part loads lazily, inside the first step that uses it (where
# the false alarm was: RandomState(3) read as a call to secrets.randbits at its line).
SEEDED_NUMPY = """\
import random

import numpy as np

import pinrun
import skish


@pinrun.step
def make(n: int) -> dict:
    legacy = np.random.RandomState(3).normal(size=n)
    fresh = np.random.default_rng(3).integers(0, 9, size=n)
    np.random.seed(3)
    return {"legacy": legacy, "fresh": fresh, "global": np.random.normal(size=n),
            "pick": random.Random(3).random(), "order": skish.fit(list(range(n)), 3)}


flow = pinrun.Flow("seeded_numpy", [make])
"""

# numpy and pandas state carried from step to step, every generator seeded.
SEEDED_PANDAS = """\
import numpy as np
import pandas as pd

import pinrun


@pinrun.step
def make(n: int) -> dict:
    rng = np.random.default_rng(3)
    return {"frame": pd.DataFrame({"a": np.random.RandomState(3).normal(size=n),
                                   "b": rng.integers(0, 9, size=n)})}


@pinrun.step
def mix(frame: pd.DataFrame) -> dict:
    sample = frame.sample(frac=1.0, random_state=3)
    noise = np.random.default_rng(seed=7).normal(size=len(frame))
    return {"mixed": sample.to_numpy() + noise[:, None], "total": float(frame["a"].sum())}


flow = pinrun.Flow("seeded_pandas", [make, mix])
"""

# One step per unseeded kind; the call is on the line after each ``def``.
UNSEEDED = """\
import random

import numpy as np

import pinrun
import skish


@pinrun.step
def instance(n: int) -> dict:
    return {"instance": random.Random().random() + n}


@pinrun.step
def global_draw(n: int) -> dict:
    return {"global_draw": float(np.random.normal()) + n}


@pinrun.step
def fresh(n: int) -> dict:
    return {"fresh": float(np.random.default_rng().normal()) + n}


@pinrun.step
def legacy(n: int) -> dict:
    return {"legacy": float(np.random.RandomState().normal()) + n}


@pinrun.step
def bits(n: int) -> dict:
    return {"bits": float(np.random.Generator(np.random.PCG64()).normal()) + n}


@pinrun.step
def sequence(n: int) -> dict:
    return {"sequence": str(np.random.SeedSequence().entropy) + str(n)}


@pinrun.step
def library(n: int) -> dict:
    return {"library": skish.fit(list(range(50 + n)))}


flow = pinrun.Flow("unseeded", [instance, global_draw, fresh, legacy, bits, sequence, library])
"""
NAMED = {"instance": "random.Random()", "global_draw": "numpy.random.normal()",
         "fresh": "numpy.random.default_rng()", "legacy": "numpy.random.RandomState()",
         "bits": "numpy.random.PCG64()", "sequence": "numpy.random.SeedSequence()",
         "library": "numpy.random.permutation()"}



def _cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun ARGS`` in the project folder; the library is on the path too."""
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root),
                                         str(project.root.parent / "site")])
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _record(project: Project, module: str, source: str) -> tuple[str, Path]:
    site = project.root.parent / "site"
    site.mkdir(exist_ok=True)
    (site / "skish.py").write_text(LIBRARY)  # what scikit-learn does with random_state
    path = project.write(module, source)
    assert _cli(project, "init").returncode == 0
    done = _cli(project, "run", project.entry(module), "--set", "n=5")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip(), path


def _replay(project: Project, run_id: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = _cli(project, "replay", run_id, "--json", *args)
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("source", [SEEDED_NUMPY, SEEDED_PANDAS], ids=["numpy", "pandas"])
def test_seeded_generators_reproduce_with_no_hazard(project: Project, source: str) -> None:
    """numpy (RandomState(3), default_rng(3), np.random.seed(3) then draws), a library given
    random_state=3, random.Random(3) and pandas' seeded sample reproduce under warn and
    strict guards, with no hazard (numpy's own entropy draw is not the step's)."""
    run_id, _ = _record(project, "seeded", source)
    shown = json.loads(_cli(project, "show", run_id, "--json").stdout)
    assert [step["hazards"] for step in shown["steps"]] == [[]] * len(shown["steps"])
    for guards in ("warn", "strict"):
        code, report = _replay(project, run_id, "--guards", guards)
        assert (code, report["verdict"]) == (0, "reproduced"), report
        assert [step["hazards"] for step in report["steps"]] == [[]] * len(report["steps"])


@pytest.mark.parametrize("guards", ["warn", "strict"])
def test_each_unseeded_generator_is_named_with_the_projects_line(
        project: Project, guards: str) -> None:
    """Each unseeded kind diverges (its values differ, or strict refuses it) and its cause
    names the call as written with the project's file and line, a library's draw from
    numpy's global generator at the line that called the library."""
    run_id, path = _record(project, "unseeded", UNSEEDED)
    lines = path.read_text().splitlines()
    code, report = _replay(project, run_id, "--guards", guards)
    assert (code, report["verdict"]) == (1, "diverged"), report
    for step in report["steps"]:
        call = NAMED[step["name"]]
        line = lines.index(f"def {step['name']}(n: int) -> dict:") + 2
        assert step["status"] == "diverged", step
        named = [(cause["message"], Path(cause["file"]), cause["line"])
                 for cause in step["causes"] if cause["kind"] == "nondeterministic call"]
        assert named == [(f"{call} (randomness) outside the context", path, line)], step
