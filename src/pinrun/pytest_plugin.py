"""pytest plugin: every recorded run is a test that replays it against the code on disk.

::

    pytest --pinrun                       # the store found from the working folder
    pytest --pinrun --pinrun-store .pinrun --pinrun-flow pricing

Each run becomes one test item, ``pinrun::<flow>/<run id>``, which replays
the run (the code on disk by default) and fails with the replay's
explanation (the first divergence, its diff and causes) when it does not
reproduce. As with ``pinrun replay``, a network connection (localhost
included) or a subprocess a step starts is refused and named as the cause,
unless ``--pinrun-allow-world``. Without ``--pinrun`` the plugin adds
nothing; it is registered by the ``pytest11`` entry point when pinrun is
installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

__all__ = ["PinrunDivergence", "RunItem"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--pinrun``, ``--pinrun-store``, ``--pinrun-flow``, ``--pinrun-code`` and
    ``--pinrun-allow-world``."""
    group = parser.getgroup("pinrun", "replay recorded pinrun runs as tests")
    group.addoption("--pinrun", action="store_true",
                    help="Replay every recorded run, one test per run.")
    group.addoption("--pinrun-store", metavar="PATH",
                    help="The store (default: $PINRUN_STORE, else .pinrun/ found upward).")
    group.addoption("--pinrun-flow", metavar="NAME", help="Only the runs of this flow.")
    group.addoption("--pinrun-code", choices=["workdir", "pinned"], default="workdir",
                    help="The code to replay with (default: workdir, the code on disk).")
    group.addoption("--pinrun-allow-world", action="store_true",
                    help="Let the steps' network connections and subprocesses through (only "
                         "noted); by default a replay refuses them.")


class PinrunDivergence(Exception):  # noqa: N818 - a test failure, named as pytest shows it
    """A run did not reproduce; the message is the replay's explanation."""


class RunItem(pytest.Item):
    """One recorded run, replayed as a test."""

    def __init__(self, *, run_id: str, store_path: str, code: str, allow_world: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.store_path = store_path
        self.code = code
        self.allow_world = allow_world

    def runtest(self) -> None:
        """Replay the run in a fresh process under its recorded hash seed; fail unless it
        reproduced (a process of its own: pytest's seed and modules are not the run's)."""
        from pinrun.artifacts.store import open_store
        from pinrun.engine.records import load_run, recorded_hash_seed
        from pinrun.verifier.worker import ReplayOptions, ReplayRequest, replay_in_child

        with open_store(self.store_path) as store:
            # Checked before a process starts under it: a bad seed is a store error.
            seed = recorded_hash_seed(store, load_run(store, self.run_id))
        options = ReplayOptions(code="pinned" if self.code == "pinned" else "workdir",
                                allow_world=self.allow_world)
        result = replay_in_child(
            ReplayRequest(self.store_path, self.run_id, options),
            environment={"PYTHONHASHSEED": seed} if seed is not None else {},
            timeout=600).as_value()
        if result["verdict"] != "reproduced":
            raise PinrunDivergence(result.get("explanation") or result.get("error") or
                                   result["verdict"])

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        """The replay's explanation, rather than a traceback into pinrun."""
        if isinstance(excinfo.value, PinrunDivergence):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the test comes from: the store, and the run."""
        return Path(self.store_path), None, f"pinrun run {self.run_id}"


class _Runs(pytest.Collector):
    """The parent of the run items (they are added at collection's end)."""

    def collect(self) -> list[pytest.Item]:
        return []


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: run items can be selected too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Add one item per selected run."""
    if not config.getoption("pinrun"):
        return
    from pinrun.artifacts.store import open_store
    from pinrun.engine.records import load_run
    from pinrun.errors import PinrunError
    from pinrun.verifier.verify import Selection, select_runs

    try:
        with open_store(config.getoption("pinrun_store")) as store:
            ids = select_runs(store, Selection(flow=config.getoption("pinrun_flow")))
            runs = [(run_id, load_run(store, run_id).flow) for run_id in ids]
            store_path = str(store.path)
    except PinrunError as exc:
        raise pytest.UsageError(f"--pinrun: {exc}") from None
    parent = _Runs.from_parent(session, name="pinrun")
    code = config.getoption("pinrun_code")
    allow_world = bool(config.getoption("pinrun_allow_world"))
    items.extend(RunItem.from_parent(parent, name=f"{flow}/{run_id}", run_id=run_id,
                                     store_path=store_path, code=code, allow_world=allow_world)
                 for run_id, flow in sorted(runs, key=lambda pair: (pair[1], pair[0])))
