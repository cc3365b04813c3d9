"""Refs: named, movable pointers to digests (``flows/pricing``, ``runs/<id>``, tags).

Updates are compare-and-swap: a writer says what it expects the ref to be,
and the update fails with :class:`~pinrun.errors.RefConflictError` if another
writer got there first. LMDB runs one write transaction at a time across all
processes, so the check and the write cannot be separated by another writer.

In a store of format 2 a ref is stored with a check: its value is the target's
32-byte digest and a CRC-32 of the name and that digest (4 bytes, little-endian).
The check is against damage, not an attacker (who could compute any check):
CRC-32 catches every flip of one bit and every burst of up to 32, at a
fraction of a hash's cost on the commit of every durable step.
Objects are checked by their digests and a ref's target by its lookup, but only
this check sees a flipped bit in a ref's *name* that leaves another valid name
(``tags/t71`` read as ``tags/t73``). A store of format 1 keeps its refs as bare
digests until ``pinrun upgrade`` rewrites them (:mod:`pinrun.artifacts.upgrade`).
"""

from __future__ import annotations

import enum
import re
import zlib
from typing import Final

from pinrun.artifacts.digest import DIGEST_SIZE, Digest
from pinrun.errors import InputError, RefConflictError

__all__ = ["ANY", "MAX_REF_LENGTH", "REF_CHECK_SIZE", "RefExpectation", "check_expected",
           "is_ref_name", "ref_check", "ref_name_problem", "stored_ref", "stored_ref_problem",
           "validate_ref_name"]

MAX_REF_LENGTH: Final = 255
#: Bytes of the check stored after a ref's digest (format 2 stores).
REF_CHECK_SIZE: Final = 4
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


def is_ref_name(name: str) -> bool:
    """Whether ``name`` is a valid ref name (:func:`validate_ref_name` without raising)."""
    return (len(name) <= MAX_REF_LENGTH and _PLAIN_NAME.fullmatch(name) is not None) \
        or ref_name_problem(name) is None


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
    """The check stored with ref ``key`` (its UTF-8 name) pointing at raw digest ``target``:
    CRC-32 of the name, a zero byte (no name holds one) and the digest."""
    return zlib.crc32(target, zlib.crc32(b"\0", zlib.crc32(key))).to_bytes(4, "little")


def stored_ref(key: bytes, target: bytes, checked: bool) -> bytes:
    """The value stored for ref ``key`` -> raw digest ``target`` (``checked``: format 2)."""
    return target + ref_check(key, target) if checked else target


def stored_ref_problem(key: bytes, value: bytes, checked: bool) -> str | None:
    """What is wrong with ``value`` stored under ref ``key``, as a phrase to follow the
    ref's name ("holds 5 bytes, not 36"); None if nothing.

    The value's shape and check only: the name's validity and the target's
    presence are the caller's to check.
    """
    size = DIGEST_SIZE + REF_CHECK_SIZE if checked else DIGEST_SIZE
    if len(value) != size:
        return f"holds {len(value)} bytes, not {size}"
    if checked and value[DIGEST_SIZE:] != ref_check(key, value[:DIGEST_SIZE]):
        return "does not match its check (its name or its target is damaged)"
    return None
