"""Optional C speedups for the world's watches (see _speedups.c)."""

import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

def address(value: object) -> int: ...
def object_bytes(value: object, offset: int, size: int) -> bytes: ...
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

class Walker:
    """code_state's walk, its common cases in C (the rest: the subclass's _composite)."""
    seen: dict[int, int]
    held: list[object]
    own: set[int]
    items: int
    def value(self, value: object, depth: int) -> object: ...
    def same(self, value: object) -> tuple[str, int]: ...
    def namespace(self, names: Mapping[str, Any], depth: int) -> tuple[Any, ...]: ...
    def pairs(self, items: Iterable[tuple[object, object]], depth: int) -> tuple[Any, ...]: ...

def configure_walk(by_identity: frozenset[object], import_machinery: frozenset[str],
                   flow: type, opaque_error: type[BaseException], most_items: int,
                   most_depth: int) -> None: ...
