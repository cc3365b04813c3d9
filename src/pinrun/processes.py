"""Worker processes for replays: fresh interpreters, under a chosen hash seed.

Python fixes a process's ``str`` hashing (and so the iteration order of sets
of strings) when it starts, from ``PYTHONHASHSEED``. A replay must run under
the seed its run recorded, so workers are fresh interpreters (``spawn``, never
a fork, which would also copy LMDB handles and threads) started with that
seed in their environment.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["replay_in_subprocess", "worker_pool"]


@contextmanager
def worker_pool(processes: int, hash_seed: str | None, initializer: Callable[..., None],
                initargs: tuple[Any, ...]) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A pool of ``processes`` fresh interpreters running under ``hash_seed``.

    The seed stays in this process's environment while the pool lives, since
    a pool may start (or restart) its processes at any time. A process that
    dies breaks the pool: its futures raise ``BrokenProcessPool``.
    """
    saved = os.environ.get("PYTHONHASHSEED")
    if hash_seed is not None:
        os.environ["PYTHONHASHSEED"] = hash_seed
    try:
        with concurrent.futures.ProcessPoolExecutor(
                processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=initializer, initargs=initargs) as pool:
            yield pool
    finally:
        if saved is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved


def replay_in_subprocess(store_path: str, run_id: str, *, code: str, guards: str,
                         environment: dict[str, str], timeout: float = 600,
                         allow_world: bool = False) -> dict[str, Any]:
    """Replay one run in a fresh ``python -m pinrun`` with ``environment`` added.

    The child keeps the hash seed it is given (it does not switch to the
    run's recorded one). Returns the JSON report, or an ``error`` result
    when the child could not produce one.
    """
    import json
    import subprocess
    import sys

    env = {**os.environ, **environment, "PINRUN_HASH_SEED_SET": "1"}
    command = [sys.executable, "-m", "pinrun", "--store", store_path, "replay", run_id,
               "--code", code, "--guards", guards, "--json",
               *(["--allow-world"] if allow_world else [])]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"verdict": "error", "error": f"the replay took more than {timeout:.0f} s"}
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"verdict": "error", "error": f"the replay process failed: {last[0]}"}
    return result
