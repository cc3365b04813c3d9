"""Whether an asyncio event loop runs in this thread, asked without importing asyncio.

The engine asks at every step and effect (calls from a loop's tasks may come in
any order). Importing :mod:`asyncio` for that, with the ssl, socket and
selectors modules it brings, was a tenth of a fresh verify worker's start,
although the flows it replays are mostly plain functions. No loop can run in
this process before something imported asyncio, so until then the answer is
no; async steps and ``record_async`` import it where they use it.
"""

from __future__ import annotations

import sys

__all__ = ["current_task", "in_event_loop"]


def in_event_loop() -> bool:
    """Whether an asyncio event loop is running in this thread."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # never imported: nothing can be running a loop
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def current_task() -> object | None:
    """The asyncio task running in this thread, or None (also outside a loop)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        task: object | None = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        return None
    return task
