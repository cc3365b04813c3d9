"""The stored shape of the structured kinds: ``run``, ``step``, ``flow``, ``env``, ``code``.

A digest proves that bytes are the ones written, not that whoever wrote them
was pinrun: a bundle can be crafted, and a store can be damaged before its
bytes were hashed. So every structured object is checked against the shape
pinrun writes, field by field, declared once in the tables below, by
``pinrun import`` and ``pinrun fsck`` (through
:func:`~pinrun.artifacts.trees.check_structure`) and again when a run record
is read (:func:`parse`). A mismatch is one
:class:`~pinrun.errors.CorruptObjectError` that names the object and the
field, never a ``KeyError`` or ``TypeError`` from deep inside a command.

The checks run on the stored JSON itself (``codec.decode_tagged``): they
import nothing and call nothing the data names. A field typed as a digest
takes the ``{"$digest": hex}`` tag (or a :class:`Digest` already decoded), a
string takes a ``{"$str": base64}`` tag too (how the codec keeps a lone
surrogate); :func:`parse` returns the value with both turned into what they
stand for. Fields a newer pinrun may add are ignored; fields this one reads
are all checked.

The engine builds these objects (``engine/records.py``, ``flows/pinning.py``):
keep the tables true to what they write.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind, checked_digest
from pinrun.errors import CorruptObjectError, InputError, PinrunError

_record_fields: Callable[[Any, tuple[Any, ...], tuple[Any, ...], type[Digest]],
                         dict[str, Any] | None] | None
try:
    # A record's walk in C (see _Record): its fields' fast paths, and the calls of the
    # specs they leave; a loaded run record is checked ~4x faster.
    from pinrun.artifacts._speedups import record_fields as _record_fields
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _record_fields = None

__all__ = [
    "HASH_SEED_MAX",
    "RUN_FORMAT",
    "RUN_ID",
    "RUN_LINK_FORMAT",
    "SHAPED_KINDS",
    "check_shape",
    "is_hash_seed",
    "is_run_id",
    "parse",
    "run_ref_problem",
    "shape_problem",
]

#: The run record format this pinrun writes and reads.
RUN_FORMAT: Final = 1
#: The format of a record of a run still recording that omits its state (``state`` is
#: null: the loader rebuilds it from the newest link that has one, or the run's
#: inputs, and the steps since). An older pinrun refuses such a record ("upgrade
#: pinrun") rather than resume from a state that is not the run's.
RUN_LINK_FORMAT: Final = 2
#: A run id, exactly as the recorder makes them: its UTC start time to the
#: millisecond, then 3 random bytes in hex (``20261123T013055012-4f1a2b``).
#: Nothing else is a run id: an id names a lease file and reaches terminals.
RUN_ID: Final = re.compile(r"[0-9]{8}T[0-9]{9}-[0-9a-f]{6}")
#: Refs of runs are ``runs/<id>``, and name the record of run ``<id>``.
RUN_REF_PREFIX: Final = "runs/"
#: The most links a run still recording may chain (its commits: bounds a crafted chain).
MAX_RUN_LINKS: Final = 1_000_000
#: The largest ``PYTHONHASHSEED`` Python accepts.
HASH_SEED_MAX: Final = 4294967295
_HASH_SEED: Final = re.compile(r"[0-9]{1,10}")


def is_run_id(text: object) -> bool:
    """Whether ``text`` is a run id as pinrun makes them (see :data:`RUN_ID`)."""
    return type(text) is str and RUN_ID.fullmatch(text) is not None


def is_hash_seed(text: object) -> bool:
    """Whether ``text`` is a ``PYTHONHASHSEED`` Python starts with (0..2**32-1, or random)."""
    if type(text) is not str:
        return False
    if text == "random":
        return True
    return _HASH_SEED.fullmatch(text) is not None and int(text) <= HASH_SEED_MAX


class _MismatchError(Exception):
    """Internal: where the value departs from its shape, and how.

    Containers hand their items an empty path and name them only when one fails
    (:meth:`inside`): a record that has its shape, as all but damaged ones do,
    builds no path at all.
    """

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what

    def inside(self, where: str) -> _MismatchError:
        """This mismatch, found in the item at ``where`` (a field or an index)."""
        path = self.path
        self.path = where if not path else f"{where}{path}" if path[0] == "[" else \
            f"{where}.{path}"
        return self


def _found(value: object) -> str:
    """The type of what was found, in JSON's words (a digest tag counts as a digest)."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object", Digest: "a digest"}
    return names.get(type(value), type(value).__name__)


