"""The event-loop questions are answered without importing asyncio, and right with it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from pinrun.engine.loops import current_task, in_event_loop


def test_outside_a_loop() -> None:
    assert not in_event_loop()
    assert current_task() is None


def test_inside_a_loop() -> None:
    async def ask() -> tuple[bool, bool]:
        return in_event_loop(), current_task() is asyncio.current_task() is not None

    assert asyncio.run(ask()) == (True, True)


def test_a_verify_worker_imports_no_asyncio() -> None:
    """A fresh worker replaying plain steps never needs asyncio (nor what it brings)."""
    script = textwrap.dedent("""\
        import sys
        import pinrun, pinrun.verifier.worker
        from pinrun.engine.loops import in_event_loop
        print(in_event_loop(), "asyncio" in sys.modules)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "False"]
