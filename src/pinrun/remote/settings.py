"""The store's own settings file: its remotes and the public keys it trusts.

``<store>/config.json`` holds names, URLs and public keys, never a secret:
credentials come from the environment, private keys live in the user's
config folder. Updates take a lock and replace the file whole, so two
commands editing it at once cannot lose each other's change, and a crash
leaves the old file or the new one.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import orjson

from pinrun.errors import InputError

__all__ = ["CONFIG_NAME", "read_settings", "update_settings"]

CONFIG_NAME: Final = "config.json"
_MAX_SIZE: Final = 4 << 20


def read_settings(store_path: Path) -> dict[str, Any]:
    """The settings, ``{}`` when there are none; a damaged file is a clear error."""
    path = store_path / CONFIG_NAME
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_SIZE + 1)
    except FileNotFoundError:
        return {}
    if len(data) > _MAX_SIZE:
        raise InputError(f"{path} is larger than {_MAX_SIZE >> 20} MiB; it is not pinrun's")
    try:
        settings = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(settings, dict):
        raise InputError(f"{path} does not hold a JSON object; fix or remove it")
    return settings


@contextmanager
def _locked(store_path: Path) -> Iterator[None]:
    with (store_path / ".config.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_settings(store_path: Path,
                    change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` to the settings under a lock and write them back atomically."""
    with _locked(store_path):
        settings = read_settings(store_path)
        change(settings)
        fd, tmp = tempfile.mkstemp(prefix=".config.", dir=store_path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(orjson.dumps(settings, option=orjson.OPT_INDENT_2
                                          | orjson.OPT_SORT_KEYS))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, store_path / CONFIG_NAME)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return settings
