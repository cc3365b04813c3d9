"""What a recorded run pins: step code and fingerprints, the flow, the environment."""

from __future__ import annotations

import platform
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from pinrun.artifacts.digest import Kind
from pinrun.artifacts.maintenance import fsck, gc
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run
from pinrun.engine.run import record
from pinrun.flows import FingerprintError, Flow, step
from pinrun.flows.environment import hash_seed_state
from tests.helpers import Project

PROJECT = Path(__file__).resolve().parents[2]
TAX_RATE = 0.2
LOCK = threading.Lock()  # a module-level object: counts by its definition
UNIDENTIFIABLE = object()  # listed in hash_includes: no value, code or definition


@step
def taxed(amount: float) -> dict[str, Any]:
    """Add tax at the module's rate."""
    return {"gross": round(amount * (1 + TAX_RATE), 2), "json": orjson.dumps(amount).decode()}


@step
def locked(amount: float) -> dict[str, Any]:
    """Reads a lock: fingerprinted by the lock's definition."""
    with LOCK:
        return {"gross": amount}


@step(hash_includes=[UNIDENTIFIABLE])
def unidentifiable(amount: float) -> dict[str, Any]:
    """Lists an object pinrun cannot identify: cannot be fingerprinted."""
    return {"gross": amount}


@step(version="locked-v2", hash_includes=[UNIDENTIFIABLE])
def locked_versioned(amount: float) -> dict[str, Any]:
    """The same, but a version names the code."""
    return {"gross": amount}


def _object(store: Store, digest: Any, kind: Kind) -> Any:
    found, payload = store.load(digest)
    assert found is kind
    from pinrun.artifacts import codec

    return codec.decode(payload)


