"""Helpers for tests that need real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"


def traced_peak(action: Callable[[], object]) -> int:
    """The most memory Python had allocated (tracemalloc) while ``action`` ran, in bytes."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def race(work: Callable[[int], object], threads: int) -> None:
    """Run ``work(0)`` ... ``work(threads - 1)`` in threads at once, switching between them
    as often as the interpreter will, and wait for them all."""
    started = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
    finally:
        sys.setswitchinterval(interval)


def python_child(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process with pinrun importable; fail on error."""
    result = run_child(code, *args, timeout=timeout)
    assert result.returncode == 0, f"child failed:\n{result.stdout}\n{result.stderr}"
    return result


def run_child(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process and return whatever happened."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def start_child(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``code`` in a fresh Python process without waiting for it."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


@contextmanager
def store_held_open(store_path: Path, *, readonly: bool = False) -> Iterator[None]:
    """Another process holds the store at ``store_path`` open (``readonly``: for reading)
    for as long as the block runs."""
    holder = start_child("""
        import sys, time
        from pinrun.artifacts.store import Store
        store = Store.open(sys.argv[1], readonly=sys.argv[2] == "1")
        print("open", flush=True)
        time.sleep(60)
    """, str(store_path), "1" if readonly else "0")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        yield
    finally:
        holder.kill()
        holder.communicate()


def project_cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun ARGS`` in the project folder, its package importable."""
    env = {k: v for k, v in os.environ.items() if k != "PINRUN_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(project.root)])
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


class Project:
    """A throw-away project folder with its own package of flows, importable by name.

    Each instance uses a package name of its own, so modules imported by one
    test never stand in for another's; :meth:`forget` drops them from
    ``sys.modules`` (call it after editing a file, or when the test ends).
    """

    def __init__(self, root: Path, package: str) -> None:
        self.root = root
        self.package = package
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
        sys.path.insert(0, str(root))

    def write(self, module: str, source: str) -> Path:
        """Write ``<package>/<module>.py`` and return its path."""
        path = self.root / self.package / f"{module}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def edit(self, module: str, old: str, new: str) -> None:
        """Replace ``old`` by ``new`` in a module's source (which must contain it)."""
        path = self.root / self.package / f"{module}.py"
        text = path.read_text()
        assert old in text, f"{old!r} is not in {path}"
        path.write_text(text.replace(old, new))
        self.forget()

    def entry(self, module: str, attribute: str = "flow") -> str:
        """``package.module:attribute``."""
        return f"{self.package}.{module}:{attribute}"

    def load(self, module: str, attribute: str = "flow") -> Any:
        """Import the module (fresh after :meth:`forget`) and return one of its attributes."""
        import importlib

        importlib.invalidate_caches()
        return getattr(importlib.import_module(f"{self.package}.{module}"), attribute)

    def forget(self) -> None:
        """Drop the package's modules from ``sys.modules``."""
        for name in [n for n in sys.modules
                     if n == self.package or n.startswith(f"{self.package}.")]:
            del sys.modules[name]

    def close(self) -> None:
        """Forget the modules and take the folder off ``sys.path``."""
        self.forget()
        if str(self.root) in sys.path:
            sys.path.remove(str(self.root))
