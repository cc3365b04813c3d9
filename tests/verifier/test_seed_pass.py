"""verify's seed pass: a scan of each record's head finds what parsing finds, and a plan
the scan got wrong is caught by the workers, which replay each run under its own seed."""

from __future__ import annotations

import pytest

import pinrun
from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run, run_ref
from pinrun.errors import CorruptObjectError
from pinrun.verifier import seed_pass
from pinrun.verifier.seed_pass import _HEAD, _UNREAD, _parsed_env, env_of, hash_seeds
from pinrun.verifier.verify import verify_runs
from pinrun.verifier.worker import ReplayOptions, replay_in_this_process
from tests.helpers import Project, project_cli
from tests.verifier.test_library_replay import FRUIT
from tests.verifier.test_verify_groups import _run_under

ENV = "ab" * 32
OTHER = "cd" * 32
RUN = "20260101T000000000-abcdef"


def _payload(store: Store, run_id: str) -> bytes:
    target = store.get_ref(run_ref(run_id))
    assert target is not None
    kind, payload = store.load(target)
    assert kind is Kind.RUN
    return payload


def test_the_scan_finds_what_parsing_finds(project: Project, project_store: Store) -> None:
    """On records pinrun wrote (whole, and the links of a run recorded step by step), the
    scan answers without parsing, the same environment as parsing the record."""
    project.write("fruit", FRUIT)
    flow = project.load("fruit", "fruit")
    runs = [pinrun.record(flow, {"n": n}, store=project_store).id for n in (3, 4)]
    runs.append(pinrun.record(flow, {"n": 5}, store=project_store, durability="step").id)
    for run_id in runs:
        payload = _payload(project_store, run_id)
        assert _HEAD.match(payload) is not None, payload[:200]
        found = env_of(run_id, payload)
        assert found == _parsed_env(run_id, payload)
        env = load_run(project_store, run_id).env
        assert env is not None
        assert found == env.hex


@pytest.mark.parametrize(("payload", "expected"), [
    # As pinrun writes it.
    (f'{{"entry":"m:F","env":{{"$digest":"{ENV}"}},"flow":"f","id":"{RUN}"}}', ENV),
    (f'{{"continues":{{"$digest":"{OTHER}"}},"entry":null,"env":null,"id":"{RUN}"}}', None),
    # An entry with an escaped quote is parsed, not scanned: its text names no env.
    (f'{{"entry":"m:F\\",\\"env\\":{{\\"$digest\\":\\"{OTHER}\\"}}",'
     f'"env":{{"$digest":"{ENV}"}},"id":"{RUN}"}}', ENV),
    # No env at all (older records), another run's record, and no JSON: parsed.
    (f'{{"entry":"m:F","flow":"f","id":"{RUN}"}}', None),
    (f'{{"entry":"m:F","env":{{"$digest":"{ENV}"}},"id":"20260101T000000000-000000"}}',
     _UNREAD),
    ('{"entry":"m:F","env":{"$digest":"', _UNREAD),
    # An env whose digest is not one: parsed, and left for the slow way.
    (f'{{"entry":"m:F","env":{{"$digest":"XY"}},"id":"{RUN}"}}', "XY"),
])
def test_the_scan_of_odd_heads(payload: str, expected: object) -> None:
    """A head the scan does not know falls back to parsing; the answers agree."""
    assert env_of(RUN, payload.encode()) == expected
    assert _parsed_env(RUN, payload.encode()) == expected


def test_a_crafted_record_can_mislead_the_scan_only() -> None:
    """An env member twice: the scan takes the first, parsing the last; a record cut
    short after its head: the scan reads the head. What the scan finds is a plan the
    workers check (the next tests), which read each record whole."""
    payload = (f'{{"entry":"m:F","env":{{"$digest":"{OTHER}"}},"env":{{"$digest":"{ENV}"}},'
               f'"id":"{RUN}"}}').encode()
    assert env_of(RUN, payload) == OTHER
    assert _parsed_env(RUN, payload) == ENV
    payload = f'{{"entry":"m:F","env":{{"$digest":"{ENV}"}},"id":"{RUN}"'.encode()
    assert env_of(RUN, payload) == ENV
    assert _parsed_env(RUN, payload) is _UNREAD