# A spec checks one value at ``path`` (empty inside a container: see _MismatchError)
# and returns it as it stands for (a digest
# tag as a Digest...), raising _MismatchError. Specs are small functions built by
# the helpers below, so a table reads as the shape it declares.
Spec = Callable[[Any, str], Any]


def _str(value: Any, path: str) -> str:
    if type(value) is str:
        return value
    if type(value) is dict and len(value) == 1 and type(value.get("$str")) is str:
        try:  # a lone surrogate, as the codec writes it
            return base64.b64decode(value["$str"].encode("ascii"), validate=True).decode(
                "utf-8", "surrogatepass")
        except (ValueError, binascii.Error):  # UnicodeError is a ValueError
            raise _MismatchError(path, "holds a $str tag that is not base64 of UTF-8") from None
    raise _MismatchError(path, f"should be a string, found {_found(value)}")


def _int(minimum: int) -> Spec:
    def check(value: Any, path: str) -> int:
        if type(value) is not int:
            raise _MismatchError(path, f"should be an integer, found {_found(value)}")
        if value < minimum:
            raise _MismatchError(path, f"should be at least {minimum}, found {value}")
        return value
    _MINIMUMS.append((check, minimum))
    return check


#: The specs _int, _choice and _nullable made, with what they were made of (the fast
#: paths of a record's fields: see _fast_paths).
_MINIMUMS: list[tuple[Spec, int]] = []
_CHOICES: list[tuple[Spec, tuple[str, ...]]] = []
_NULLABLE: list[tuple[Spec, Spec]] = []


def _bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise _MismatchError(path, f"should be true or false, found {_found(value)}")
    return value


def _digest(value: Any, path: str) -> Digest:
    if type(value) is Digest:
        return value
    if type(value) is dict and len(value) == 1 and "$digest" in value:
        text = value["$digest"]
        if type(text) is str and len(text) == 64:
            # Read, then written back: fromhex also takes capitals and spaces, and only 64
            # lowercase hex characters come back the same (a pattern costs 2.4x this).
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raw = b""
            if len(raw) == 32 and raw.hex() == text:
                return checked_digest(raw)
        raise _MismatchError(path, "holds a $digest tag that is not 64 lowercase hex characters")
    raise _MismatchError(path, f"should be a digest, found {_found(value)}")


def _matching(pattern: re.Pattern[str], what: str) -> Spec:
    def check(value: Any, path: str) -> str:
        text = _str(value, path)
        if pattern.fullmatch(text) is None:
            raise _MismatchError(path, f"should be {what}, found {text[:80]!r}")
        return text
    return check


def _choice(*allowed: str) -> Spec:
    def check(value: Any, path: str) -> str:
        if type(value) is not str or value not in allowed:
            shown = repr(value)[:80] if type(value) is str else _found(value)
            raise _MismatchError(path, f"should be one of {', '.join(allowed)}, found {shown}")
        return value
    _CHOICES.append((check, allowed))
    return check


def _hash_seed(value: Any, path: str) -> str:
    text = _str(value, path)
    if not is_hash_seed(text):
        raise _MismatchError(path, f"should be a hash seed (an integer 0..{HASH_SEED_MAX} or "
                        f"random), found {text[:80]!r}")
    return text


def _object(value: Any, path: str) -> dict[str, Any]:
    """Any JSON object (a run's timing: outside what replay compares; read as data)."""
    if type(value) is not dict:
        raise _MismatchError(path, f"should be an object, found {_found(value)}")
    return value


def _nullable(spec: Spec) -> Spec:
    if spec is _digest:
        return _nullable_digest
    def check(value: Any, path: str) -> Any:
        return None if value is None else spec(value, path)
    _NULLABLE.append((check, spec))
    return check


def _nullable_digest(value: Any, path: str) -> Digest | None:
    # The most common field of a run record: one call, not two.
    return None if value is None else _digest(value, path)


def _list_of(spec: Spec) -> Spec:
    def check(value: Any, path: str) -> list[Any]:
        if type(value) is not list:
            raise _MismatchError(path, f"should be a list, found {_found(value)}")
        checked: list[Any] = []
        try:
            for item in value:
                checked.append(spec(item, ""))
        except _MismatchError as mismatch:
            raise mismatch.inside(f"{path}[{len(checked)}]") from None
        return checked
    return check


