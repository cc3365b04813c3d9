"""Every error pinrun raises, under one root.

The hierarchy::

    PinrunError                       the root: catch this to catch them all
    ├── InputError                    bad input from the user (CLI exit code 2)
    │   ├── UnsupportedValueError     a value the canonical codec cannot encode (.path, .type_name)
    │   ├── InvalidDigestError        text that is not a digest or a usable prefix (.text)
    │   ├── UnknownDigestError        a digest or prefix that names no stored object (.prefix)
    │   ├── AmbiguousDigestError      a prefix that names several objects (.prefix, .candidates)
    │   ├── UnknownRefError           a ref name that is not set (.ref)
    │   └── BundleError               a malformed, truncated or tampered bundle (.path)
    ├── RefConflictError              a compare-and-swap on a ref lost a race (.ref, .actual)
    └── StoreError                    the store itself is missing or damaged (CLI exit code 3)
        ├── StoreNotFoundError        no store folder where one was looked for (.path)
        ├── CorruptObjectError        an object's bytes do not hash to its digest (.digest, .actual)
        ├── MissingObjectError        a referenced object is absent (.digest, .referenced_by)
        ├── ObjectFormatError         a stored record this version cannot read (.digest)
        └── UndecodableValueError     stored value bytes that do not decode (.reason)

Every message says what happened and what to do next, in full sentences, so
the CLI can print it as the one line a user sees. Every error survives
pickling with its attributes (``pinrun verify`` runs replays in worker
processes and carries their errors back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinrun.artifacts.digest import Digest

__all__ = [
    "AmbiguousDigestError",
    "BundleError",
    "CorruptObjectError",
    "InputError",
    "InvalidDigestError",
    "MissingObjectError",
    "ObjectFormatError",
    "PinrunError",
    "RefConflictError",
    "StoreError",
    "StoreNotFoundError",
    "UndecodableValueError",
    "UnknownDigestError",
    "UnknownRefError",
    "UnsupportedValueError",
]


def _rebuild(cls: type[PinrunError], args: tuple[object, ...],
             state: dict[str, object]) -> PinrunError:
    """Unpickle an error without calling its ``__init__`` (whose parameters vary)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class PinrunError(Exception):
    """The root of every error pinrun raises on purpose."""

    #: The process exit code the command line uses for this error.
    exit_code: int = 1

    def __reduce__(self) -> tuple[object, ...]:
        # Exception's own pickling calls cls(*args), which fails for every
        # subclass whose __init__ takes its context rather than the message.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class InputError(PinrunError):
    """Something the user gave (a value, a digest, a file) cannot be used."""

    exit_code = 2


class StoreError(PinrunError):
    """The store is missing or damaged; nothing the user typed can fix the call."""

    exit_code = 3


class UnsupportedValueError(InputError):
    """A value cannot be canonically encoded.

    ``path`` says where in the value the offending part sits, in Python
    syntax relative to the root (``state['items'][3].created``); ``type_name``
    is its type's qualified name.
    """

    def __init__(self, path: str, type_name: str, reason: str = "") -> None:
        self.path = path
        self.type_name = type_name
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"cannot store {path}: values of type {type_name} are not supported{detail}. "
            "Convert it to a supported type (see docs/store.md, 'The value model') "
            "or register a codec with pinrun.register_type()."
        )


class InvalidDigestError(InputError):
    """Text that should name an object is not hexadecimal, or is too short."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        super().__init__(f"{text!r} is not a usable digest: {reason}.")


class UnknownDigestError(InputError):
    """A digest, or a prefix of one, names no object in the store."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        super().__init__(
            f"no object in the store has a digest starting with {prefix}. "
            "Check the digest, or the --store the command is using."
        )


class AmbiguousDigestError(InputError):
    """A digest prefix matches more than one object."""

    def __init__(self, prefix: str, candidates: Sequence[Digest]) -> None:
        self.prefix = prefix
        self.candidates = tuple(candidates)
        shown = ", ".join(d.hex[:16] for d in self.candidates[:5])
        more = " and more" if len(self.candidates) > 5 else ""
        super().__init__(
            f"digest prefix {prefix} is ambiguous: it matches {shown}{more}. "
            "Give more characters."
        )


class UnknownRefError(InputError):
    """A ref name that is not set in the store."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"no ref named {ref!r} in this store (and it is not a digest). "
                         "Check the name, or the --store the command is using.")


class BundleError(InputError):
    """A bundle file cannot be imported; nothing from it was written."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"cannot import bundle {path}: {reason}. Nothing was written to the store; "
            "export the bundle again from its source store."
        )


class RefConflictError(PinrunError):
    """A compare-and-swap update of a ref found another value than expected."""

    def __init__(self, ref: str, expected: Digest | None, actual: Digest | None) -> None:
        self.ref = ref
        self.expected = expected
        self.actual = actual
        exp = expected.hex if expected is not None else "unset"
        act = actual.hex if actual is not None else "unset"
        super().__init__(
            f"ref {ref!r} was expected to be {exp} but is {act}: another writer changed it. "
            "Read the ref again and retry the update."
        )


class StoreNotFoundError(StoreError):
    """No store exists where one was looked for."""

    def __init__(self, path: str, searched_upward: bool) -> None:
        self.path = path
        where = f"in {path} or any parent folder" if searched_upward else f"at {path}"
        super().__init__(
            f"no pinrun store found {where}. Create one with `pinrun init`, "
            "or point to one with --store PATH or PINRUN_STORE."
        )


class CorruptObjectError(StoreError):
    """A stored object does not hash to its digest; it is never silently repaired."""

    def __init__(self, digest: Digest, actual: Digest | None, reason: str = "") -> None:
        self.digest = digest
        self.expected = digest
        self.actual = actual
        what = reason or (f"its content hashes to {actual.hex}" if actual else "it is unreadable")
        super().__init__(
            f"object {digest.hex} is corrupt: {what}. Restore the store from a backup "
            "or re-import the object from a bundle; `pinrun fsck` lists every damaged object."
        )


class MissingObjectError(StoreError):
    """An object that another object (or a ref) references is not in the store."""

    def __init__(self, digest: Digest, referenced_by: str | None = None) -> None:
        self.digest = digest
        self.referenced_by = referenced_by
        by = f", referenced by {referenced_by}," if referenced_by else ""
        super().__init__(
            f"object {digest.hex}{by} is missing from the store. Import it from a bundle "
            "of the store it came from; `pinrun fsck` lists every missing object."
        )


class ObjectFormatError(StoreError):
    """A stored record has a header this version of pinrun cannot read."""

    def __init__(self, digest: Digest, reason: str) -> None:
        self.digest = digest
        super().__init__(
            f"object {digest.hex} cannot be read: {reason}. It may have been written by a "
            "newer pinrun; upgrade pinrun, or run `pinrun fsck` if you suspect damage."
        )


class UndecodableValueError(StoreError):
    """Stored bytes that passed their digest check but do not decode as a value.

    They were damaged before they were hashed, written by a newer pinrun, or
    crafted. (A value of a class this process has not loaded is not an error:
    it decodes to a :class:`pinrun.UnloadedValue`.)
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"cannot decode a stored value: {reason}. It may come from a newer pinrun "
            "(upgrade pinrun) or be damaged; `pinrun fsck` checks the store, and "
            "`pinrun cat --raw` shows the stored bytes."
        )
