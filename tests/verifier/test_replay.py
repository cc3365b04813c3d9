"""Replaying recorded runs: a corpus of small flows, each built to show one thing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.engine.run import record
from pinrun.errors import RunFailedError
from pinrun.verifier import seeded
from pinrun.verifier.replayer import replay
from tests.helpers import SRC, Project

CORPUS = """
import random
import pinrun
from {package} import helpers

EFFECT_CALLS = []


def fetch_rate(currency):
    EFFECT_CALLS.append(currency)
    return 1.25


@pinrun.step
def load(order_id: str) -> dict:
    return {{"items": [{{"sku": "A", "qty": 2, "price": 10.0}}]}}


@pinrun.step
def price(items: list, ctx: pinrun.Context) -> dict:
    rate = ctx.effect("fx_rate", fetch_rate, "EUR")
    return {{"total": helpers.total(items) * rate, "at": ctx.now().isoformat(),
             "ticket": str(ctx.uuid4()), "draw": ctx.random().random()}}


deterministic = pinrun.Flow("deterministic", [load, price])


@pinrun.step
def refuse(total: float) -> dict:
    raise ValueError(f"no approval for {{total}}")


failing = pinrun.Flow("failing", [load, price, refuse])


@pinrun.step
def lucky(order_id: str) -> dict:
    return {{"lucky": random.random()}}


unlucky = pinrun.Flow("unlucky", [lucky])


@pinrun.step
def stamp(order_id: str) -> dict:
    import time
    return {{"stamped": time.time()}}


clocked = pinrun.Flow("clocked", [stamp])

SEEN = []


@pinrun.step
def remember(order_id: str) -> dict:
    SEEN.append(order_id)
    return {{"count": 1}}


stateful = pinrun.Flow("stateful", [remember])


@pinrun.step
def tidy(names: list) -> dict:
    names.sort()
    return {{"first": names[0]}}


mutating = pinrun.Flow("mutating", [tidy])
"""

HELPERS = """
def total(items):
    return sum(i["qty"] * i["price"] for i in items)
