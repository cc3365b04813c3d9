"""Optional C speedups for the canonical codec (see _speedups.c)."""

from typing import Any

def plain(container: dict[Any, Any] | list[Any]) -> bool: ...
