"""A flow shipped as an installed package (``pip install .``) is pinned and replays.

The scenario of a Docker image: the service is a wheel installed into a
virtual environment, the store lives in a data folder with no checkout. A
run pins the package's own sources; after an upgrade to a buggy release,
replay with the code on disk names the environment drift and the code drift
with its diff, and replay with the pinned code still reproduces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pinrun import open_store
from pinrun.artifacts.digest import Kind
from pinrun.engine.records import load_run
from pinrun.flows.loader import pinned_sources
from tests.helpers import SRC
from tests.scratch_venv import ScratchVenv, build_wheel

pytestmark = pytest.mark.slow

STEPS = """
    import logging

    log = logging.getLogger(__name__)
    TAX = {rate}


    def with_tax(amount):
        return round(amount * (1 + TAX), 2)
"""

FLOW = """
    import pinrun

    from orders_svc import pricing


    @pinrun.step
    def total(lines: list) -> dict:
        return {"total": pricing.with_tax(sum(q * p for q, p in lines))}


    flow = pinrun.Flow("orders", [total])
"""


def _wheel(folder: Path, version: str, rate: str) -> Path:
    return build_wheel(folder, "orders-svc", version, {
        "orders_svc/__init__.py": "",
        "orders_svc/pricing.py": STEPS.format(rate=rate),
        "orders_svc/flow.py": FLOW,
    })


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScratchVenv, Path, Path]:
    """orders-svc 1.0.0 installed in a scratch venv, a data folder, and the 1.0.1 wheel."""
    base = tmp_path_factory.mktemp("deploy")
    venv = ScratchVenv(base / "venv")
    venv.install(_wheel(base, "1.0.0", "0.2"))
    data = base / "data"
    data.mkdir()
    assert venv.pinrun(data, "init").returncode == 0
    return venv, data, _wheel(base, "1.0.1", "0.25")


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_an_installed_package_is_pinned_and_replays_after_an_upgrade(
        deployed: tuple[ScratchVenv, Path, Path]) -> None:
    """The run pins orders-svc's sources and version; after 1.0.1 replaces it, workdir
    replay names `orders-svc 1.0.0 -> 1.0.1` and the code diff, pinned replay reproduces
    (once the replaying machine names orders-svc as the project's)."""
    venv, data, upgrade = deployed
    recorded = venv.pinrun(data, "run", "orders_svc.flow:flow", "--set", "lines=[[2, 10.0]]")
    assert recorded.returncode == 0, recorded.stderr
    assert "pinned no code" not in recorded.stderr
    run_id = recorded.stdout.strip()

    with open_store(data / ".pinrun") as store:
        run = load_run(store, run_id)
        assert run.flow_pin is not None
        assert run.env is not None
        pinned = {code["module"]: code for code in pinned_sources(store, run.flow_pin).values()}
        env = store.get_object(run.env, Kind.ENV)
    assert set(pinned) == {"orders_svc", "orders_svc.flow", "orders_svc.pricing"}
    assert pinned["orders_svc.pricing"]["distribution"] == "orders-svc"
    assert pinned["orders_svc.pricing"]["path"] == "orders_svc/pricing.py"
    assert "TAX = 0.2" in pinned["orders_svc.pricing"]["source"]
    assert env["distributions"]["orders-svc"] == "1.0.0"

    venv.install(upgrade)
    # What the project is, the replaying machine says, never the record: until it names
    # orders-svc, neither its modules nor the recorded entry are imported.
    for code in ("workdir", "pinned"):
        refused = venv.pinrun(data, "replay", run_id, "--code", code, "--json")
        assert refused.returncode == 1, refused.stderr
        assert "PINRUN_DISTRIBUTIONS=orders-svc" in _json(refused)["error"]
    named = {"PINRUN_DISTRIBUTIONS": "orders-svc"}
    workdir = venv.pinrun(data, "replay", run_id, "--code", "workdir", "--json", env=named)
    assert workdir.returncode == 1, workdir.stderr
    report = _json(workdir)
    assert report["verdict"] == "diverged", report
    causes = [cause for step in report["steps"] for cause in step["causes"]]
    causes += report["causes"]
    messages = " | ".join(cause["message"] for cause in causes)
    assert "orders-svc" in messages
    assert "1.0.0" in messages
    assert "1.0.1" in messages
    drift = [cause for cause in causes if cause["kind"] == "code drift"]
    assert drift
    assert "-TAX = 0.2" in drift[0]["detail"]
    assert "+TAX = 0.25" in drift[0]["detail"]

    pinned_replay = venv.pinrun(data, "replay", run_id, "--json", env=named)
    assert pinned_replay.returncode == 0, (pinned_replay.stdout, pinned_replay.stderr)
    assert _json(pinned_replay)["verdict"] == "reproduced"


def test_other_project_distributions_are_pinned_when_named(
        deployed: tuple[ScratchVenv, Path, Path], tmp_path: Path) -> None:
    """A helper package the service imports is environment (named with its version)
    until the project names it: [tool.pinrun] distributions or $PINRUN_DISTRIBUTIONS."""
    venv, data, _ = deployed
    venv.install(build_wheel(tmp_path, "shop-common", "2.0.0", {
        "shop_common/__init__.py": "", "shop_common/rates.py": "def rate():\n    return 2\n"}))
    venv.install(build_wheel(tmp_path, "shop-svc", "1.0.0", {
        "shop_svc/__init__.py": "",
        "shop_svc/flow.py": FLOW.replace("orders_svc import pricing", "shop_common import rates")
        .replace("pricing.with_tax(sum(q * p for q, p in lines))",
                 "rates.rate() * sum(q * p for q, p in lines)").replace('"orders"', '"shop"')}))

    def pinned_modules(**env: str) -> dict[str, Any]:
        result = venv.pinrun(data, "run", "shop_svc.flow:flow", "--set", "lines=[[1, 3.0]]",
                             env=env)
        assert result.returncode == 0, result.stderr
        with open_store(data / ".pinrun") as store:
            run = load_run(store, result.stdout.strip())
            assert run.flow_pin is not None
            return dict(pinned_sources(store, run.flow_pin))

    assert set(pinned_modules()) == {"shop_svc", "shop_svc.flow"}
    named = pinned_modules(PINRUN_DISTRIBUTIONS="shop-common")
    assert set(named) == {"shop_svc", "shop_svc.flow", "shop_common", "shop_common.rates"}
    assert named["shop_common.rates"]["distribution"] == "shop-common"
    (data / "pyproject.toml").write_text('[tool.pinrun]\ndistributions = ["shop-common"]\n')
    try:
        assert "shop_common.rates" in pinned_modules()
    finally:
        (data / "pyproject.toml").unlink()


def test_a_flow_that_pins_no_code_says_so(tmp_path: Path) -> None:
    """A flow whose modules lie outside the project and every project distribution
    records with a warning, and `show` says the run pinned no code."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ext_flow.py").write_text(textwrap.dedent(FLOW).replace(
        "from orders_svc import pricing\n", "").replace(
        "pricing.with_tax(sum(q * p for q, p in lines))", "sum(q * p for q, p in lines)"))
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(elsewhere)])

    def pinrun(*args: str, cwd: Path = project) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    assert pinrun("init").returncode == 0
    recorded = pinrun("run", "ext_flow:flow", "--set", "lines=[[1, 2.0]]")
    assert recorded.returncode == 0, recorded.stderr
    assert "pinrun: warning: flow 'orders' pinned no code" in recorded.stderr
    shown = pinrun("show", recorded.stdout.strip())
    assert "pinned code: none" in shown.stdout
    assert json.loads(pinrun("show", recorded.stdout.strip(), "--json").stdout)[
        "pinned_code"] == []
    # From the flow's own folder (a recorded entry imports only from the project's or the
    # working folder), "pinned" replay runs the installed code, and says so.
    replayed = pinrun("replay", recorded.stdout.strip(), "--store", str(project / ".pinrun"),
                      cwd=elsewhere)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "installed code (none pinned): reproduced" in " ".join(replayed.stdout.split())
    assert "pinned code" not in replayed.stdout


def test_a_namespace_shared_with_an_installed_package_stays_the_projects(
        deployed: tuple[ScratchVenv, Path, Path], tmp_path: Path) -> None:
    """The project's acme/shop.py (a namespace package) is its own although the installed
    acme-utils provides acme.utils: recorded, it replays with either code."""
    venv, _, _ = deployed
    venv.install(build_wheel(tmp_path, "acme-utils", "1.0.0", {
        "acme/utils/__init__.py": "def double(x):\n    return 2 * x\n"}))
    project = tmp_path / "project"
    (project / "acme").mkdir(parents=True)
    (project / "acme" / "shop.py").write_text(textwrap.dedent(FLOW).replace(
        "from orders_svc import pricing", "from acme.utils import double").replace(
        "pricing.with_tax(sum(q * p for q, p in lines))", "double(sum(q * p for q, p in lines))"))
    assert venv.pinrun(project, "init").returncode == 0
    recorded = venv.pinrun(project, "run", "acme.shop:flow", "--set", "lines=[[1, 2.0]]")
    assert recorded.returncode == 0, recorded.stderr
    for code in ("pinned", "workdir"):
        replayed = venv.pinrun(project, "replay", recorded.stdout.strip(), "--code", code,
                               "--json")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert _json(replayed)["verdict"] == "reproduced"
