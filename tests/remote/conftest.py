"""Remotes for real: a SeaweedFS S3 server on 127.0.0.1 (see ``server.py``), and a folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.helpers import SRC
from tests.remote.server import BUCKET, S3Server, ServerStartError, seaweedfs

__all__ = ["BUCKET", "S3Server", "ok", "pinrun", "s3_server"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS's ``weed mini`` on 127.0.0.1, with one bucket, for the whole session."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(seaweedfs(tmp_path_factory.mktemp("seaweedfs")))
        except ServerStartError as exc:
            pytest.fail(str(exc))
        yield server


def pinrun(cwd: Path, *args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun ARGS`` in ``cwd``, as a user runs it (cwd importable)."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PINRUN_STORE", "PINRUN_SIGNING_KEY")}
    environment["PYTHONPATH"] = os.pathsep.join([str(SRC), str(cwd)])
    environment["XDG_CONFIG_HOME"] = str(cwd / ".config-home")  # keys of this "machine"
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> str:
    """The output of a command that had to exit ``code`` (its streams when it did not)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    return result.stdout
