"""Pinned code may only provide the recorded project's own modules.

A store may hold bytes written by someone else: a forged flow pin whose
sources name ``pinrun.verifier.compare``, ``json`` or ``click`` must never
load them in place of the real modules, in a replay or anywhere else.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pinrun
import pinrun.verifier.compare
from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run, run_ref
from pinrun.errors import CorruptObjectError, PinnedModuleError
from pinrun.flows.loader import check_pinned_module, pinned_modules, pinned_sources
from tests.helpers import SRC, Project

FLOW = """
import json

import click

import pinrun
import pinrun.verifier.compare


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


flow = pinrun.Flow("forged", [double])
"""

#: Forged module sources: each leaves a marker file if it is ever executed.
FORGED = {
    "pinrun.verifier.compare": ("pinrun/verifier/compare.py",
                                "def verdict():\n    return 'reproduced'\n"),
    "json": ("json.py", "def dumps(value):\n    return 'forged'\n"),
    "click": ("click.py", "def command():\n    return 'forged'\n"),
}


def _forge(store: Store, run_id: str, markers: Path) -> None:
    """Rewrite run ``run_id`` so its flow pin also names the forged modules' code."""
    run = load_run(store, run_id)
    assert run.flow_pin is not None
    flow = store.get_object(run.flow_pin, Kind.FLOW)
    with store.batch() as batch:
        forged: list[Digest] = []
        for module, (path, body) in FORGED.items():
            marker = markers / f"ran-{module}"
            source = f"open({str(marker)!r}, 'w').close()\n{body}"
            forged.append(batch.put(Kind.CODE, codec.encode(
                {"module": module, "path": path, "source": source}, root="code")))
        flow_pin = batch.put(Kind.FLOW, codec.encode(
            {**flow, "code": [*flow["code"], *forged]}, root="flow"))
        record = dataclasses.replace(run, flow_pin=flow_pin, digest=None)
        digest = batch.put(Kind.RUN, record.encode())
        batch.set_ref(run_ref(run.id), digest, expected=run.digest)


@pytest.fixture
def forged_run(project: Project, project_store: Store, tmp_path: Path) -> str:
    """A recorded run whose flow pin was rewritten to name pinrun, stdlib and click code."""
    project.write("shop", FLOW)
    run = pinrun.record(project.load("shop"), {"n": 2}, store=project_store)
    _forge(project_store, run.id, tmp_path)
    return run.id


def test_forged_pin_is_refused_by_replay_and_nothing_forged_runs(
        forged_run: str, project_store: Store, tmp_path: Path) -> None:
    """A pinned replay refuses the forged pin; the real pinrun, json and click stay loaded."""
    real = {name: sys.modules[name] for name in FORGED}
    report = pinrun.replay(forged_run, store=project_store)
    assert report.verdict == "error"
    assert report.error is not None
    assert "provides module" in report.error
    assert {name: sys.modules[name] for name in FORGED} == real
    assert sys.modules["pinrun.verifier.compare"] is pinrun.verifier.compare
    assert list(tmp_path.glob("ran-*")) == []


