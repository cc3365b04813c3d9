"""Every shape of flow the engine walks, recorded then replayed with pinned and workdir code.

Recording and replay are one walk over the levels (pinrun.engine.walk): these
flows exercise what that walk decides (DAG levels, concurrent async steps,
the output policies, a failure inside a level, a resumed run) on both sides.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.engine.resume import resume
from pinrun.engine.run import record
from pinrun.errors import RunFailedError
from pinrun.verifier.replayer import replay
from tests.helpers import Project, project_cli

SHAPES = """
import asyncio
import pinrun


@pinrun.step
def start(n: int) -> dict:
    return {"a": n + 1, "b": n * 2}


@pinrun.step(after=["start"])
def left(a: int) -> dict:
    return {"left": a * 10}


@pinrun.step(after=["start"])
def right(b: int, ctx: pinrun.Context) -> dict:
    return {"right": b + ctx.random().randint(0, 1000)}


@pinrun.step(after=["left", "right"])
def join(left: int, right: int) -> dict:
    return {"total": left + right}


dag = pinrun.Flow("dag", [start, left, right, join])


@pinrun.step(after=["start"])
async def slow_a(a: int, ctx: pinrun.Context) -> dict:
    await asyncio.sleep(0.03)
    return {"sa": a, "when": ctx.now().isoformat()}


@pinrun.step(after=["start"])
async def slow_b(b: int, ctx: pinrun.Context) -> dict:
    await asyncio.sleep(0.01)
    return {"sb": b, "ticket": str(ctx.uuid4())}


@pinrun.step(after=["slow_a", "slow_b"])
def fin(sa: int, sb: int) -> dict:
    return {"sum": sa + sb}


concurrent = pinrun.Flow("concurrent", [start, slow_a, slow_b, fin], max_concurrency=2)


@pinrun.step
def first(n: int) -> dict:
    return {"value": n}


@pinrun.step
def second(value: int) -> dict:
    return {"value": value + 1}


warned = pinrun.Flow("warned", [first, second], on_collision="warn")
refused = pinrun.Flow("refused", [first, second], on_collision="error")
overwritten = pinrun.Flow("overwritten", [first, second], on_collision="overwrite")


@pinrun.step(after=["start"])
def ok_sibling(a: int) -> dict:
    return {"ok": a}


@pinrun.step(after=["start"])
def bad_sibling(b: int) -> dict:
    raise ValueError(f"bad {b}")


@pinrun.step(after=["ok_sibling", "bad_sibling"])
def never(ok: int) -> dict:
    return {"never": ok}


broken = pinrun.Flow("broken", [start, ok_sibling, bad_sibling, never])


@pinrun.step(after=["start"])
def also_left(a: int) -> dict:
    return {"left": -a}


clashing = pinrun.Flow("clashing", [start, left, also_left])
"""

#: flow -> (whether recording it fails, the step statuses a replay reports)
EXPECTED = {
    "dag": (False, ["match"] * 4),
    "concurrent": (False, ["match"] * 4),
    "warned": (False, ["match", "match"]),
    "refused": (True, ["match", "match"]),
    "overwritten": (False, ["match", "match"]),
    "broken": (True, ["match", "match", "match", "not-run"]),
    "clashing": (True, ["match", "match", "match"]),
}


@pytest.fixture
def shapes(project: Project) -> Project:
    """The project's ``shapes`` module, with one flow per shape."""
    project.write("shapes", SHAPES)
    return project


def _record(project: Project, store: Store, name: str) -> str:
    try:
        return record(project.load("shapes", name), {"n": 3}, store=store).id
    except RunFailedError as failure:
        return failure.run.id


@pytest.mark.parametrize("code", ["pinned", "workdir"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_shape_reproduces(shapes: Project, project_store: Store, name: str,
                               code: str) -> None:
    """Recorded, then replayed with either code, every shape reproduces step by step."""
    fails, statuses = EXPECTED[name]
    run_id = _record(shapes, project_store, name)
    run = load_run(project_store, run_id)
    assert run.status == ("failed" if fails else "succeeded")
    report = replay(run_id, store=project_store, code=code)  # type: ignore[arg-type]
    assert report.reproduced, report.explain()
    assert [step.status for step in report.steps] == statuses


def test_policies_are_judged_the_same_on_both_sides(shapes: Project,
                                                    project_store: Store) -> None:
    """The overwrite hazard and the refused collisions come back from the same walk."""
    warned = load_run(project_store, _record(shapes, project_store, "warned"))
    assert warned.steps[1].hazards == ("overwrote key 'value'",)
    report = replay(warned.id, store=project_store, code="workdir")
    assert report.steps[1].hazards == ["overwrote key 'value'"]
    refused = load_run(project_store, _record(shapes, project_store, "refused"))
    error = refused.steps[1].error
    assert error is not None
    assert "on_collision='error'" in error.message
    clashing = load_run(project_store, _record(shapes, project_store, "clashing"))
    assert [s.status for s in clashing.steps] == ["succeeded", "succeeded", "failed"]
    error = clashing.steps[2].error
    assert error is not None
    assert "same level also writes" in error.message


def test_a_changed_sibling_diverges_alone(shapes: Project, project_store: Store) -> None:
    """In a DAG, a diverging sibling is judged alone; the join goes on from the recording."""
    run_id = _record(shapes, project_store, "dag")
    shapes.edit("shapes", '{"left": a * 10}', '{"left": a * 11}')
    report = replay(run_id, store=project_store, code="workdir")
    assert report.verdict == "diverged"
    assert [(s.name, s.status) for s in report.steps] == [
        ("start", "match"), ("left", "diverged"), ("right", "match"), ("join", "match")]


def test_a_resumed_run_reproduces_with_either_code(shapes: Project,
                                                   project_store: Store) -> None:
    """A level half done, fixed and resumed: each step replays with the code it ran."""
    run_id = _record(shapes, project_store, "broken")
    shapes.edit("shapes", 'raise ValueError(f"bad {b}")', 'return {"bad": b}')
    finished = resume(run_id, store=project_store, code_policy="disabled")
    assert finished.status == "succeeded"
    assert [s.name for s in finished.steps] == [
        "start", "ok_sibling", "bad_sibling", "bad_sibling", "never"]
    for code in ("pinned", "workdir"):
        report = replay(run_id, store=project_store, code=code)
        assert report.reproduced, report.explain()
        assert [s.status for s in report.steps] == ["match"] * 4


@pytest.mark.slow
def test_verify_replays_every_shape_through_the_cli(shapes: Project) -> None:
    """`pinrun run` each shape, then `pinrun verify` with each code: all reproduce."""
    assert project_cli(shapes, "init").returncode == 0
    for name, (fails, _) in EXPECTED.items():
        done = project_cli(shapes, "run", shapes.entry("shapes", name), "--set", "n=3")
        assert done.returncode == (1 if fails else 0), done.stderr
    for code in ("pinned", "workdir"):
        done = project_cli(shapes, "verify", "--code", code, "--json", "-")
        assert done.returncode == 0, done.stdout + done.stderr
        reports = json.loads(done.stdout)["results"]
        assert sorted(r["flow"] for r in reports) == sorted(EXPECTED), reports
        assert {r["verdict"] for r in reports} == {"reproduced"}


def test_only_the_walk_runs_levels() -> None:
    """One engine: pinrun.engine.walk is the only caller of run_level (nothing else
    loops over levels of steps)."""
    root = Path(__file__).resolve().parents[2] / "src" / "pinrun"
    callers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "run_level":
                callers.add(path.relative_to(root).as_posix())
    assert callers == {"engine/walk.py"}
