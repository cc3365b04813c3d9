"""Every error pinrun raises, under one root.

The hierarchy (exit codes are the command line's)::

    PinrunError                     the root: catch this to catch them all (exit 1)
    ├── InputError                  bad input from the user (exit 2)
    │   ├── UnsupportedValueError   a value the codec cannot encode (.path, .type_name)
    │   ├── InvalidDigestError      text that is not a digest or a usable prefix (.text)
    │   ├── UnknownDigestError      a digest or prefix that names no object (.prefix)
    │   ├── AmbiguousDigestError    a prefix that names several objects (.prefix, .candidates)
    │   ├── UnknownRefError         a ref name that is not set (.ref)
    │   ├── BundleError             a malformed, truncated or tampered bundle (.path, .reason)
    │   ├── StepDefinitionError     a function cannot be a step as written (.function)
    │   ├── FlowDefinitionError     a flow is built wrong (.flow)
    │   ├── MissingInputError       a step reads a key nothing provides (.flow, .step, .key)
    │   ├── FingerprintError        step code reads what cannot be pinned (.step, .function,
    │   │                           .global_name)
    │   ├── StaleSourceError        a module's file changed after it was imported
    │   ├── PinnedModuleError       pinned code names a module not the project's (.module,
    │   │                           .reason)
    │   ├── UntrustedEntryError     a run record names a flow outside the project (.entry,
    │   │                           .reason)
    │   ├── UntrustedRunError       pinned code pulled from a remote, not signed by a
    │   │                           trusted key
    │   ├── RunBusyError            another process is recording the run (.run_id)
    │   └── BaselineBusyError       the run has an unfinished new baseline (.run_id)
    ├── RefConflictError            a compare-and-swap on a ref lost a race (.ref, .expected,
    │                               .actual)
    ├── RunFailedError              a step raised; the failure is recorded (.run)
    ├── StepOutputError             a step returned what is not a mapping of state keys
    ├── ContextDivergenceError      replayed code asked the context for what was not
    │                               recorded (.step, .index, .expected, .actual)
    ├── RecordedEffectError         a recorded effect's exception, its type not loaded here
    ├── NondeterminismError         a strictly guarded step reached for time, chance or
    │   │                           the outside world
    │   └── WorldRefusedError       a replayed step reached for the network or a process,
    │                               refused (.call)
    ├── CodeChangedError            the code on disk differs from the pin (strict policy)
    └── StoreError                  the store is missing or damaged (exit 3)
        ├── StoreNotFoundError      no store folder where one was looked for (.path)
        ├── CorruptObjectError      an object's bytes do not hash or parse (.digest, .actual)
        │   └── OversizedValueError trees naming the same objects would rebuild more
        │                           than the machine's memory (.digest, .size, .limit)
        ├── MissingObjectError      a referenced object is absent (.digest, .referenced_by)
        ├── ObjectFormatError       a stored record this version cannot read (.digest)
        ├── UndecodableValueError   stored value bytes that do not decode (.reason)
        ├── UnsafeRunIdError        a recorded run id that is not a plain name (.run_id)
        ├── StoreDamagedError       the LMDB files are damaged (.path, .detail)
        ├── StoreReadOnlyError      a write asked of a store this process may only read
        │                           (.path, .reason)
        ├── NoSpaceError            the disk holding the store is full (.path)
        ├── StoreInUseError         compaction refused: the store is in use (.path, .who)
        └── RemoteError             a remote cannot be reached or holds damaged data
                                    (.url, .reason)

Warnings (something the user should know, while the work goes on) derive
from :class:`PinrunWarning`, a ``UserWarning``; the CLI prints each as one
``pinrun: warning:`` line.

Every error class pinrun raises is defined here and exported from ``pinrun``
(a test holds this tree, the module and the public names to each other).
Every message says what happened and what to do next, in full sentences, so
the CLI can print it as the one line a user sees. Every error survives
pickling with its attributes (``pinrun verify`` runs replays in worker
processes and carries their errors back).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinrun.artifacts.digest import Digest
    from pinrun.engine.context import Event
    from pinrun.engine.records import RunRecord
    from pinrun.world.refusal import GuardedCall

__all__ = [
    "AmbiguousDigestError",
    "BaselineBusyError",
    "BundleError",
    "CodeChangedError",
    "ContextDivergenceError",
    "CorruptObjectError",
    "FingerprintError",
    "FlowDefinitionError",
    "InputError",
    "InvalidDigestError",
    "MissingInputError",
    "MissingObjectError",
    "NoSpaceError",
    "NondeterminismError",
    "ObjectFormatError",
    "OversizedValueError",
    "PinnedModuleError",
    "PinrunError",
    "PinrunWarning",
    "RecordedEffectError",
    "RefConflictError",
    "RemoteError",
    "RunBusyError",
    "RunFailedError",
    "StaleSourceError",
    "StepDefinitionError",
    "StepOutputError",
    "StoreDamagedError",
    "StoreError",
    "StoreInUseError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "UndecodableValueError",
    "UnknownDigestError",
    "UnknownRefError",
    "UnsafeRunIdError",
    "UnsupportedValueError",
    "UntrustedEntryError",
    "UntrustedRunError",
    "WorldRefusedError",
]


def _rebuild(cls: type[PinrunError], args: tuple[object, ...],
             state: dict[str, object]) -> PinrunError:
    """Unpickle an error without calling its ``__init__`` (whose parameters vary)."""
    if not (isinstance(cls, type) and issubclass(cls, PinrunError)):
        raise TypeError(f"{cls!r} is not a pinrun error")  # a crafted pickle, refused
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
        if ref.startswith("runs/"):  # a run id asked for: say it in a run's words
            super().__init__(f"no run {ref[len('runs/'):]!r} in this store; `pinrun runs` "
                             "lists them. Check the id, or the --store the command is using.")
            return
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


class OversizedValueError(CorruptObjectError):
    """A stored value whose trees name the same objects so often that rebuilding it would
    take more memory than the machine has: each object is valid, their sum is not."""

    def __init__(self, digest: Digest, size: int, limit: int) -> None:
        self.digest = digest
        self.expected = digest
        self.actual = None
        self.size = size
        self.limit = limit
        StoreError.__init__(
            self, f"object {digest.hex} would rebuild {size:,} bytes, more than this "
            f"machine's {limit:,} bytes of memory: its trees name the same objects over and "
            "over (a crafted bundle, or a value no machine here can hold). Nothing was "
            "built; do not trust the bundle or store it came from."
        )


class RemoteError(StoreError):
    """A remote (S3 or a shared folder) cannot be reached, or holds damaged data.

    Nothing from the failed transfer was written to the local store, and a
    push that fails leaves only objects no index names yet (invisible).
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"remote {url}: {reason}")


