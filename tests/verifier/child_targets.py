"""Functions a test runs in a child interpreter through pinrun.world.processes.call_in_child."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _short(text: bytes) -> bytes:
    """A pickle SHORT_BINUNICODE of ``text``."""
    return b"\x8c" + bytes([len(text)]) + text


def forged_answer(marker: str) -> None:
    """Write an answer that would run ``touch MARKER`` in the parent if it were trusted:
    ("value", pinrun.world.processes:os.system(...)), a dotted name through a pinrun module."""
    answer = (b"\x80\x04" + _short(b"value") + _short(b"pinrun.world.processes") +
              _short(b"os.system") + b"\x93" + _short(f"touch {marker}".encode()) +
              b"\x85R\x86.")  # STACK_GLOBAL, TUPLE1, REDUCE, TUPLE2, STOP
    Path(sys.argv[2]).write_bytes(answer)
    os._exit(0)


def leave_a_process(seconds: int) -> str:
    """Start a process that outlives this one, holding its output open."""
    subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    return "done"