def test_a_worker_hands_back_a_run_of_another_seed(project: Project,
                                                    project_store: Store) -> None:
    """A worker started for another seed than the run's does not replay it: its result is
    ``misrouted``, and says so in its value; under the run's own seed it replays."""
    project.write("fruit", FRUIT)
    run = pinrun.record(project.load("fruit", "fruit"), {"n": 3}, store=project_store)
    options = ReplayOptions.build(code="workdir", guards="warn", project_root=project.root)
    seed = next(hash_seeds(project_store, [run.id]))[1]
    assert not isinstance(seed, Exception)
    other = "7" if seed != "7" else "8"
    result = replay_in_this_process(project_store, run.id, options, (other,))
    assert result.misrouted
    assert result.report is None
    assert result.as_value()["misrouted"] is True
    result = replay_in_this_process(project_store, run.id, options, (seed,))
    assert not result.misrouted
    assert result.verdict == "reproduced"
    assert "misrouted" not in result.as_value()


def test_the_unproven_read_is_not_hashed(project_store: Store) -> None:
    """``load_many(proven=False)`` hands back a payload that does not hash to its digest
    (the seed pass's hint); the proven read refuses it."""
    digest = project_store.put_blob(b"a small blob, stored as is")
    env = project_store.environment
    objects = env.dbs["objects"]

    def damage(txn: object) -> None:
        good = txn.get(digest.raw, db=objects)  # type: ignore[attr-defined]
        txn.put(digest.raw, good[:-1] + b"?", db=objects)  # type: ignore[attr-defined]

    env.write(damage)
    assert project_store.load_many([digest], proven=False) == \
        [(Kind.BLOB, b"a small blob, stored as i?")]
    with pytest.raises(CorruptObjectError):
        project_store.load_many([digest])


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_misled_plan_still_replays_each_run_under_its_seed(
        project: Project, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    """Runs of two seeds whose scan is made to lie (each run's env is read as the other
    seed's): the workers hand each run back, the parent reads its seed exactly, and
    every run reproduces under its own seed, after the runs the plan got right.
    Replayed under the wrong seed, a set's order would diverge."""
    project.write("fruit", FRUIT)
    assert project_cli(project, "init").returncode == 0
    a, b, c = (_run_under(project, monkeypatch, seed, n) for seed, n in
               (("123", 16), ("456", 15), ("123", 14)))
    with Store.open(project.root / ".pinrun") as store:
        envs = {run_id: load_run(store, run_id).env for run_id in (a, b)}
        swapped = {envs[a].hex: envs[b].hex, envs[b].hex: envs[a].hex}  # type: ignore[union-attr]
        scan = seed_pass.env_of

        def lying(run_id: str, payload: bytes) -> object:
            found = scan(run_id, payload)
            return swapped[found] if run_id == b and isinstance(found, str) else found

        monkeypatch.setattr(seed_pass, "env_of", lying)
        results = list(verify_runs(store, [a, b, c], code="pinned", guards="warn",
                                   jobs=jobs))
        assert [result.run_id for result in results] == [a, c, b]
        for result in results:
            assert result.report is not None, result.error
            assert result.verdict == "reproduced", result.report.explain()


@pytest.mark.slow
def test_a_record_that_misleads_the_scan_sets_no_other_runs_seed(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run read names another environment by scan than it does: its own seed
    is read exactly, and not kept for the environment the scan named, so the honest
    runs of that environment still get theirs (else each would be handed back)."""
    project.write("fruit", FRUIT)
    assert project_cli(project, "init").returncode == 0
    a, b = (_run_under(project, monkeypatch, seed, n) for seed, n in (("123", 16), ("456", 15)))
    with Store.open(project.root / ".pinrun") as store:
        env_a = load_run(store, a).env
        assert env_a is not None
        scan = seed_pass.env_of

        def lying(run_id: str, payload: bytes) -> object:
            return env_a.hex if run_id == b else scan(run_id, payload)

        monkeypatch.setattr(seed_pass, "env_of", lying)
        assert dict(hash_seeds(store, [b, a])) == {b: "456", a: "123"}