class UntrustedRunError(InputError):
    """Pinned code pulled from a remote is not signed by a key this store trusts."""


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


class StoreDamagedError(StoreError):
    """The store's LMDB files are damaged: a truncated file, a broken page, a lost lock file."""

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(
            f"store damaged: {detail} (store at {self.path}). Nothing was changed; run "
            "`pinrun fsck` to list what is damaged, then restore the store from a backup "
            "or re-import its runs from bundles."
        )


class StoreReadOnlyError(StoreError):
    """A write was asked of a store that this process can only read."""

    def __init__(self, path: str | Path, reason: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"the store at {self.path} is read-only for this process{why}: commands that "
            "only read it work, but nothing can be written. Use a writable copy, or ask "
            "for write permission on the folder and its files."
        )


class NoSpaceError(StoreError):
    """The disk holding the store is full."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"no space left on the device holding the store at {self.path}: nothing of "
            "this operation was kept. Check the free disk space and make room (`pinrun gc "
            "--compact` returns the store's unused space to the disk), then retry."
        )


class StoreInUseError(StoreError):
    """Compaction or an upgrade needs the store to itself, and another process has it open."""

    def __init__(self, path: str | Path, who: str = "another process", *,
                 doing: str = "compact",
                 why: str = "a compacted store can only replace the old one when nobody "
                            "else uses it") -> None:
        self.path = str(path)
        self.who = who
        super().__init__(
            f"cannot {doing} the store at {self.path}: {who} has it open, and {why}. Stop "
            "the other pinrun processes on this store (runs, verify, workers), then retry."
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


# ------------------------------------------------- flows, runs and replay


class RunFailedError(PinrunError):
    """A step raised; the run was recorded, failure included, and the error is chained."""

    exit_code = 1

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        failed = run.failed_step
        where = f"step {failed.name!r}" if failed else "a step"
        what = (f"{failed.error.type}: {failed.error.message}".rstrip(". ")
                if failed and failed.error else "")
        super().__init__(f"run {run.id} of flow {run.flow!r} failed at {where}: {what}. "
                         f"The failure is recorded: `pinrun show {run.id}`.")


class StepOutputError(PinrunError):
    """A step returned something that is not a mapping of state keys, or broke a policy."""


class BaselineBusyError(InputError):
    """A run already has an unfinished new baseline (being recorded, or interrupted)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} already has an unfinished new baseline, being "
                         "recorded by another process or interrupted; wait for the other "
                         f"process, or finish an interrupted one with `pinrun accept {run_id}`")


class RecordedEffectError(PinrunError):
    """An effect raised when recorded; its exception type could not be rebuilt on replay."""