def test_a_run_pins_flow_steps_code_and_environment(store: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The run names its flow, each step's code (with the module source) and the environment."""
    monkeypatch.setenv("PYTHONHASHSEED", "123")  # too late: this process's hashing is set
    run = record(Flow("tax", [taxed]), {"amount": 10.0}, store=store, project_root=PROJECT)
    flow = _object(store, run.flow_pin, Kind.FLOW)
    assert flow["name"] == "tax"
    assert flow["levels"] == [["taxed"]]
    (step_record,) = run.steps
    assert flow["steps"] == [step_record.code]
    pinned = _object(store, step_record.code, Kind.STEP)
    assert pinned["function"] == "taxed"
    assert len(pinned["fingerprint"]) == 64
    sources = [_object(store, digest, Kind.CODE) for digest in pinned["code"]]
    this_module = next(code for code in sources if code["module"] == __name__)
    assert this_module["path"] == "tests/engine/test_pinning.py"
    assert this_module["source"] == Path(__file__).read_text()
    env = _object(store, run.env, Kind.ENV)
    assert env["python"] == platform.python_version()
    assert env["hash_seed"] == hash_seed_state() != "123"
    assert "orjson" in env["distributions"]
    assert load_run(store, run.id).steps[0].code == step_record.code


def test_pins_are_shared_between_runs_and_kept_by_gc(store: Store) -> None:
    """Two runs of the same code share its pins, and gc keeps what runs reference."""
    first = record(Flow("tax", [taxed]), {"amount": 10.0}, store=store, project_root=PROJECT)
    second = record(Flow("tax", [taxed]), {"amount": 20.0}, store=store, project_root=PROJECT)
    assert first.flow_pin == second.flow_pin
    assert first.steps[0].code == second.steps[0].code
    gc(store)
    assert _object(store, second.steps[0].code, Kind.STEP)["function"] == "taxed"
    assert fsck(store).ok


def test_unfingerprintable_code_fails_before_anything_is_written(store: Store) -> None:
    """A step listing what no fingerprint can identify is refused up front."""
    with pytest.raises(FingerprintError, match=r"hash_includes\[0\]"):
        record(Flow("odd", [unidentifiable]), {"amount": 1.0}, store=store,
               project_root=PROJECT)
    assert store.object_count() == 0


def test_a_module_level_lock_is_recorded(store: Store) -> None:
    """A step reading a module-level lock records: the lock counts by its definition."""
    run = record(Flow("locked", [locked]), {"amount": 1.0}, store=store, project_root=PROJECT)
    assert len(_object(store, run.steps[0].code, Kind.STEP)["fingerprint"]) == 64


def test_a_version_stands_in_for_an_unfingerprintable_step(store: Store) -> None:
    """With version=, such a step is recorded: version kept, no automatic fingerprint."""
    run = record(Flow("versioned", [locked_versioned]), {"amount": 1.0}, store=store,
                 project_root=PROJECT)
    pinned = _object(store, run.steps[0].code, Kind.STEP)
    assert (pinned["version"], pinned["fingerprint"]) == ("locked-v2", None)
    assert pinned["code"]  # the source is still pinned for replay


CACHED = """
import pinrun
from {package} import helpers

LIMITS = [1, 2]
SCALE = 3


@pinrun.step
def scale(n: int) -> dict:
    return {{"scaled": n * SCALE, "limit": max(LIMITS)}}


flow = pinrun.Flow("cached", [scale])
"""

HELPERS = """
def unused_by_the_step():
    return 1
"""


def test_pins_are_cached_until_what_the_code_reads_changes(project: Project) -> None:
    """A cached pin is reused, also after a list is filled; a rebound global gives a new one."""
    from pinrun.flows.pinning import pin_step

    project.write("helpers", HELPERS)
    project.write("cached", CACHED.format(package=project.package))
    flow = project.load("cached")
    module: Any = sys.modules[f"{project.package}.cached"]
    first = pin_step(flow.steps[0], project.root)
    assert pin_step(flow.steps[0], project.root) is first  # cached
    module.LIMITS.append(9)  # mutated in place: state, which counts by its definition
    second = pin_step(flow.steps[0], project.root)
    assert second is first
    module.SCALE = 4  # rebound
    third = pin_step(flow.steps[0], project.root)
    assert third.value["fingerprint"] not in (first.value["fingerprint"],
                                              second.value["fingerprint"])
    module.SCALE = 3
    module.LIMITS.pop()
    assert pin_step(flow.steps[0], project.root).value["fingerprint"] == \
        first.value["fingerprint"]


def test_a_relative_root_is_pinned_afresh_after_a_change_of_folder(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pin cached for the root "." belongs to the folder "." named then: from another
    folder, "." is another project and the step is pinned for that one."""
    from pinrun.flows.pinning import pin_step

    project.write("helpers", HELPERS)
    project.write("cached", CACHED.format(package=project.package))
    flow = project.load("cached")
    monkeypatch.chdir(project.root)
    inside = pin_step(flow.steps[0], Path("."))
    assert inside.sources  # the project's modules, found under "."
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    outside = pin_step(flow.steps[0], Path("."))
    assert outside is not inside
    assert outside.sources != inside.sources
    monkeypatch.chdir(project.root)
    assert pin_step(flow.steps[0], Path(".")) is inside  # still kept for that folder


def test_the_source_bundle_holds_the_modules_imported_transitively(project: Project) -> None:
    """A project module the step's module imports is pinned too, even if the step never
    calls into it."""
    from pinrun.flows.pinning import pin_step

    project.write("helpers", HELPERS)
    project.write("cached", CACHED.format(package=project.package))
    pinned = pin_step(project.load("cached").steps[0], project.root)
    assert set(pinned.sources) == {f"{project.package}.cached", f"{project.package}.helpers"}
    assert pinned.sources[f"{project.package}.helpers"]["path"] == \
        f"{project.package}/helpers.py"


def test_a_file_edited_after_import_is_not_pinned_as_the_running_code(
        project: Project) -> None:
    """The text on disk is not what runs: pinning it would lie, so it is refused."""
    from pinrun.errors import StaleSourceError
    from pinrun.flows.pinning import pin_step

    project.write("helpers", HELPERS)
    project.write("cached", CACHED.format(package=project.package))
    flow = project.load("cached")
    path = project.root / project.package / "cached.py"
    path.write_text(path.read_text().replace("n * SCALE", "n - SCALE"))
    import linecache

    linecache.checkcache(str(path))
    with pytest.raises(StaleSourceError, match="changed after it was imported"):
        pin_step(flow.steps[0], project.root)
