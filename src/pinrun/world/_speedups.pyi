"""Optional C speedups for the world's watches (see _speedups.c)."""

import types
from collections.abc import Callable
from typing import Any

def address(value: object) -> int: ...
def function_parts(func: types.FunctionType) -> tuple[
    dict[str, Any], types.CodeType, tuple[Any, ...] | None, dict[str, Any] | None,
    tuple[types.CellType, ...] | None, dict[str, Any] | None]: ...

class Gate:
    watched: dict[str, Any]
    others: dict[str, Any]
    handler: Callable[[str, tuple[Any, ...]], None]
    def __init__(self, watched: dict[str, Any], others: dict[str, Any],
                 handler: Callable[[str, tuple[Any, ...]], None]) -> None: ...
    def __call__(self, event: str, args: tuple[Any, ...]) -> None: ...