class ContextDivergenceError(PinrunError):
    """Replayed code asked the context for something the recording does not have."""

    exit_code = 1

    def __init__(self, step: str, index: int, expected: Event | None, actual: str, *,
                 message: str | None = None) -> None:
        self.step = step
        self.index = index
        self.expected = expected
        self.actual = actual
        if message is not None:
            super().__init__(message)
            return
        wanted = "nothing more" if expected is None else expected.describe()
        super().__init__(
            f"step {step!r} diverged at its context call #{index + 1}: the recording has "
            f"{wanted}, the replayed code asked for {actual}."
        )


class RunBusyError(InputError):
    """Another process is recording (or resuming) this run right now."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} is being recorded by another process right now; "
                         "wait for it to finish (`pinrun runs` shows its status)")


class UnsafeRunIdError(StoreError):
    """A run id that is not a plain name: no lease file is made from it (.run_id)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run id {run_id[:80]!r} is not a plain run id, so pinrun will not "
                         "name a lease file after it; the run record holding it is damaged "
                         "or crafted: run `pinrun fsck`")


class NondeterminismError(PinrunError):
    """A guarded step reached for time, chance or the outside world (``strict`` guards)."""

    exit_code = 1


class WorldRefusedError(NondeterminismError):
    """A replayed step reached for the network or another process, and was refused.

    ``call`` is the refused call (a :class:`pinrun.world.refusal.GuardedCall`:
    what, of which kind, and the project's file and line that made it).
    """

    def __init__(self, message: str, call: GuardedCall) -> None:
        self.call = call
        super().__init__(message)


class StepDefinitionError(InputError):
    """A function cannot be a step as written; the message says how to fix it."""

    def __init__(self, function: str, reason: str) -> None:
        self.function = function
        super().__init__(f"step {function!r} cannot be used: {reason}")


class FingerprintError(InputError):
    """A step's code reads something pinrun cannot fingerprint, or has no source.

    ``function`` names the function or class whose code reads it, ``step`` the
    step, ``global_name`` the name read (``None`` when the code itself is the problem).
    """

    def __init__(self, step: str, function: str, global_name: str | None, problem: str) -> None:
        self.step = step
        self.function = function
        self.global_name = global_name
        super().__init__(
            f"{problem}: pass version='...' to @pinrun.step to name the code version yourself "
            "(and hash_includes=[...] for the values that identify it), or change the code so "
            "that it reads only constants, functions, classes and modules."
        )


class PinnedModuleError(InputError):
    """Pinned code would provide a module that is not the recorded project's own.

    ``module`` is the refused name and ``reason`` says why (pinrun itself, the
    standard library, another installed distribution, not a module name).
    Bad input rather than a damaged store: the bytes are intact, pinrun
    refuses what they ask for, and the way on is the user's (replay the code
    on disk with ``--code workdir``, or rename a module that shadows another).
    """

    def __init__(self, module: str, reason: str) -> None:
        self.module = module
        self.reason = reason
        super().__init__(
            f"refusing the pinned code: it provides module {module!r}, which {reason}; "
            "pinned code may only provide the recorded project's own modules. Use the code "
            "on disk instead (replay and verify: --code workdir; run and resume: "
            "--code-policy warn), or rename the project module and record the run again.")


class UntrustedEntryError(InputError):
    """A run record names, as its flow, a module that is not the recorded project's own.

    Importing a module runs it, and the record may come from someone else, so
    the entry is refused before anything is imported. ``entry`` is the
    recorded ``module:attribute`` and ``reason`` says why.
    """

    def __init__(self, entry: str, reason: str) -> None:
        self.entry = entry
        self.reason = reason
        super().__init__(
            f"refusing to import {entry[:200]!r}, which the run record names as its flow: "
            f"it {reason}. A record may only name a module of the project it was recorded "
            "in; run pinrun from that project's folder (where its .pinrun is), or check "
            "where the run came from."
        )


class FlowDefinitionError(InputError):
    """A flow is built wrong (a duplicate name, an unknown dependency, a cycle...)."""

    def __init__(self, flow: str, reason: str) -> None:
        self.flow = flow
        super().__init__(f"flow {flow!r} is not valid: {reason}")


class MissingInputError(InputError):
    """A step reads a key that neither the inputs nor an earlier step provides."""

    def __init__(self, flow: str, step: str, key: str, available: Iterable[str]) -> None:
        self.flow = flow
        self.step = step
        self.key = key
        known = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"step {step!r} of flow {flow!r} reads {key!r}, which neither the run's inputs "
            f"nor an earlier step provides (available before it: {known}). Pass it as an "
            "input (--set KEY=JSON), give the parameter a default, or fix the step order."
        )


class StaleSourceError(InputError):
    """A module's file changed after it was imported: the code running is not the file's."""


class CodeChangedError(PinrunError):
    """The code on disk differs from the pinned code, and the policy is ``strict``."""

    exit_code = 1


class PinrunWarning(UserWarning):
    """The base of pinrun's warnings: the CLI shows each as one ``pinrun: warning:`` line."""
