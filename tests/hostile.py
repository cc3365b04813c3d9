"""Crafting what an attacker would hand pinrun: records, bundles, and a CLI to feed them to."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import blake3
import zstandard

from pinrun.artifacts.bundle_format import BUNDLE_FORMAT, MAGIC, U32, U64
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.objects import FORMAT_VERSION, HEADER, encode_record
from tests.helpers import SRC

#: A module with an import-time side effect (it writes IMPORTED beside itself), and
#: classes a crafted value can name: importable in a victim's session, never imported.
EVIL_MODULE = """
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("evil_mod was imported")
import dataclasses, enum

@dataclasses.dataclass
class Thing:
    x: int = 0

class E(enum.Enum):
    A = 1

class F(enum.Flag):
    A = 1
"""

#: An honest two-step flow to record before crafting copies of its run.
TWO_STEP_FLOW = """
import pinrun

@pinrun.step
def load(order_id: str) -> dict:
    return {"items": [order_id, order_id]}

@pinrun.step
def count(items: list) -> dict:
    return {"n": len(items)}

flow = pinrun.Flow("demo", [load, count])
"""

# Runs the CLI in this child and writes its peak resident size (KiB) to a file,
# however the command ends. VmHWM belongs to the process's own memory map, so
# unlike getrusage's ru_maxrss it does not carry the parent's peak over exec.
_MEASURED_CLI = """
import os, sys
from pinrun.cli.main import main
sys.argv = ["pinrun", *sys.argv[1:]]
try:
    main()
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PINRUN_TEST_RSS_FILE"], "w") as out:
        out.write(peak)
"""


@dataclass(frozen=True)
class CliResult:
    """What one ``pinrun`` child process did."""

    returncode: int
    stdout: bytes
    stderr: bytes
    peak_rss_kib: int

    @property
    def one_line_error(self) -> bool:
        """Its stderr is a single ``pinrun: error:`` line, with no traceback."""
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return len(lines) == 1 and lines[0].startswith("pinrun: error:")


def pinrun_cli(cwd: Path, *args: str, extra_path: Path | None = None,
               timeout: float = 120) -> CliResult:
    """Run ``pinrun ARGS`` as a user would, in ``cwd``, measuring its peak memory."""
    rss_file = cwd / f".rss-{os.getpid()}-{len(args)}"
    path = str(SRC) + (os.pathsep + str(extra_path) if extra_path else "")
    env = dict(os.environ, PYTHONPATH=path, PYTHONHASHSEED="0",
               PINRUN_TEST_RSS_FILE=str(rss_file))
    env.pop("PINRUN_STORE", None)
    done = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *args], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout, check=False)
    rss = int(rss_file.read_text()) if rss_file.exists() else -1
    rss_file.unlink(missing_ok=True)
    return CliResult(done.returncode, done.stdout, done.stderr, rss)


def honest(kind: Kind, payload: bytes) -> tuple[Digest, bytes]:
    """A record as pinrun writes it."""
    obj = encode_record(kind, payload)
    return obj.digest, obj.record


def zstd_record(kind: Kind, digest: Digest, header_size: int, frame: bytes) -> bytes:
    """A record whose header claims ``header_size`` around any zstd ``frame``."""
    return HEADER.pack(FORMAT_VERSION, kind.code, 1, header_size) + frame


def zero_bomb(size: int) -> tuple[Digest, bytes]:
    """The digest of ``size`` zero bytes as a value, and a small zstd frame declaring them.

    Built in pieces, so making a gigabyte bomb costs this process no gigabyte.
    """
    hasher = blake3.blake3(Kind.VALUE.tag)
    compressor = zstandard.ZstdCompressor(write_content_size=True)
    chunks = []
    piece = bytes(1 << 20)
    writer = compressor.compressobj(size=size)
    for _ in range(size // len(piece)):
        hasher.update(piece)
        chunks.append(writer.compress(piece))
    chunks.append(writer.flush())
    return Digest(hasher.digest()), b"".join(chunks)


def write_bundle(path: Path, records: list[tuple[Digest, bytes]],
                 refs: dict[str, str] | None = None, roots: list[Digest] | None = None,
                 manifest: bytes | None = None) -> Path:
    """A well-formed bundle file (right magic, count and checksum) around any records."""
    import orjson

    if manifest is None:
        manifest = orjson.dumps({"format": BUNDLE_FORMAT, "pinrun": "test",
                                 "refs": refs or {}, "roots": [d.hex for d in roots or []]})
    body = MAGIC + bytes([BUNDLE_FORMAT]) + U32.pack(len(manifest)) + manifest
    for digest, record in records:
        body += b"\x01" + digest.raw + U64.pack(len(record)) + record
    body += b"\x00" + U64.pack(len(records))
    path.write_bytes(body + blake3.blake3(body).digest())
    return path


def value_record(json_bytes: bytes) -> tuple[Digest, bytes]:
    """A value object holding exactly these JSON bytes (tags and all)."""
    return honest(Kind.VALUE, json_bytes)


def digest_of(kind: Kind, payload: bytes) -> Digest:
    """The digest pinrun gives ``payload`` as ``kind``."""
    return compute_digest(kind, payload)


def files_outside(root: Path, *skip: str) -> dict[str, bytes]:
    """Every file under ``root`` (but the skipped top-level names) with its content."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip or not path.is_file():
            continue
        found[str(relative)] = path.read_bytes()
    return found
