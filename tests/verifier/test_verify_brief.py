"""verify_runs(brief=True): a reproduced run's report comes back without its steps (what
``pinrun verify`` reports of it is its run, flow and time), any other run's in full."""

from __future__ import annotations

import pinrun
from pinrun.artifacts.store import Store
from pinrun.verifier.verify import verify_runs
from tests.helpers import Project

STEPS = """
import pinrun

RATE = {"eu": 2}


@pinrun.step
def price(n: int) -> dict:
    return {"total": n * RATE["eu"]}


flow = pinrun.Flow("brief", [price])
"""


def test_brief_results_drop_the_steps_of_reproduced_runs_only(
        project: Project, project_store: Store) -> None:
    """Two runs, one replayed under changed code: brief, the reproduced one has no steps
    and the diverged one keeps its steps and first divergence; in full, both have steps."""
    project.write("pricing", STEPS)
    flow = project.load("pricing")
    same, changed = (pinrun.record(flow, {"n": n}, store=project_store).id for n in (1, 3))
    full = list(verify_runs(project_store, [same], code="workdir", guards="warn", jobs=1,
                            project_root=project.root))
    assert full[0].report is not None
    assert len(full[0].report.steps) == 1
    project.write("pricing", STEPS.replace("n * RATE", "n + RATE"))
    brief = list(verify_runs(project_store, [same, changed], code="pinned", guards="warn",
                             jobs=1, project_root=project.root, brief=True))
    assert [result.verdict for result in brief] == ["reproduced", "reproduced"]
    assert all(result.report is not None and result.report.steps == [] for result in brief)
    diverged = list(verify_runs(project_store, [changed], code="workdir", guards="warn",
                                jobs=1, project_root=project.root, brief=True))
    assert diverged[0].verdict == "diverged"
    assert diverged[0].report is not None
    assert len(diverged[0].report.steps) == 1
    assert diverged[0].report.first_divergence is not None
