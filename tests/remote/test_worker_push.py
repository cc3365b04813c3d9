"""A long-lived worker records many runs and pushes them in batches from a thread."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from tests.remote.conftest import ok, pinrun
from tests.remote.scenario import FLOW, as_json, empty_machine

WORKER = '''
    import sys

    import pinrun
    from pinrun.engine.publishing import BackgroundPusher
    from shop.orders import flow

    with pinrun.open_store() as store, BackgroundPusher(
            store, sys.argv[1], every_runs=10, every_seconds=600) as pusher:
        for i in range(25):
            run = pinrun.record(flow, {"order_id": f"W-{i}"}, store=store)
            pusher.recorded(run.id)
    print(sorted(len(report.runs) for report in pusher.reports), len(pusher.errors))
'''


@pytest.mark.slow
def test_a_worker_pushes_in_batches_and_loses_nothing(tmp_path: Path) -> None:
    """25 runs, a push every 10: at least two pushes before the end, and every run arrives."""
    prod = tmp_path / "prod"
    (prod / "shop").mkdir(parents=True)
    (prod / "shop" / "__init__.py").write_text("")
    (prod / "shop" / "orders.py").write_text(textwrap.dedent(FLOW))
    (prod / "worker.py").write_text(textwrap.dedent(WORKER))
    ok(pinrun(prod, "init"))
    remote = str(tmp_path / "remote")
    import os
    import subprocess
    import sys

    from tests.helpers import SRC

    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{prod}", "PYTHONHASHSEED": "0"}
    env.pop("PINRUN_STORE", None)
    result = subprocess.run([sys.executable, "worker.py", remote], cwd=prod, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    sizes, errors = result.stdout.strip().rsplit(" ", 1)
    batches = [int(n) for n in sizes.strip("[]").split(",")]
    assert sum(batches) == 25
    assert len(batches) >= 2
    assert errors == "0"
    laptop = empty_machine(tmp_path / "laptop")
    pulled = as_json(ok(pinrun(laptop, "pull", "--remote", remote, "--all", "--json")))
    assert len(pulled["pulled"]) == 25


@pytest.mark.slow
def test_runs_our_key_published_are_described_without_reading_their_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second push of runs the remote holds, signed by our key, reads no run record;
    a run whose record moved on since is read again."""
    from pinrun.artifacts.store import Store
    from pinrun.engine import publishing
    from pinrun.remote.remotes import open_remote
    from tests.remote.scenario import production

    prod, ids = production(tmp_path / "prod", 3)
    ok(pinrun(prod, "key", "generate", "prod-1"))
    remote = str(tmp_path / "remote")
    ok(pinrun(prod, "push", "--remote", remote, "--all"))
    catalog = open_remote(None, remote).catalog()
    read: list[str] = []
    from pinrun.engine.records import load_run as real

    def counting(store: Store, run_id: str) -> object:
        read.append(run_id)
        return real(store, run_id)

    monkeypatch.setattr(publishing, "load_run", counting)
    with Store.open(prod / ".pinrun") as store:
        described = publishing.describe_runs(store, ids, catalog.runs)
        assert read == []
        assert [run.digest for run in described] == [catalog.runs[i].digest for i in ids]
        moved = dict(catalog.runs)
        moved[ids[0]] = dataclasses.replace(moved[ids[0]], digest=moved[ids[1]].digest)
        publishing.describe_runs(store, ids, moved)
        assert read == [ids[0]]
