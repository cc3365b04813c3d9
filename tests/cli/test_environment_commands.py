"""The environment through the CLI: a run replayed under another time zone, pin and run
recording one environment, and show printing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import SRC, Project

TZ_FLOW = """
from datetime import datetime

import pinrun


@pinrun.step
def local_hour() -> dict:
    # No clock read: a fixed instant, shown in the local time zone.
    return {"hour": datetime.fromtimestamp(1_700_000_000).hour}


flow = pinrun.Flow("local-hour", [local_hour])
"""


def _pinrun(project: Project, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun ARGS`` in the project, as a user starts it (no seed of its own)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PINRUN_STORE", "PYTHONHASHSEED", "PINRUN_HASH_SEED_SET", "TZ")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    env.update(environ)
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def tz_project(project: Project) -> Project:
    """A project with a store and a flow whose result depends on the local time zone."""
    project.write("hours", TZ_FLOW)
    assert _pinrun(project, "init").returncode == 0
    return project


def test_a_run_replayed_in_another_time_zone_names_the_drift(tz_project: Project) -> None:
    """Recorded with TZ=UTC: replayed in Tokyo it diverges with cause `TZ: UTC -> Asia/Tokyo`;
    in UTC it reproduces."""
    done = _pinrun(tz_project, "run", tz_project.entry("hours"), TZ="UTC")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    tokyo = _pinrun(tz_project, "replay", run_id, "--json", TZ="Asia/Tokyo")
    assert tokyo.returncode == 1, tokyo.stderr
    report = json.loads(tokyo.stdout)
    assert report["verdict"] == "diverged"
    assert [c["message"] for c in report["causes"] if c["kind"] == "environment drift"] == [
        "TZ: UTC -> Asia/Tokyo"]
    utc = _pinrun(tz_project, "replay", run_id, TZ="UTC")
    assert utc.returncode == 0, utc.stdout + utc.stderr
    assert "reproduced" in utc.stdout


API_RECORD = """
import pinrun
from {package}.hours import flow

with pinrun.open_store(".pinrun") as store:
    print(pinrun.record(flow, {{}}, store=store).env.hex)
"""


def test_pin_run_and_the_api_record_one_environment(tz_project: Project) -> None:
    """On one machine, `pinrun pin` pins the environment `pinrun run` then records, and the
    API records it too under the same seed: one digest."""
    pinned = _pinrun(tz_project, "pin", tz_project.entry("hours"), "--json")
    assert pinned.returncode == 0, pinned.stderr
    run_id = _pinrun(tz_project, "run", tz_project.entry("hours")).stdout.strip()
    shown = _pinrun(tz_project, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["env"] == json.loads(pinned.stdout)["env"]
    assert run["environment"]["hash_seed"] == "0"
    env = {key: value for key, value in os.environ.items()
           if key not in ("PINRUN_HASH_SEED_SET", "PINRUN_STORE", "TZ")}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), str(tz_project.root)]), PYTHONHASHSEED="0")
    api = subprocess.run([sys.executable, "-c", API_RECORD.format(package=tz_project.package)],
                         cwd=tz_project.root, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert api.returncode == 0, api.stderr
    assert api.stdout.strip() == run["env"]


def test_show_prints_the_environment_escaped(tz_project: Project) -> None:
    """show names the time zone, locale and hash seed in text and --json; stored text escaped."""
    weird = "Etc/\x1b[2JEvil"
    run_id = _pinrun(tz_project, "run", tz_project.entry("hours"), TZ=weird).stdout.strip()
    text = _pinrun(tz_project, "show", run_id)
    assert text.returncode == 0, text.stderr
    words = " ".join(text.stdout.split())  # rich wraps long lines at 80 columns
    assert "hash seed 0" in words
    assert "TZ Etc/\\x1b[2JEvil" in words
    assert "\x1b" not in text.stdout
    assert "LC_NUMERIC C" in words
    env = json.loads(_pinrun(tz_project, "show", run_id, "--json").stdout)["environment"]
    assert env["timezone"] == weird
    assert env["machine"]
    assert set(env["locale"]) >= {"LC_CTYPE", "LC_NUMERIC", "encoding"}


RECORD_TWICE = """
import json, sys, warnings
import pinrun
from {package}.hours import flow

warnings.simplefilter("default")
with pinrun.open_store(".pinrun") as store:
    runs = [pinrun.record(flow, {{}}, store=store) for _ in range(2)]
    from pinrun.engine.records import load_env
    print(json.dumps([[run.id, load_env(store, run)["hash_seed"]] for run in runs]))
"""


def test_the_api_records_a_random_seed_warns_once_and_replay_names_it(
        tz_project: Project) -> None:
    """Two API records under a random seed: "random" recorded, one HashSeedWarning; replayed
    in another time zone, the causes name the TZ and the random seed."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONHASHSEED", "PINRUN_HASH_SEED_SET", "PINRUN_STORE")}
    env.update(PYTHONPATH=os.pathsep.join([str(SRC), str(tz_project.root)]), TZ="UTC")
    done = subprocess.run([sys.executable, "-c", RECORD_TWICE.format(package=tz_project.package)],
                          cwd=tz_project.root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    (first, seed), (_, again) = json.loads(done.stdout)
    assert seed == again == "random"
    assert done.stderr.count("HashSeedWarning") == 1, done.stderr
    assert "PYTHONHASHSEED=0" in done.stderr
    tokyo = _pinrun(tz_project, "replay", first, "--json", TZ="Asia/Tokyo")
    assert tokyo.returncode == 1, tokyo.stderr
    causes = {cause["kind"]: cause["message"] for cause in json.loads(tokyo.stdout)["causes"]}
    assert causes["environment drift"] == "TZ: UTC -> Asia/Tokyo"
    assert "random when the run was recorded" in causes["hash seed"]
    assert _pinrun(tz_project, "replay", first, TZ="UTC").returncode == 0


def test_the_cli_shows_the_hash_seed_warning_as_one_line(tz_project: Project) -> None:
    """A CLI run left without a seed (told it has one already) warns in one `pinrun:` line."""
    done = _pinrun(tz_project, "run", tz_project.entry("hours"), PINRUN_HASH_SEED_SET="1")
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("pinrun: warning: this process's hash seed is random")
