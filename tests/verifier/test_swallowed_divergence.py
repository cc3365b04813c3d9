"""A divergence the step catches is still a divergence; a recorded failure must ask the
context for what the recording did before failing the same way."""

from __future__ import annotations

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from pinrun.errors import RunFailedError
from pinrun.verifier.replayer import replay
from tests.helpers import Project

FLOW = """
import pinrun


def fx(currency):
    return 1.25


def charge(amount):
    return "ok"


@pinrun.step
def rate(ctx: pinrun.Context) -> dict:
    try:
        value = ctx.effect("fx", fx, "EUR")
    except Exception:
        value = ctx.effect("fx", fx, "EUR")
    return {"rate": value}


@pinrun.step
def pay(ctx: pinrun.Context) -> dict:
    ctx.effect("charge", charge, 10)
    raise ValueError("declined")


flow = pinrun.Flow("swallow", [rate])
paying = pinrun.Flow("paying", [pay])
"""


def test_a_caught_divergence_is_reported(project: Project, project_store: Store) -> None:
    """Code asking for another effect, catching the divergence and asking for the recorded
    one, diverges: the first divergence raised to the step is the verdict."""
    project.write("swallow", FLOW)
    run = record(project.load("swallow"), {}, store=project_store)
    assert replay(run.id, store=project_store, code="workdir").reproduced
    project.edit("swallow", '''    try:
        value = ctx.effect("fx", fx, "EUR")''', '''    try:
        value = ctx.effect("fx", fx, "USD")''')
    report = replay(run.id, store=project_store, code="workdir")
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    assert "it called effect fx('USD'), which the recording has no answer for" in first.message
    assert "(The step caught the error and went on.)" in first.message


def test_a_failure_that_skips_a_recorded_effect_diverges(project: Project,
                                                         project_store: Store) -> None:
    """The same error, raised without making the charge the recording made, diverges."""
    project.write("swallow", FLOW)
    try:
        record(project.load("swallow", "paying"), {}, store=project_store)
    except RunFailedError as failed:
        run_id = failed.run.id
    assert replay(run_id, store=project_store, code="workdir").reproduced
    project.edit("swallow", '    ctx.effect("charge", charge, 10)\n', "")
    report = replay(run_id, store=project_store, code="workdir")
    first = report.first_divergence
    assert first is not None
    assert first.message == ("the recording has effect charge(10) before it failed, which "
                             "the replayed step never asked for")


def test_effects_reordered_in_sequential_code_are_a_hazard(project: Project,
                                                           project_store: Store) -> None:
    """Each call still gets its own answer, so the run reproduces; but the step's own code
    asking in another order than recorded is named as a hazard."""
    project.write("settle", """
        import pinrun

        def charge(account, amount):
            return "charged"

        def refund(account, amount):
            return "refunded"

        @pinrun.step
        def settle(ctx: pinrun.Context) -> dict:
            first = ctx.effect("charge", charge, "acct1", 10)
            second = ctx.effect("refund", refund, "acct1", 10)
            return {"done": [first, second]}

        flow = pinrun.Flow("settle", [settle])
    """)
    run = record(project.load("settle"), {}, store=project_store)
    assert replay(run.id, store=project_store, code="workdir").steps[0].hazards == []
    charge_first = ('    first = ctx.effect("charge", charge, "acct1", 10)\n'
                    '    second = ctx.effect("refund", refund, "acct1", 10)\n')
    refund_first = ('    second = ctx.effect("refund", refund, "acct1", 10)\n'
                    '    first = ctx.effect("charge", charge, "acct1", 10)\n')
    project.edit("settle", charge_first, refund_first)
    report = replay(run.id, store=project_store, code="workdir")
    assert report.reproduced
    assert report.steps[0].hazards == [
        "called effect charge('acct1', 10) after effect refund('acct1', 10), though the "
        "recording made it first (effects answered out of their recorded order)"]