"""


@pytest.fixture
def corpus(project: Project) -> Project:
    """The corpus package: flows in ``corpus``, a helper module in ``helpers``."""
    project.write("helpers", HELPERS)
    project.write("corpus", CORPUS.format(package=project.package))
    return project


def _record(project: Project, store: Store, flow: str, inputs: dict[str, object]) -> str:
    try:
        return record(project.load("corpus", flow), inputs, store=store).id
    except RunFailedError as failure:
        return failure.run.id


def test_a_deterministic_run_reproduces_with_either_code(corpus: Project,
                                                         project_store: Store) -> None:
    """Pinned and workdir code both reproduce it; the effect is not called again."""
    run_id = _record(corpus, project_store, "deterministic", {"order_id": "A1"})
    calls = sys.modules[f"{corpus.package}.corpus"].EFFECT_CALLS
    assert calls == ["EUR"]
    for code in ("pinned", "workdir"):
        report = replay(run_id, store=project_store, code=code)
        assert report.reproduced, report.explain()
        assert [s.status for s in report.steps] == ["match", "match"]
    assert calls == ["EUR"]  # replay never called the effect's function
    # pinrun.replay is the engine's replay under the run's recorded hash seed.
    assert pinrun.replay is seeded.replay


def test_edited_code_diverges_on_workdir_only(corpus: Project, project_store: Store) -> None:
    """The pinned code reproduces; the code on disk diverges with a diff and the cause."""
    run_id = _record(corpus, project_store, "deterministic", {"order_id": "A1"})
    corpus.edit("corpus", '"price": 10.0', '"price": 12.0')
    assert replay(run_id, store=project_store).reproduced
    report = replay(run_id, store=project_store, code="workdir")
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    assert first.name == "load"
    assert [(c.path, c.kind) for c in first.changes] == [("items[0].price", "changed")]
    assert first.changes[0].recorded == "10.0"
    assert any(c.kind == "code drift" and '+    return {"items": [{"sku": "A", "qty": 2, '
               '"price": 12.0}]}' in c.detail for c in first.causes)
    # Later steps are judged on the recorded outputs: price still matches.
    assert [s.status for s in report.steps] == ["diverged", "match"]


def test_an_edited_helper_in_another_module(corpus: Project, project_store: Store) -> None:
    """A helper the step calls is part of its code: the step diverges, drift named."""
    run_id = _record(corpus, project_store, "deterministic", {"order_id": "A1"})
    corpus.edit("helpers", 'i["qty"] * i["price"]', 'i["qty"] * i["price"] * 2')
    report = replay(run_id, store=project_store, code="workdir")
    first = report.first_divergence
    assert first is not None
    assert first.name == "price"
    assert any("helpers.py" in c.detail for c in first.causes if c.kind == "code drift")
    assert replay(run_id, store=project_store).reproduced


def test_a_failed_run_reproduces_its_failure(corpus: Project, project_store: Store) -> None:
    """The same step fails with the same error: reproduced. Fixed code: diverged."""
    run_id = _record(corpus, project_store, "failing", {"order_id": "A1"})
    assert load_run(project_store, run_id).status == "failed"
    report = replay(run_id, store=project_store)
    assert report.reproduced, report.explain()
    corpus.edit("corpus", 'raise ValueError(f"no approval for {total}")', 'return {}')
    report = replay(run_id, store=project_store, code="workdir")
    first = report.first_divergence
    assert first is not None
    assert first.divergence == "failure-not-reproduced"


def _line_of(project: Project, text: str) -> int:
    source = (project.root / project.package / "corpus.py").read_text().splitlines()
    return next(number for number, line in enumerate(source, 1) if text in line)


@pytest.mark.parametrize(("flow", "call", "text"), [
    ("unlucky", "random.random()", "random.random()"),
    ("clocked", "time.time()", "time.time()"),
])
def test_a_call_around_the_context_is_named_with_file_and_line(
        corpus: Project, project_store: Store, flow: str, call: str, text: str) -> None:
    """random.random() or time.time() in a step: diverged, the cause names the call."""
    run_id = _record(corpus, project_store, flow, {"order_id": "A1"})
    report = replay(run_id, store=project_store)
    assert report.verdict == "diverged"
    first = report.first_divergence
    assert first is not None
    cause = next(c for c in first.causes if c.kind == "nondeterministic call")
    assert cause.message.startswith(call)
    assert cause.file is not None
    assert cause.file.endswith("corpus.py")
    assert cause.line == _line_of(corpus, text)


def test_strict_guards_fail_the_step(corpus: Project, project_store: Store) -> None:
    """strict: the call raises in the step, which diverges with an error."""
    run_id = _record(corpus, project_store, "clocked", {"order_id": "A1"})
    report = replay(run_id, store=project_store, guards="strict")
    first = report.first_divergence
    assert first is not None
    assert first.divergence == "error"
    assert "NondeterminismError" in first.message
    assert "use ctx.now()" in first.message


def test_guards_leave_the_modules_as_they_were(corpus: Project, project_store: Store) -> None:
    """After a replay the project module sees the real time module again."""
    import time

    run_id = _record(corpus, project_store, "clocked", {"order_id": "A1"})
    replay(run_id, store=project_store, code="workdir")
    module = sys.modules[f"{corpus.package}.corpus"]
    assert module.random is __import__("random")
    assert time.time.__module__ == "time"


def test_changed_module_state_is_a_hazard(corpus: Project, project_store: Store) -> None:
    """A step that appends to a module-level list: hidden state, reported."""
    run_id = _record(corpus, project_store, "stateful", {"order_id": "A1"})
    report = replay(run_id, store=project_store, code="workdir")
    assert any(h.startswith(f"module state: {corpus.package}.corpus.SEEN changed")
               for h in report.steps[0].hazards)
    quiet = replay(run_id, store=project_store, code="workdir", guards="off")
    assert quiet.steps[0].hazards == []


def test_input_mutation_is_named_as_a_cause(corpus: Project, project_store: Store) -> None:
    """A step that sorts its input in place: the hazard is reported on replay too."""
    run_id = _record(corpus, project_store, "mutating", {"names": ["b", "a"]})
    report = replay(run_id, store=project_store)
    assert report.reproduced
    assert report.steps[0].hazards[0].startswith("mutated its input 'names'")


def test_an_effect_asked_differently_is_an_effect_divergence(corpus: Project,
                                                             project_store: Store) -> None:
    """Other arguments to an effect: a divergence of its own kind, naming both calls."""
    run_id = _record(corpus, project_store, "deterministic", {"order_id": "A1"})
    corpus.edit("corpus", 'ctx.effect("fx_rate", fetch_rate, "EUR")',
                'ctx.effect("fx_rate", fetch_rate, "USD")')
    report = replay(run_id, store=project_store, code="workdir")
    first = report.first_divergence
    assert first is not None
    assert first.divergence == "effects"
    assert "fx_rate" in first.message


def test_a_step_that_no_longer_exists_is_an_error(corpus: Project,
                                                  project_store: Store) -> None:
    """Workdir code without a recorded step cannot replay the run: verdict error."""
    run_id = _record(corpus, project_store, "deterministic", {"order_id": "A1"})
    corpus.edit("corpus", 'pinrun.Flow("deterministic", [load, price])',
                'pinrun.Flow("deterministic", [load])')
    report = replay(run_id, store=project_store, code="workdir")
    assert report.verdict == "error"
    assert "no step 'price'" in report.error


def test_pinned_replay_needs_no_file_on_disk(corpus: Project, project_store: Store,
                                            tmp_path: Path) -> None:
    """Export the run, delete the project, import it elsewhere: pinned replay reproduces."""
    from pinrun.artifacts.bundle import export_bundle, import_bundle

    run_id = _record(corpus, project_store, "deterministic", {"order_id": "A1"})
    bundle = tmp_path / "run.pinrun"
    export_bundle(project_store, [f"runs/{run_id}"], bundle)
    corpus.close()
    for path in sorted((corpus.root / corpus.package).iterdir()):
        path.unlink() if path.is_file() else None
    with Store.open(tmp_path / "laptop" / ".pinrun", create=True) as laptop:
        import_bundle(laptop, bundle)
        report = replay(run_id, store=laptop)
        assert report.reproduced, report.explain()
    assert f"{corpus.package}.corpus" not in sys.modules


def test_repeat_shows_state_a_run_leaves_behind(corpus: Project, project_store: Store) -> None:
    """A step counting into a module-level list reproduces once, not twice in a row."""
    corpus.edit("corpus", 'return {"count": 1}', 'return {"count": len(SEEN)}')
    run_id = _record(corpus, project_store, "stateful", {"order_id": "A1"})
    assert replay(run_id, store=project_store).reproduced  # fresh pinned modules
    report = replay(run_id, store=project_store, repeat=3)
    assert report.verdict == "diverged"
    assert report.repetition == 2
    assert "replay 2 of 3 in one process" in report.explain()


SETS = """
import pinrun


