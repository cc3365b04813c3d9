"""Refs: named, movable pointers to digests (``flows/pricing``, ``runs/<id>``, tags).

Updates are compare-and-swap: a writer says what it expects the ref to be,
and the update fails with :class:`~pinrun.errors.RefConflictError` if another
writer got there first. LMDB runs one write transaction at a time across all
processes, so the check and the write cannot be separated by another writer.

In a store of format 2 a ref is stored with a check: its value is the target's
32-byte digest and the first 8 bytes of BLAKE3 of the name and that digest.
Objects are checked by their digests and a ref's target by its lookup, but only
this check sees a flipped bit in a ref's *name* that leaves another valid name
(``tags/t71`` read as ``tags/t73``). A store of format 1 keeps its refs as bare
digests until ``pinrun upgrade`` rewrites them (:mod:`pinrun.artifacts.upgrade`).
"""

from __future__ import annotations

import enum
import re
from typing import Final

from pinrun.artifacts.digest import DIGEST_SIZE, Digest, short_hash
from pinrun.errors import InputError, RefConflictError

__all__ = ["ANY", "MAX_REF_LENGTH", "REF_CHECK_SIZE", "RefExpectation", "check_expected",
           "ref_check", "ref_name_problem", "stored_ref", "stored_ref_problem",
           "validate_ref_name"]

MAX_REF_LENGTH: Final = 255
#: Bytes of the check stored after a ref's digest (format 2 stores).
REF_CHECK_SIZE: Final = 8
#: What the check hashes first, so that it is no digest of anything stored.
_CHECK_TAG: Final = b"pinrun ref\0"
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


def ref_check(key: bytes, target: bytes) -> bytes:
    """The check stored with ref ``key`` (its UTF-8 name) pointing at raw digest ``target``.

    The name's length goes first, so no other split of the same bytes into a
    name and a digest has the same check.
    """
    return short_hash(b"%s%d\0%s%s" % (_CHECK_TAG, len(key), key, target), REF_CHECK_SIZE)


def stored_ref(key: bytes, target: bytes, checked: bool) -> bytes:
    """The value stored for ref ``key`` -> raw digest ``target`` (``checked``: format 2)."""
    return target + ref_check(key, target) if checked else target


def stored_ref_problem(key: bytes, value: bytes, checked: bool) -> str | None:
    """What is wrong with ``value`` stored under ref ``key``, in words; None if nothing.

    Only the value's shape and check: the name's own validity and the
    target's presence are the caller's to check.
    """
    size = DIGEST_SIZE + REF_CHECK_SIZE if checked else DIGEST_SIZE
    if len(value) != size:
        return f"it holds {len(value)} bytes, not {size}"
    if checked and value[DIGEST_SIZE:] != ref_check(key, value[:DIGEST_SIZE]):
        return "its check does not match its name and target (one of them is damaged)"
    return None
