"""Finding the store folder: ``.pinrun/`` upward from a folder, as git finds ``.git/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pinrun.errors import StoreNotFoundError

__all__ = ["STORE_DIRNAME", "default_store_path", "find_store"]

#: The folder name a store has when it is found by discovery.
STORE_DIRNAME: Final = ".pinrun"


def find_store(start: Path) -> Path:
    """The nearest ``.pinrun/`` holding a store, in ``start`` or a parent folder."""
    here = start.resolve()
    for folder in (here, *here.parents):
        candidate = folder / STORE_DIRNAME
        if (candidate / "data.mdb").is_file():
            return candidate
    raise StoreNotFoundError(str(here), searched_upward=True)


def default_store_path(explicit: str | None, *, for_create: bool = False) -> Path:
    """The store a command should use.

    ``explicit`` (``--store``) wins, then ``$PINRUN_STORE``. Otherwise a
    command that creates a store uses ``./.pinrun`` and any other command
    searches upward from the working directory.
    """
    chosen = explicit or os.environ.get("PINRUN_STORE")
    if chosen:
        return Path(chosen)
    if for_create:
        return Path.cwd() / STORE_DIRNAME
    return find_store(Path.cwd())
