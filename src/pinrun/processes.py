"""Worker processes for replays: fresh interpreters, under a chosen hash seed.

Python fixes a process's ``str`` hashing (and so the iteration order of sets
of strings) when it starts, from ``PYTHONHASHSEED``. A replay must run under
the seed its run recorded, so workers are fresh interpreters (``spawn``, never
a fork, which would also copy LMDB handles and threads) started with that
seed in their environment.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
from collections.abc import Callable
from typing import Any

__all__ = ["current_hash_seed", "worker_pool"]


def current_hash_seed() -> str | None:
    """This process's ``PYTHONHASHSEED``, when it is a fixed seed."""
    seed = os.environ.get("PYTHONHASHSEED")
    return None if seed in (None, "", "random") else seed


def worker_pool(processes: int, hash_seed: str | None, initializer: Callable[..., None],
                initargs: tuple[Any, ...]) -> multiprocessing.pool.Pool:
    """A pool of ``processes`` fresh interpreters running under ``hash_seed``."""
    context = multiprocessing.get_context("spawn")
    saved = os.environ.get("PYTHONHASHSEED")
    if hash_seed is not None:
        os.environ["PYTHONHASHSEED"] = hash_seed
    try:  # a Pool starts all its processes now, while the seed is set
        return context.Pool(processes, initializer=initializer, initargs=initargs)
    finally:
        if saved is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved
