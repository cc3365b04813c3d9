"""What a step asked its context, as a run records it: one :class:`Event` per answer.

Each event is a plain value in the store (``as_value``), so reading one back
is this module's to check (:func:`recorded_events`): a malformed event is a
:class:`~pinrun.errors.CorruptObjectError`, never a ``KeyError`` deep in a
replay. An effect is identified by its name and the digest of its
canonically encoded arguments (:class:`EffectCall`); the arguments are kept
too, as values (:mod:`pinrun.engine.call_values`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, Literal

import blake3

from pinrun.artifacts import codec
from pinrun.data_classes import data_class
from pinrun.engine.call_values import SCALARS, call_problem, call_value, describe_call
from pinrun.errors import CorruptObjectError, RecordedEffectError

if TYPE_CHECKING:
    from pinrun.artifacts.digest import Digest
    from pinrun.artifacts.store import Store

__all__ = ["EffectCall", "Event", "EventKind", "argument_digest",
           "effect_call", "error_arguments", "recorded_events", "type_name"]

EventKind = Literal["now", "random", "uuid4", "effect"]


@data_class(frozen=True)
class Event:
    """One recorded answer: its kind, the effect's name and argument digest, and the value."""

    kind: EventKind
    value: Any
    name: str | None = None
    arguments: str | None = None
    #: An effect that raised: the exception's type (``module.Qualname``) and message.
    error: tuple[str, str] | None = None
    #: An effect's arguments as values, or a preview when large
    #: (:func:`~pinrun.engine.call_values.call_value`; None in older records).
    call: dict[str, Any] | None = None
    #: The exception's own arguments (``exc.args``), when they are values pinrun can
    #: store: it is rebuilt from them (``KeyError('k1')``, not ``KeyError("'k1'")``).
    error_args: list[Any] | None = None

    def as_value(self) -> dict[str, Any]:
        """The canonical form stored in a run's step record."""
        out: dict[str, Any] = {"kind": self.kind, "value": self.value}
        if self.name is not None:
            out["name"] = self.name
            out["arguments"] = self.arguments
        if self.error is not None:
            out["error"] = [*self.error, *([self.error_args] if self.error_args is not None
                                           else [])]
        if self.call is not None:
            out["call"] = self.call
        return out

    @classmethod
    def from_value(cls, data: dict[str, Any]) -> Event:
        """Rebuild an event stored by :meth:`as_value` (checked by :func:`recorded_events`)."""
        error = data.get("error")
        return cls(data["kind"], data["value"], data.get("name"), data.get("arguments"),
                   (error[0], error[1]) if error else None, data.get("call"),
                   error[2] if error and len(error) == 3 else None)

    def describe(self) -> str:
        """The call as its code wrote it: ``effect fetch('EUR')``, ``ctx.now()``."""
        if self.kind != "effect":
            return f"ctx.{self.kind}()"
        return f"effect {describe_call(self.name or '', self.call, self.arguments)}"

    def answer(self) -> Any:
        """The recorded answer, as a fresh copy; an effect that raised raises again."""
        if self.error is not None:
            raise _rebuilt_error(*self.error, self.error_args)
        if type(self.value) in SCALARS:
            return self.value  # nothing the step could change
        return codec.decode(codec.encode(self.value))


_EVENT_KINDS: Final = frozenset(("now", "random", "uuid4", "effect"))


def _event_problem(data: Any) -> str | None:
    if type(data) is not dict:
        return "is not an object"
    if data.get("kind") not in _EVENT_KINDS or "value" not in data:
        return "has no known kind, or no value"
    for field in ("name", "arguments"):
        if data.get(field) is not None and type(data[field]) is not str:
            return f"has a {field} that is not text"
    error = data.get("error")
    if error is not None and not (type(error) in (list, tuple) and len(error) in (2, 3)
                                  and all(type(part) is str for part in error[:2])
                                  and (len(error) == 2 or type(error[2]) is list)):
        return "has an error that is not [type, message] or [type, message, arguments]"
    return call_problem(data.get("call"))


def recorded_events(store: Store, digest: Digest) -> list[Event]:
    """A step's recorded context events, each checked before anything reads it.

    The events are a plain value in the store, so their shape is this
    module's to check: a malformed one is a :class:`CorruptObjectError`
    (exit 3) naming the object, never a ``KeyError`` deep in a replay.
    """
    found = store.get_value(digest)
    if type(found) is not list:
        raise CorruptObjectError(digest, None, "its recorded context events are not a list")
    for index, data in enumerate(found):
        problem = _event_problem(data)
        if problem is not None:
            raise CorruptObjectError(digest, None, f"recorded context event #{index + 1} "
                                     f"{problem}")
    return [Event.from_value(data) for data in found]


def type_name(error: BaseException) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else \
        f"{cls.__module__}.{cls.__qualname__}"


def error_arguments(error: BaseException) -> list[Any] | None:
    """An exception's ``args`` as a record keeps them (None: not values pinrun stores)."""
    arguments = list(error.args)
    if isinstance(error, OSError) and len(arguments) == 2 and error.filename is not None:
        # OSError(errno, strerror, filename[, winerror, filename2]) keeps only two in args.
        arguments += [error.filename] + ([None, error.filename2]
                                         if error.filename2 is not None else [])
    try:
        payload = codec.encode(arguments, root="an effect's exception arguments")
    except Exception:  # a client object, a socket in the args: the message must do
        return None
    if len(payload) > _ERROR_ARGUMENTS_LIMIT:
        return None
    found: list[Any] = codec.decode(payload)
    return found


_ERROR_ARGUMENTS_LIMIT: Final = 16 * 1024


def _rebuilt_error(type_name: str, message: str,
                   arguments: list[Any] | None = None) -> BaseException:
    """The recorded exception again: its own type when this process has it loaded.

    The type name comes from the record, so it is looked up, never imported,
    and only an Exception subclass is called: with its recorded arguments, else
    with the recorded message.
    """
    parts = type_name.split(".")
    cls = codec.find_loaded_class(f"builtins:{type_name}") if len(parts) == 1 else None
    for split in range(len(parts) - 1, 0, -1):  # the module is the longest loaded prefix
        if cls is not None:
            break
        cls = codec.find_loaded_class(f"{'.'.join(parts[:split])}:{'.'.join(parts[split:])}")
    if cls is not None and issubclass(cls, Exception):
        for attempt in ([arguments] if arguments is not None else []) + [[message]]:
            try:
                return cls(*attempt)
            except Exception:  # a constructor that wants other arguments: next, or named
                continue
    return RecordedEffectError(f"{type_name}: {message}")


def argument_digest(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The digest that identifies an effect call's arguments (canonically encoded)."""
    return blake3.blake3(_arguments_payload(name, args, kwargs)).hexdigest()


def _arguments_payload(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    return codec.encode([list(args), kwargs], root=f"the arguments of effect {name!r}")


@data_class(frozen=True)
class EffectCall:
    """One effect call a step makes: its name, arguments digest and kept arguments."""

    name: str
    arguments: str
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]
    _payload: bytes

    @functools.cached_property
    def call(self) -> dict[str, Any]:
        """The arguments as a record keeps them: made only when recorded or shown (a
        replay that matches never needs them)."""
        return call_value(self._args, self._kwargs, self._payload)


def effect_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> EffectCall:
    """An effect call, identified by the digest of its canonically encoded arguments."""
    payload = _arguments_payload(name, args, kwargs)
    return EffectCall(name, blake3.blake3(payload).hexdigest(), args, kwargs, payload)
