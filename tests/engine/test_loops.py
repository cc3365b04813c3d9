"""The event-loop questions are answered without importing asyncio, and right with it."""

from __future__ import annotations

import asyncio

from pinrun.engine.loops import current_task, in_event_loop


def test_outside_a_loop() -> None:
    assert not in_event_loop()
    assert current_task() is None


def test_inside_a_loop() -> None:
    async def ask() -> tuple[bool, bool]:
        return in_event_loop(), current_task() is asyncio.current_task() is not None

    assert asyncio.run(ask()) == (True, True)
