"""Refs: named, movable pointers to digests (``flows/pricing``, ``runs/<id>``, tags).

Updates are compare-and-swap: a writer says what it expects the ref to be,
and the update fails with :class:`~pinrun.errors.RefConflictError` if another
writer got there first. LMDB runs one write transaction at a time across all
processes, so the check and the write cannot be separated by another writer.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from pinrun.artifacts.digest import Digest
from pinrun.errors import InputError, RefConflictError

__all__ = ["ANY", "MAX_REF_LENGTH", "RefExpectation", "check_expected", "ref_name_problem",
           "validate_ref_name"]

MAX_REF_LENGTH: Final = 255
#: Names every check below passes (ASCII letters, digits, ``_-.``; parts joined by single
#: slashes, none starting with a dot, so none is ``.`` or ``..``): most refs, a run's
#: ``runs/<id>`` among them, read at every replay. One match instead of five checks.
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")


class _Any(enum.Enum):
    ANY = "any"


#: Pass as ``expected`` to accept whatever value a ref has now.
ANY: Final = _Any.ANY
#: What a compare-and-swap expects: a digest, ``None`` (must not exist) or ``ANY``.
RefExpectation = Digest | None | _Any


def validate_ref_name(name: str) -> str:
    """Return ``name`` if it is a valid ref name, else raise ``InputError`` saying why."""
    if type(name) is str and len(name) <= MAX_REF_LENGTH and _PLAIN_NAME.fullmatch(name):
        return name
    problem = ref_name_problem(name)
    if problem is not None:
        raise InputError(f"{name!r} is not a valid ref name: {problem} (e.g. 'tags/release-1').")
    return name


def ref_name_problem(name: object) -> str | None:
    """What makes ``name`` no ref name, in words; None when it is one."""
    if not isinstance(name, str) or not name:
        return "a ref name is a non-empty string"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_REF_LENGTH:
        return f"a ref name has at most {MAX_REF_LENGTH} bytes"
    # isprintable() is False for every separator but " " and for control characters.
    if not name.isprintable() or " " in name:
        return "a ref name has no spaces or control characters"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "a ref name has no empty parts between slashes"
    if any(part in (".", "..") for part in name.split("/")):
        return "a ref name has no '.' or '..' parts"
    return None


def check_expected(name: str, expected: RefExpectation, actual: Digest | None) -> None:
    """Raise ``RefConflictError`` unless ``actual`` is what ``expected`` allows."""
    if expected is ANY:
        return
    if expected != actual:
        raise RefConflictError(name, expected, actual)