def test_forged_pin_is_refused_by_the_cli(forged_run: str, project: Project,
                                          tmp_path: Path) -> None:
    """`pinrun replay RUN` (pinned code) says the run could not be replayed, naming the
    module, and no forged source is executed."""
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    done = subprocess.run([sys.executable, "-m", "pinrun", "replay", forged_run, "--json"],
                          cwd=project.root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "error"
    assert "refusing the pinned code: it provides module" in report["error"]
    assert "\n" not in report["error"]
    assert "Traceback" not in done.stderr
    assert list(tmp_path.glob("ran-*")) == []


@pytest.mark.parametrize(("name", "reason"), [
    ("pinrun", "is pinrun itself"),
    ("pinrun.verifier.compare", "is pinrun itself"),
    ("json", "standard library"),
    ("os.path", "standard library"),
    ("sys", "standard library"),
    ("click", "installed distribution 'click'"),
    ("click.core", "installed distribution 'click'"),
    ("a..b", "not a valid dotted module name"),
    ("a.class", "not a valid dotted module name"),
    ("../evil", "not a valid dotted module name"),
    ("", "not a valid dotted module name"),
])
def test_names_pinned_code_may_not_provide(name: str, reason: str, tmp_path: Path) -> None:
    """pinrun, the standard library, other distributions and non-names are refused."""
    with pytest.raises(PinnedModuleError, match="refusing the pinned code") as caught:
        check_pinned_module(name, tmp_path)
    assert reason in caught.value.reason
    assert caught.value.module == name


def test_project_modules_and_the_projects_own_distribution_are_allowed(
        tmp_path: Path) -> None:
    """A project package passes, and so does one the project's pyproject.toml names."""
    check_pinned_module("shop.pricing", tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "PyTest"\n')
    check_pinned_module("_pytest.python", tmp_path)  # the project *is* pytest here


def test_the_answer_follows_pyproject_toml_as_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked again after pyproject.toml named another project, the answer is the new one
    (not the one kept for the name and root)."""
    monkeypatch.delenv("PINRUN_DISTRIBUTIONS", raising=False)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pytest"\n')
    check_pinned_module("_pytest.python", tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "a-shop"\n')
    with pytest.raises(PinnedModuleError, match="belongs to the installed distribution"):
        check_pinned_module("_pytest.python", tmp_path)


def test_a_distribution_pinrun_runs_on_is_never_the_project(tmp_path: Path) -> None:
    """Even named as the project, click (which pinrun runs on) may not come from pinned code."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "Click"\n')
    with pytest.raises(PinnedModuleError, match="belongs to the installed distribution"):
        check_pinned_module("click.core", tmp_path)


def test_what_the_project_is_this_machine_says(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution is the project's only when this machine names it (a
    stored code object claiming a distribution proves nothing), and the answer follows
    $PINRUN_DISTRIBUTIONS as it changes."""
    monkeypatch.delenv("PINRUN_DISTRIBUTIONS", raising=False)
    with pytest.raises(PinnedModuleError, match="PINRUN_DISTRIBUTIONS=pytest"):
        check_pinned_module("_pytest.python", tmp_path)
    monkeypatch.setenv("PINRUN_DISTRIBUTIONS", "pytest")
    check_pinned_module("_pytest.python", tmp_path)
    monkeypatch.setenv("PINRUN_DISTRIBUTIONS", "")
    with pytest.raises(PinnedModuleError):
        check_pinned_module("_pytest.python", tmp_path)
    sources = {"numpy": {"module": "numpy", "path": "numpy/__init__.py",
                         "source": "raise SystemExit('forged')", "distribution": "numpy"}}
    with pytest.raises(PinnedModuleError, match="belongs to the installed distribution"), \
            pinned_modules(sources, tmp_path):
        pass


def test_refusal_happens_before_any_module_is_touched(tmp_path: Path) -> None:
    """A refused name leaves sys.modules and sys.meta_path exactly as they were."""
    before_modules, before_path = dict(sys.modules), list(sys.meta_path)
    sources = {"shop": {"module": "shop", "path": "shop/__init__.py", "source": ""},
               "json": {"module": "json", "path": "json.py", "source": "X = 1"}}
    with pytest.raises(PinnedModuleError), pinned_modules(sources, tmp_path):
        pass
    assert sys.modules["json"] is before_modules["json"]
    assert sys.meta_path == before_path


def test_refusal_survives_pickling() -> None:
    """verify replays in worker processes: the error crosses them intact."""
    import pickle

    error = pickle.loads(pickle.dumps(PinnedModuleError("json", "is part of the standard "
                                                        "library")))
    assert error.module == "json"
    assert "json" in str(error)


def test_malformed_code_object_is_corrupt(forged_run: str, project_store: Store) -> None:
    """A code object without string fields, or with a path out of the project, is corrupt."""
    run = load_run(project_store, forged_run)
    assert run.flow_pin is not None
    flow = project_store.get_object(run.flow_pin, Kind.FLOW)
    for bad in ({"module": 3, "path": "a.py", "source": ""},
                {"module": "shop", "path": "../../etc/shop.py", "source": ""},
                {"module": "shop", "path": "/etc/shop.py", "source": ""}):
        with project_store.batch() as batch:
            code = batch.put(Kind.CODE, codec.encode(bad, root="code"))
            pin = batch.put(Kind.FLOW, codec.encode({**flow, "code": [code]}, root="flow"))
        with pytest.raises(CorruptObjectError, match=code.hex):
            pinned_sources(project_store, pin)


def test_pinned_code_never_stands_in_for_code_found_outside_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module importable from outside the project (a folder on PYTHONPATH, an editable
    install through a .pth file: no distribution maps it) may not come from pinned code;
    the same name with nothing installed, or in the project folder, may."""
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "sharedlib_x9.py").write_text("X = 1\n")
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    check_pinned_module("sharedlib_x9", root)  # not importable here: only the pin has it
    monkeypatch.syspath_prepend(str(libs))
    with pytest.raises(PinnedModuleError, match="neither in the project folder"):
        check_pinned_module("sharedlib_x9", root)
    (root / "ownlib_x9.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(root))
    check_pinned_module("ownlib_x9", root)


def test_a_namespace_package_is_judged_module_by_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """acme is a namespace with a portion in the project (acme/orders) and one outside
    (acme/other on PYTHONPATH): pinned code may stand in for the first, not the second,
    and a module found nowhere (only the pin has it) passes."""
    root = tmp_path / "project"
    (root / "acme" / "orders").mkdir(parents=True)
    (root / "acme" / "orders" / "__init__.py").write_text("")
    lib = tmp_path / "lib"
    (lib / "acme" / "other").mkdir(parents=True)
    (lib / "acme" / "other" / "x_9.py").write_text("X = 1\n")
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.syspath_prepend(str(root))
    check_pinned_module("acme.orders", root)
    check_pinned_module("acme.gone_9", root)
    with pytest.raises(PinnedModuleError, match=r"it is at .*lib/acme/other"):
        check_pinned_module("acme.other.x_9", root)


def test_the_working_folder_counts_only_when_it_is_not_above_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a folder that holds the project and a library beside it, the library is
    still outside the project."""
    root = tmp_path / "project"
    root.mkdir()
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "util_9.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PinnedModuleError, match="neither in the project folder"):
        check_pinned_module("util_9", root)
    monkeypatch.chdir(lib)  # a checkout elsewhere, the store shared: the working folder
    check_pinned_module("util_9", root)


def test_pinrun_modules_first_imported_in_the_block_stay(tmp_path: Path) -> None:
    """A pinrun module first imported under pinned code stays loaded when the block ends,
    even with a project root holding pinrun's own source (a checkout of pinrun): pinrun
    imports some of its modules only when first needed, a replay's included."""
    checkout = Path(pinrun.__file__).resolve().parents[2]  # src/pinrun/__init__.py
    name = "pinrun.world.variations"
    loaded = sys.modules.pop(name, None)
    try:
        sources = {"shop": {"module": "shop", "path": "shop.py", "source": "X = 1\n"}}
        with pinned_modules(sources, checkout) as left:
            __import__(name)
        assert name in sys.modules
        assert name not in left
    finally:
        if loaded is not None:
            sys.modules[name] = loaded


def test_put_back_modules_leave_again_with_what_the_block_imported(tmp_path: Path) -> None:
    """Kept code put back (``reuse``): a block that imports nothing gives back exactly the
    modules put back; one that imports a project module from disk gives that one back too,
    and sys.modules is left as it was before the block both times."""
    (tmp_path / "helper_on_disk.py").write_text("Y = 2\n")
    sources = {"shop_kept": {"module": "shop_kept", "path": "shop_kept.py",
                             "source": "X = 1\n"}}
    sys.path.insert(0, str(tmp_path))
    try:
        with pinned_modules(sources, tmp_path) as first:
            __import__("shop_kept")
        before = list(sys.modules)
        with pinned_modules(sources, tmp_path, reuse=first) as second:
            assert sys.modules["shop_kept"] is first["shop_kept"]
        assert second == first
        assert list(sys.modules) == before
        with pinned_modules(sources, tmp_path, reuse=second) as third:
            __import__("helper_on_disk")
        assert sorted(third) == ["helper_on_disk", "shop_kept"]
        assert third["shop_kept"] is first["shop_kept"]
        assert list(sys.modules) == before
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("shop_kept", "helper_on_disk"):
            sys.modules.pop(name, None)


def test_a_dicts_version_changes_with_every_change_and_only_then() -> None:
    """What pinned_modules reads of sys.modules: the same number while the dict is untouched,
    another after any change, even one undone (a name popped and put back)."""
    import sysconfig
    from collections.abc import Callable

    from pinrun.artifacts._speedups import dict_version

    names: dict[str, object] = {"a": 1, "b": 2}
    first = dict_version(names)
    if first is None:  # no version tags to read here: pinned_modules lists the names
        assert sys.version_info >= (3, 14) or sysconfig.get_config_var("Py_GIL_DISABLED")
        return
    assert dict_version(names) == first
    _ = names["a"], list(names), names.get("c")
    assert dict_version(names) == first
    seen: set[int | None] = {first}
    changes: list[Callable[[], object]] = [
        lambda: names.__setitem__("c", 3), lambda: names.pop("c"),
        lambda: names.__setitem__("a", names.pop("a")),
        lambda: names.__setitem__("b", 5), lambda: names.update({"d": 4})]
    for change in changes:
        change()
        now = dict_version(names)
        assert now not in seen
        seen.add(now)
    with pytest.raises(TypeError):
        dict_version([])  # type: ignore[arg-type]
