"""The pytest plugin: `pytest --pinrun` makes every recorded run a test that replays it."""

from __future__ import annotations

import textwrap

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from tests.helpers import Project

FLOW = """
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


flow = pinrun.Flow("doubling", [double])
"""


def test_each_run_is_a_test_and_a_divergence_fails_it(pytester: pytest.Pytester,
                                                      project: Project) -> None:
    """Two runs pass; after an edit both fail with the replay's explanation."""
    project.write("doubling", FLOW)
    with Store.open(project.root / ".pinrun", create=True) as store:
        for n in (1, 2):
            record(project.load("doubling"), {"n": n}, store=store)
    # An ordinary test beside the run items: the plugin must add to a suite, not replace it.
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    store_path = str(project.root / ".pinrun")
    passed = pytester.runpytest_subprocess("--pinrun", "--pinrun-store", store_path,
                                           "-p", "no:cacheprovider")
    passed.assert_outcomes(passed=3)
    source = project.root / project.package / "doubling.py"
    source.write_text(source.read_text().replace("n * 2", "n * 3"))
    failed = pytester.runpytest_subprocess("--pinrun", "--pinrun-store", store_path,
                                           "--pinrun-flow", "doubling", "-p",
                                           "no:cacheprovider")
    failed.assert_outcomes(passed=1, failed=2)
    failed.stdout.fnmatch_lines(["*first divergence: step 'double' (outputs)*",
                                 "*~ doubled: 2 -> 3*"])
    pinned = pytester.runpytest_subprocess("--pinrun", "--pinrun-store", store_path,
                                           "--pinrun-code", "pinned", "-p",
                                           "no:cacheprovider")
    pinned.assert_outcomes(passed=3)


def test_without_the_option_nothing_is_added(pytester: pytest.Pytester) -> None:
    """The plugin is inert unless asked."""
    # A trivially passing test: what is checked is that it alone is collected.
    pytester.makepyfile(test_plain=textwrap.dedent("""
        def test_plain():
            assert True
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "--pinrun" in pytester.runpytest_subprocess("--help").stdout.str()
