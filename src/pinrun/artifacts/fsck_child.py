"""``fsck`` in a child process, so that damage which kills LMDB cannot kill the check.

LMDB trusts its data file: some damaged pages make it abort the process
(an assertion) or touch memory that is not there (SIGBUS). :func:`fsck_isolated`
runs :func:`pinrun.artifacts.fsck.fsck` in a fresh Python process that opens
the store read-only and streams each problem to the parent as one JSON line
the moment it is found. When the child dies, the parent still has every
problem found until then, and adds one saying how the check was stopped.

Run as ``python -m pinrun.artifacts.fsck_child STORE``: the line protocol on
stdout is ``{"problem": {...}}``, ``{"progress": [done, total]}`` and, last,
``{"done": {"objects_checked": N, "refs_checked": N, "structure_checked": B,
"store_format": N}}``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Final

from pinrun.artifacts.fsck import FsckReport, Problem, Progress, _no_progress
from pinrun.safe_text import printable

__all__ = ["fsck_isolated"]

_STDERR_SHOWN: Final = 300


def fsck_isolated(path: str | Path, progress: Progress = _no_progress) -> FsckReport:
    """Check the store at ``path`` in a child process; a crash there is a reported problem.

    Returns the report the child streamed. When the child did not finish,
    ``report.aborted`` says why (a signal, LMDB's last words) and the report
    holds an ``aborted`` problem besides everything found before.
    """
    report = FsckReport()
    done = False
    with tempfile.TemporaryFile() as errors:
        executable, env = _interpreter()
        child = subprocess.Popen(
            [executable, "-m", "pinrun.artifacts.fsck_child", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env,
        )
        assert child.stdout is not None
        try:
            done = _read_stream(child.stdout, report, progress)
        finally:
            child.stdout.close()
            returncode = child.wait()
        if not done:
            errors.seek(0)
            last_words = errors.read().decode("utf-8", "replace").strip().splitlines()
            report.aborted = _why(returncode, last_words[-1] if last_words else "")
            report.problems.append(Problem("aborted", None, report.aborted))
    return report


def _interpreter() -> tuple[str, dict[str, str] | None]:
    """The Python to run the child with, and its environment (``None``: ours).

    ``sys.executable`` may be a path this user cannot open (a virtualenv
    whose base interpreter lives in another user's home, reached through
    ``setpriv``/``sudo -u``): then the running interpreter itself, found
    through ``/proc``, with our import path.
    """
    if os.access(sys.executable, os.X_OK) or not os.path.exists("/proc/self/exe"):
        return sys.executable, None
    return "/proc/self/exe", dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def _read_stream(stream: IO[bytes], report: FsckReport, progress: Progress) -> bool:
    """Fold the child's lines into ``report``; True when the child said it was done."""
    for line in stream:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # not ours (a stray print from a library): ignore it
        if not isinstance(message, dict):
            continue
        if "problem" in message:
            report.problems.append(Problem.from_dict(message["problem"]))
        elif "progress" in message:
            progress(*message["progress"])
        elif "done" in message:
            summary = message["done"]
            report.objects_checked = int(summary["objects_checked"])
            report.refs_checked = int(summary["refs_checked"])
            report.structure_checked = bool(summary["structure_checked"])
            report.store_format = int(summary.get("store_format", report.store_format))
            return True
    return False


def _why(returncode: int, last_words: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"the check was killed by {name} while LMDB read a damaged page"
    else:
        how = f"the check ended with exit code {returncode} before it finished"
    said = f" (it said: {printable(last_words[:_STDERR_SHOWN])})" if last_words else ""
    return f"{how}{said}; what it found before that is listed"


def _emit(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """The child's side: check the store at ``argv[0]``, streaming what it finds."""
    from pinrun.artifacts.fsck import check_pages, fsck
    from pinrun.artifacts.store import Store
    from pinrun.errors import StoreError

    def problem(found: Problem) -> None:
        _emit({"problem": found.as_dict()})

    def progress(done: int, total: int) -> None:
        _emit({"progress": [done, total]})

    # The page-level pass first, with plain reads: it never crashes, and
    # its findings are out before LMDB touches a damaged page.
    pages, structure_checked = check_pages(Path(argv[0]) / "data.mdb")
    for found in pages:
        problem(found)
    try:
        with Store.open(argv[0], readonly=True) as store:
            report = fsck(store, progress, on_problem=problem, structure=False)
    except StoreError as exc:
        problem(Problem("damaged", None, str(exc)))
        report = FsckReport()
    _emit({"done": {"objects_checked": report.objects_checked,
                    "refs_checked": report.refs_checked,
                    "structure_checked": structure_checked,
                    "store_format": report.store_format}})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