@pinrun.step
def fruit(n: int) -> dict:
    names = {"apple", "banana", "cherry", "date", "elder", "fig", "grape", "kiwi",
             "lemon", "mango", "nectarine", "orange"}
    return {"first": list(names)[:n]}


flow = pinrun.Flow("sets", [fruit])
"""


def test_perturbing_the_hash_seed_shows_set_order(project: Project,
                                                  project_store: Store) -> None:
    """Reproduced in process; another hash seed in a fresh process diverges; tz does not."""
    from pinrun.verifier.perturb import perturb

    project.write("sets", SETS)
    # Recorded by the command line: under its known hash seed.
    recorded = subprocess.run(
        [sys.executable, "-m", "pinrun", "--store", str(project_store.path), "run",
         project.entry("sets"), "--set", "n=6"], cwd=project.root, capture_output=True,
        text=True, check=False, timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"},
             "PYTHONPATH": os.pathsep.join([str(SRC), str(project.root)])})
    assert recorded.returncode == 0, recorded.stderr
    run_id = recorded.stdout.strip()
    results = {p.kind: p for p in perturb(project_store, run_id, ["hashseed", "tz"])}
    assert results["hashseed"].verdict == "diverged"
    assert results["hashseed"].first_divergence == "fruit"
    assert results["tz"].verdict == "reproduced"
