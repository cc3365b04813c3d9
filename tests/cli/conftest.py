"""What the command-line tests share: a CLI runner working in a project folder."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from pinrun.cli.main import cli
from tests.helpers import Project


def invoke(runner: CliRunner, *args: str, code: int = 0) -> Result:
    """Invoke ``pinrun ARGS...`` and check its exit code (output and stderr on failure)."""
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr)
    return result


@pytest.fixture
def project_cli(project: Project, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner working in the project folder, whose store is initialised."""
    monkeypatch.chdir(project.root)
    monkeypatch.delenv("PINRUN_STORE", raising=False)
    runner = CliRunner()
    invoke(runner, "init")
    return runner
