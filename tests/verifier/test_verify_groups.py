"""verify_runs' order: damaged records first, then each hash seed's runs in the order given,
while the first seed's workers start before the other runs' seeds are read."""

from __future__ import annotations

import pytest

import pinrun
from pinrun.artifacts.store import Store
from pinrun.engine.records import run_ref
from pinrun.verifier.verify import verify_runs
from tests.helpers import Project, project_cli
from tests.verifier.test_corrupt_recorded_output import _damage
from tests.verifier.test_library_replay import FRUIT


def _run_under(project: Project, monkeypatch: pytest.MonkeyPatch, seed: str, n: int) -> str:
    """A run of the fruit flow (a set's order) recorded by `pinrun run` under ``seed``."""
    monkeypatch.setenv("PYTHONHASHSEED", seed)
    done = project_cli(project, "run", project.entry("fruit", "fruit"), "--set", f"n={n}")
    monkeypatch.delenv("PYTHONHASHSEED")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_results_come_damaged_first_then_seed_by_seed(project: Project,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of two seeds, interleaved, and a run whose record is gone: with two workers the
    damaged run's store error comes first, then the first seed's runs in the order given,
    then the other seed's; each reproduces under its own seed. With fail_fast the store
    error is the only result."""
    project.write("fruit", FRUIT)
    assert project_cli(project, "init").returncode == 0
    a, b, c, gone, e = (_run_under(project, monkeypatch, seed, n) for seed, n in
                        (("123", 16), ("456", 15), ("123", 14), ("123", 13), ("456", 12)))
    with Store.open(project.root / ".pinrun") as store:
        record = store.get_ref(run_ref(gone))
        assert record is not None
        _damage(store, record, delete=True)
        results = list(verify_runs(store, [a, b, c, gone, e], code="pinned", guards="warn",
                                   jobs=2))
        assert [result.run_id for result in results] == [gone, a, c, b, e]
        assert results[0].store_error
        assert results[0].verdict == "error"
        for result in results[1:]:
            assert result.report is not None
            assert result.verdict == "reproduced", result.report.explain()
        stopped = list(verify_runs(store, [a, gone, b], code="pinned", guards="warn", jobs=2,
                                   fail_fast=True))
    assert [result.run_id for result in stopped] == [gone]


def test_every_record_damaged_is_a_store_error_each(project: Project,
                                                    project_store: Store) -> None:
    """Runs whose records are all gone: one store error each, in the order given, none
    replayed."""
    project.write("fruit", FRUIT)
    runs = [pinrun.record(project.load("fruit", "vanishing"), {"n": n}, store=project_store).id
            for n in (1, 2)]
    for run_id in runs:
        record = project_store.get_ref(run_ref(run_id))
        assert record is not None
        _damage(project_store, record, delete=True)
    results = list(verify_runs(project_store, runs, code="workdir", guards="warn", jobs=2,
                               project_root=project.root))
    assert [(result.run_id, result.store_error) for result in results] == \
        [(run_id, True) for run_id in runs]
    assert all(result.seconds == 0 for result in results)
