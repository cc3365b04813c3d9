"""Pinned code: loading it back, and comparing the code on disk with it."""

from __future__ import annotations

import inspect
import sys

import pytest

from pinrun.artifacts.store import Store
from pinrun.errors import CodeChangedError
from pinrun.flows.entries import import_entry
from pinrun.flows.loader import pinned_modules, pinned_sources
from pinrun.flows.pinning import pin_step
from pinrun.flows.registry import flow_ref, load_pinned, pin_flow
from pinrun.flows.status import (
    CodeChangedWarning,
    apply_code_policy,
    compare_code,
    load_pinned_flow,
)
from tests.helpers import Project

SHOP = """
import pinrun

RATE = 2


def helper(x):
    return x * RATE


@pinrun.step
def load(n: int) -> dict:
    return {"m": helper(n)}


@pinrun.step
def finish(m: int) -> dict:
    return {"result": m + 1}


flow = pinrun.Flow("shop", [load, finish])
"""


def _pin(project: Project, store: Store) -> None:
    pin_flow(project.load("shop"), store, project.root)


def _status(project: Project, store: Store) -> dict[str, str]:
    pinned = load_pinned(store, "shop")
    assert pinned is not None
    status = compare_code(store, pinned.flow, project.load("shop"), project.root)
    return {item.name: item.state for item in status.steps}


def test_pin_flow_names_the_flow_under_a_ref(project: Project, project_store: Store) -> None:
    """flows/NAME points at the flow, its environment and where it is defined."""
    project.write("shop", SHOP)
    flow = project.load("shop")
    pinned = pin_flow(flow, project_store, project.root)
    assert project_store.ref(flow_ref("shop")) == pinned.digest
    assert pinned.entry == project.entry("shop")
    value, steps = load_pinned_flow(project_store, pinned.flow)
    assert value["levels"] == [["load"], ["finish"]]
    assert list(steps) == ["load", "finish"]
    assert load_pinned(project_store, "nothing") is None


def test_unchanged_code_is_the_same(project: Project, project_store: Store) -> None:
    """Right after pinning, every step is 'same'."""
    project.write("shop", SHOP)
    _pin(project, project_store)
    project.forget()
    assert _status(project, project_store) == {"load": "same", "finish": "same"}


def test_comments_and_formatting_are_only_formatting(project: Project,
                                                    project_store: Store) -> None:
    """A comment and new spacing change the text, not the fingerprint."""
    project.write("shop", SHOP)
    _pin(project, project_store)
    project.edit("shop", 'return {"m": helper(n)}', 'return {"m":   helper( n )}  # doubled')
    assert _status(project, project_store) == {"load": "formatting", "finish": "formatting"}


def test_a_changed_helper_or_constant_changes_the_step(project: Project,
                                                      project_store: Store) -> None:
    """The constant a helper reads is part of the step that calls it, not of the others."""
    project.write("shop", SHOP)
    _pin(project, project_store)
    project.edit("shop", "RATE = 2", "RATE = 3")
    assert _status(project, project_store) == {"load": "changed", "finish": "formatting"}
    pinned = load_pinned(project_store, "shop")
    assert pinned is not None
    status = compare_code(project_store, pinned.flow, project.load("shop"), project.root)
    assert status.changed
    assert "-RATE = 2\n+RATE = 3\n" in status.steps[0].diff
    assert status.summary() == "step 'load' changed"


def test_added_and_removed_steps_and_policies(project: Project, project_store: Store) -> None:
    """A new step, a dropped one, and a changed policy are all reported."""
    project.write("shop", SHOP)
    _pin(project, project_store)
    project.edit("shop", 'flow = pinrun.Flow("shop", [load, finish])',
                 "@pinrun.step\ndef extra(m: int) -> dict:\n    return {'x': m}\n\n\n"
                 'flow = pinrun.Flow("shop", [load, extra], on_collision="error")')
    pinned = load_pinned(project_store, "shop")
    assert pinned is not None
    status = compare_code(project_store, pinned.flow, project.load("shop"), project.root)
    assert {s.name: s.state for s in status.steps} == {
        "load": "formatting", "extra": "added", "finish": "removed"}
    assert status.structure == ("on_collision changed: 'warn' -> 'error'",)


def test_policies_warn_or_refuse(project: Project, project_store: Store) -> None:
    """warn warns, strict raises, disabled and artifact say nothing here."""
    project.write("shop", SHOP)
    _pin(project, project_store)
    project.edit("shop", "m + 1", "m + 2")
    pinned = load_pinned(project_store, "shop")
    assert pinned is not None
    status = compare_code(project_store, pinned.flow, project.load("shop"), project.root)
    with pytest.warns(CodeChangedWarning, match="step 'finish' changed"):
        apply_code_policy("warn", status, "the pin")
    with pytest.raises(CodeChangedError, match="Refusing to run"):
        apply_code_policy("strict", status, "the pin")
    apply_code_policy("disabled", status, "the pin")
    apply_code_policy("artifact", status, "the pin")


def test_pinned_modules_serve_the_pinned_source(project: Project, project_store: Store) -> None:
    """Inside the block the pinned text is imported, shown and fingerprinted; then restored."""
    project.write("shop", SHOP)
    flow = project.load("shop")
    pinned = pin_flow(flow, project_store, project.root)
    recorded = pin_step(flow.steps[0], project.root).value["fingerprint"]
    project.edit("shop", "RATE = 2", "RATE = 5")
    on_disk = project.load("shop")
    sources = pinned_sources(project_store, pinned.flow)
    assert set(sources) == {f"{project.package}.shop", project.package}  # the package too
    with pinned_modules(sources, project.root):
        old = import_entry(project.entry("shop"))
        module = sys.modules[f"{project.package}.shop"]
        assert module.RATE == 2
        assert "RATE = 2" in inspect.getsource(module)
        assert pin_step(old.steps[0], project.root).value["fingerprint"] == recorded
    assert sys.modules[f"{project.package}.shop"].flow is on_disk
    assert sys.modules[project.package].shop.RATE == 5  # the package attribute, too
    assert old.steps[0].func(1) == {"m": 2}  # the pinned functions still work afterwards
