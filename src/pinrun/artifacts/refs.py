"""Refs: named, movable pointers to digests (``flows/pricing``, ``runs/<id>``, tags).

Updates are compare-and-swap: a writer says what it expects the ref to be,
and the update fails with :class:`~pinrun.errors.RefConflictError` if another
writer got there first. LMDB runs one write transaction at a time across all
processes, so the check and the write cannot be separated by another writer.
"""

from __future__ import annotations

import enum
from typing import Final

from pinrun.artifacts.digest import Digest
from pinrun.errors import InputError, RefConflictError

__all__ = ["ANY", "MAX_REF_LENGTH", "RefExpectation", "check_expected", "validate_ref_name"]

MAX_REF_LENGTH: Final = 255


class _Any(enum.Enum):
    ANY = "any"


#: Pass as ``expected`` to accept whatever value a ref has now.
ANY: Final = _Any.ANY
#: What a compare-and-swap expects: a digest, ``None`` (must not exist) or ``ANY``.
RefExpectation = Digest | None | _Any


def validate_ref_name(name: str) -> str:
    """Return ``name`` if it is a valid ref name, else raise ``InputError`` saying why."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "a ref name is a non-empty string"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_REF_LENGTH:
        problem = f"a ref name has at most {MAX_REF_LENGTH} bytes"
    # isprintable() is False for every separator but " " and for control characters.
    elif not name.isprintable() or " " in name:
        problem = "a ref name has no spaces or control characters"
    elif name.startswith("/") or name.endswith("/") or "//" in name:
        problem = "a ref name has no empty parts between slashes"
    elif any(part in (".", "..") for part in name.split("/")):
        problem = "a ref name has no '.' or '..' parts"
    if problem is not None:
        raise InputError(f"{name!r} is not a valid ref name: {problem} (e.g. 'tags/release-1').")
    return name


def check_expected(name: str, expected: RefExpectation, actual: Digest | None) -> None:
    """Raise ``RefConflictError`` unless ``actual`` is what ``expected`` allows."""
    if expected is ANY:
        return
    if expected != actual:
        raise RefConflictError(name, expected, actual)