def _map_of(spec: Spec) -> Spec:
    def check(value: Any, path: str) -> dict[str, Any]:
        if type(value) is not dict:
            raise _MismatchError(path, f"should be an object, found {_found(value)}")
        # JSON object keys are strings; a decoded dict may hold others.
        if not all(type(key) is str for key in value):
            raise _MismatchError(path, "should have only string keys")
        checked: dict[str, Any] = {}
        key = ""
        try:
            for key, item in value.items():
                checked[key] = spec(item, "")
        except _MismatchError as mismatch:
            raise mismatch.inside(f"{path}[{key!r}]") from None
        return checked
    return check


#: A field the object does not have (None is a value).
_ABSENT: Final = object()
#: A record's field: its name, its spec, and the spec's fast paths (see _fast_paths).
_Field = tuple[str, Spec, frozenset[type], bool, frozenset[str] | None, int | None, bool]


@dataclass(frozen=True)
class _Record:
    """An object with named fields: the required ones, and the optional ones (absent: None)."""

    required: Mapping[str, Spec]
    optional: Mapping[str, Spec]
    _required: tuple[_Field, ...] = field(init=False, repr=False, compare=False)
    _optional: tuple[_Field, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Read at every record checked (a replay checks a run's): kept as tuples, each
        # field with its fast paths (_fast_paths).
        object.__setattr__(self, "_required", tuple(
            (name, spec, *_fast_paths(spec)) for name, spec in self.required.items()))
        object.__setattr__(self, "_optional", tuple(
            (name, spec, *_fast_paths(spec)) for name, spec in self.optional.items()))

    def __call__(self, value: Any, path: str) -> dict[str, Any]:
        if type(value) is not dict:
            raise _MismatchError(path, f"should be an object, found {_found(value)}")
        if _record_fields is not None:
            try:
                made = _record_fields(value, self._required, self._optional, Digest)
            except _MismatchError:
                made = None  # the walk below raises it again, with the field's path
            if made is not None:
                return made
        out: dict[str, Any] = {}
        name = ""
        get = value.get
        try:
            for name, spec, *_ in self._required:
                item = get(name, _ABSENT)
                if item is _ABSENT:
                    raise _MismatchError("", "is missing")
                out[name] = spec(item, "")
            for name, spec, *_ in self._optional:
                item = get(name, _ABSENT)
                out[name] = None if item is _ABSENT else spec(item, "")
        except _MismatchError as mismatch:
            raise mismatch.inside(_field(path, name)) from None
        return out


def _fast_paths(spec: Spec) -> tuple[frozenset[type], bool, frozenset[str] | None,
                                      int | None, bool]:
    """What a record's walk in C (``_speedups.record_fields``) may take of a field without
    calling its ``spec``: the types whose values ``spec`` returns as they are, whatever
    they hold (a string for ``_str``, None when nullable); whether a digest tag is read
    as ``_digest`` reads it; the strings a ``_choice`` allows; the least integer an
    ``_int`` takes; whether it is a list of plain strings (copied). A value none of these
    covers goes through ``spec``, which checks it or says what is wrong."""
    kept: set[type] = set()
    inner = _digest if spec is _nullable_digest else \
        next((made for check, made in _NULLABLE if check is spec), None)
    if inner is not None:
        kept.add(type(None))
        spec = inner
    for plain, held in ((_str, str), (_bool, bool), (_object, dict)):
        if spec is plain:
            kept.add(held)
    allowed = next((frozenset(values) for check, values in _CHOICES if check is spec), None)
    least = next((minimum for check, minimum in _MINIMUMS if check is spec), None)
    return frozenset(kept), spec is _digest, allowed, least, spec is _STRINGS


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _record(optional: Mapping[str, Spec] | None = None, /, **required: Spec) -> _Record:
    # Positional-only, so that a field may be called "optional" (a step's is).
    return _Record(required, optional or {})


def _at_most(limit: int, spec: Spec) -> Spec:
    """``spec``, on a string, list or object of at most ``limit`` characters or items."""
    def check(value: Any, path: str) -> Any:
        # A list or object is measured before its items are checked, a string after
        # (a $str tag is one key standing for a longer string).
        checked = spec(value, path) if type(value) not in (list, dict) or \
            len(value) <= limit else value
        if len(checked) > limit:
            raise _MismatchError(path, f"should hold at most {limit}, found {len(checked)}")
        return checked
    return check


_STRINGS: Final = _list_of(_str)
#: A name or setting in an environment (a time zone, a locale, a distribution).
_ENV_TEXT: Final = _at_most(256, _str)
_DIGESTS: Final = _list_of(_digest)
#: A umask as an environment records it: four octal digits (``0022``).
_UMASK: Final = _matching(re.compile(r"0[0-7]{3}"), "a umask (four octal digits, like 0022)")


def _distribution_versions(value: Any, path: str) -> dict[str, Any]:
    """Installed distributions and their versions: valid names, short versions."""
    checked: dict[str, Any] = _map_of(_ENV_TEXT)(value, path)
    for name in checked:
        if not _DISTRIBUTION_NAME.fullmatch(name):
            raise _MismatchError(path, f"should name distributions, found {name[:80]!r}")
    return checked


_RUN_ID: Final = _matching(RUN_ID, "a run id (like 20261123T013055012-4f1a2b)")

#: How a step failed (``StepError``).
_STEP_ERROR: Final = _record(type=_str, message=_str, traceback=_str)

#: One step of a run record (``StepRecord``).
_STEP_RECORD: Final = _record(
    {"code": _nullable(_digest), "files": _nullable(_digest)},
    name=_str, status=_choice("succeeded", "failed"), inputs=_digest,
    outputs=_nullable(_digest), events=_digest, error=_nullable(_STEP_ERROR),
    attempt=_int(1), hazards=_STRINGS)


def _run_format(value: Any, path: str) -> int:
    if type(value) is not int or value not in (RUN_FORMAT, RUN_LINK_FORMAT):
        shown = repr(value)[:20] if type(value) in (int, str) else _found(value)
        raise _MismatchError(path, f"should be {RUN_FORMAT} or {RUN_LINK_FORMAT} (a newer "
                             f"pinrun may have written {shown}: upgrade pinrun)")
    return value


class _RunShape(_Record):
    """A run record's fields, and the one rule across them: only a record of a run still
    recording (format :data:`RUN_LINK_FORMAT`, status ``running``) may omit its state."""

    def __call__(self, value: Any, path: str) -> dict[str, Any]:
        out = super().__call__(value, path)
        if out["state"] is None and (out["format"] != RUN_LINK_FORMAT
                                     or out["status"] != "running"):
            raise _MismatchError(_field(path, "state"), "should be a digest (only a running "
                                 f"record of format {RUN_LINK_FORMAT} may omit it), found null")
        return out


def _code_path(value: Any, path: str) -> str:
    """Where pinning found a module: a relative ``.py`` path inside the project, in POSIX form."""
    text = _str(value, path)
    parts = PurePosixPath(text)
    if parts.is_absolute() or ".." in parts.parts or parts.suffix != ".py" \
            or "\\" in text or "\0" in text:
        raise _MismatchError(path, f"should be a relative .py path inside the project, found "
                             f"{text[:80]!r}")
    return text


_DISTRIBUTION_NAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")


def _distribution_name(value: Any, path: str) -> str:
    """The installed distribution a pinned module came from: a valid distribution name."""
    text = _str(value, path)
    if not _DISTRIBUTION_NAME.fullmatch(text):
        raise _MismatchError(path, f"should be a distribution name, found {text[:80]!r}")
    return text


#: Each shaped kind and its table. Optional fields are ones older pinruns did not write.
_SHAPES: Final[Mapping[Kind, _Record]] = {
    Kind.RUN: _RunShape(
        {"format": _run_format, "id": _RUN_ID, "flow": _str,
         "status": _choice("running", "succeeded", "failed"), "inputs": _digest,
         "state": _nullable(_digest), "timing": _nullable(_digest),
         "steps": _list_of(_STEP_RECORD)},
        {"flow_pin": _nullable(_digest), "env": _nullable(_digest),
         "entry": _nullable(_str), "level_start": _nullable(_digest),
         "replaces": _nullable(_RUN_ID), "continues": _nullable(_digest),
         "timing_inline": _nullable(_object)}),
    Kind.STEP: _record(
        {"includes": _nullable(_str)},
        name=_str, module=_str, function=_str, fingerprint=_nullable(_str),
        version=_nullable(_str), requires=_STRINGS, optional=_STRINGS,
        writes=_nullable(_STRINGS), after=_nullable(_STRINGS), is_async=_bool,
        code=_DIGESTS),
    Kind.FLOW: _record(
        {"code": _DIGESTS},
        name=_str, on_collision=_choice("overwrite", "warn", "error"),
        max_concurrency=_int(1), steps=_DIGESTS, levels=_list_of(_STRINGS)),
    Kind.ENV: _record(
        {"machine": _ENV_TEXT, "timezone": _ENV_TEXT,
         "locale": _at_most(16, _map_of(_ENV_TEXT)), "linalg": _at_most(8, _map_of(_ENV_TEXT)),
         "project": _at_most(256, _list_of(_distribution_name)),
         "home": _ENV_TEXT, "cwd": _ENV_TEXT, "hostname": _ENV_TEXT, "umask": _UMASK},
        python=_str, implementation=_str, platform=_str, hash_seed=_nullable(_hash_seed),
        distributions=_at_most(4096, _distribution_versions)),
    Kind.CODE: _record(
        {"distribution": _nullable(_distribution_name)},
        module=_str, path=_code_path, source=_str),
}

#: The kinds whose objects have a declared shape.
SHAPED_KINDS: Final = frozenset(_SHAPES)


def shape_problem(kind: Kind, value: Any) -> str | None:
    """What is wrong with ``value`` as a ``kind`` object, in words; None when nothing is.

    Any value is accepted as input (JSON from a bundle, a decoded record, or
    anything at all); the answer is never an exception.
    """
    try:
        _converted(kind, value)
    except _MismatchError as mismatch:
        return f"{mismatch.path} {mismatch.what}"
    return None


def _converted(kind: Kind, value: Any) -> Any:
    shape = _SHAPES.get(kind)
    if shape is None:
        return value
    try:
        return shape(value, "")
    except _MismatchError as mismatch:
        mismatch.path = mismatch.path or "the object"
        raise


def check_shape(digest: Digest | None, kind: Kind, value: Any) -> dict[str, Any]:
    """``value`` as a ``kind`` object (digest tags as :class:`Digest`), checked.

    Raises :class:`CorruptObjectError` naming ``digest`` when the value does
    not have the shape; with no ``digest`` (a value that was never stored)
    :class:`InputError`. Kinds without a declared shape pass as they are.
    """
    try:
        checked: dict[str, Any] = _converted(kind, value)
    except _MismatchError as mismatch:
        what = f"{mismatch.path} {mismatch.what}"
        if digest is None:
            raise InputError(f"this is not a well-formed {kind.value} object: {what}") \
                from None
        raise CorruptObjectError(digest, None, f"it is not a well-formed {kind.value} "
                                 f"object: {what}") from None
    return checked


def parse(digest: Digest, kind: Kind, payload: bytes) -> dict[str, Any]:
    """Read a stored ``kind`` object's payload as data and check its shape.

    Nothing the payload names is imported or called. Raises
    :class:`CorruptObjectError` naming ``digest`` when the payload is not
    JSON or not of the shape ``kind`` requires.
    """
    try:
        value = codec.decode_tagged(payload)
    except PinrunError as exc:
        raise CorruptObjectError(digest, None, f"its {kind.value} payload does not parse "
                                 f"({exc})") from None
    except RecursionError:  # pragma: no cover - orjson bounds nesting; kept as a guard
        raise CorruptObjectError(digest, None, f"its {kind.value} payload is nested too "
                                 "deeply") from None
    return check_shape(digest, kind, value)


def run_ref_problem(name: str, kind: Kind, value: Any) -> str | None:
    """What is wrong with ref ``name`` pointing at this object, in words; None if nothing.

    A ref ``runs/<id>`` must name a well-formed run record whose id is
    ``<id>`` (an id in a record names a lease file: a record kept under
    ``runs/A`` saying it is run ``../B`` is damage). Other refs pass.
    """
    if not name.startswith(RUN_REF_PREFIX):
        return None
    if kind is not Kind.RUN:
        return f"ref {name!r} names a {kind.value} object, not a run record"
    try:
        record = _converted(Kind.RUN, value)
    except _MismatchError as mismatch:
        return f"ref {name!r} names a run record that is not well formed: " \
               f"{mismatch.path} {mismatch.what}"
    if record["id"] != name[len(RUN_REF_PREFIX):]:
        return f"ref {name!r} names the record of run {record['id']}"
    return None
