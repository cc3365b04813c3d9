"""The canonical codec: one value, one byte string.

Values are written as JSON (through orjson, with sorted keys and shortest
round-trip floats). Anything JSON cannot say exactly, such as a tuple, a set,
bytes, a datetime, a dataclass, a non-string dict key or a NaN, becomes a
one-key object ``{"$tag": payload}``. Plain dicts never have a key starting
with ``$`` (such a dict is written in the ``$map`` form), so a tag can never
be confused with user data and every value decodes back to the same types.

Most values in workflows are plain JSON. For those the encoder only checks
types (no copy) and hands the original object to orjson; the full converting
walk runs only for values that need a tag. ``docs/store.md`` documents the
value model.
"""

from __future__ import annotations

import base64
import itertools
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from pinrun.artifacts import _codec_registry as _registry
from pinrun.artifacts import _codec_types as types
from pinrun.artifacts._codec_classes import find_class
from pinrun.artifacts._codec_registry import TypeCodec
from pinrun.artifacts.digest import Digest
from pinrun.errors import PinrunError, UndecodableValueError, UnsupportedValueError

if TYPE_CHECKING:
    from pinrun.artifacts.seen import Wide

__all__ = ["COMPACT_BELOW", "BytesEntry", "TypeCodec", "UndecodableValueError", "UnloadedValue",
           "decode", "decode_many", "decode_tagged", "encode", "encode_digest_map",
           "encode_many", "encodes_again", "find_loaded_class", "key_span", "read_back_all",
           "reads_back", "register_type", "sorted_keys", "still_encodes"]

UnloadedValue = types.UnloadedValue
#: The class a ``module:QualName`` reference names, if loaded; never imports.
find_loaded_class = find_class

_SORT: Final = orjson.OPT_SORT_KEYS
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 64) - 1  # orjson writes unsigned 64-bit integers too
#: Encodings shorter than this are copied out of orjson's oversized buffer (see encode).
COMPACT_BELOW: Final = 16 * 1024


def register_type(
    cls: type, name: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]
) -> None:
    """Teach the codec a type of your own.

    ``encode`` turns an instance into any value the codec already supports;
    ``decode`` turns that value back. ``name`` is written into stored data, so
    keep it stable: values stored under a name decode only where a codec with
    that name is registered. Subclasses of ``cls`` use the same codec. The
    registration belongs to the module defining ``cls``: the same module loaded
    again (pinned replay loads the pinned source) registers its own class under
    the same name, and each loaded class keeps its own codec.
    """
    if not name or not isinstance(name, str):
        raise ValueError("register_type needs a non-empty string name")
    _registry.register(TypeCodec(cls, name, encode, decode))


class BytesEntry(bytes):
    """The engine's in-memory stand-in for the encoding of a ``bytes`` state value.

    A ``bytes`` state value is stored as a blob, never as a canonical JSON
    value, so base64-encoding it into JSON (and decoding that at every read)
    would only copy it. Its stand-in is this small byte string instead: a
    marker that no JSON text starts with, then the digest of the blob it is
    stored as, so two stand-ins are equal exactly when their values are. It
    keeps the value itself (``bytes`` cannot change, so :func:`decode` hands
    it out without a copy) and the digests of its chunks, so storing it hashes
    nothing again. Built by :func:`pinrun.artifacts.trees.encode_entry`; never
    stored (only its value is, as the blob its digest names).
    """

    # (No __slots__: a subclass of bytes cannot have them; its __dict__ holds these.)
    value: bytes
    #: Digests of the value's blob chunks (one blob: empty), in order.
    chunks: tuple[Digest, ...]

    #: What every stand-in starts with: a NUL, which no canonical encoding begins with.
    MARKER: Final = b"\x00pinrun-bytes\x00"


class _UnsupportedError(Exception):
    """Internal: carries the offending object up to ``encode``, which finds its path."""

    def __init__(self, obj: object, reason: str) -> None:
        self.obj = obj
        self.reason = reason


# ------------------------------------------------------------------ encode


def _plain_python(container: dict[Any, Any] | list[Any]) -> bool:
    """True when a dict or list holds only JSON types orjson writes losslessly."""
    values = container.values() if type(container) is dict else container
    for item in values:
        cls = type(item)
        if cls is str or cls is int or cls is bool or item is None:
            continue
        if cls is float:
            if item - item != 0.0:  # NaN or infinity: orjson would write null
                return False
        elif cls is dict or cls is list:
            if not _plain_python(item):
                return False
        else:
            return False
    return True


_plain: Callable[[dict[Any, Any] | list[Any]], bool] = _plain_python
_split_values: Callable[[bytes], list[bytes] | None] | None = None
_split_map: Callable[[bytes, dict[str, Any]], dict[str, bytes] | None] | None = None
_join_members: Callable[[dict[str, bytes]], bytes | None] | None = None
_canonical: Callable[[Any], bool] | None = None
_in_order: Callable[[dict[Any, Any]], bool] | None = None
_plain_in_order: Callable[[dict[Any, Any] | list[Any]], int] | None = None
_sorted_keys: Callable[[dict[Any, Any]], list[str] | None] | None = None
_members_match: Callable[[bytes, list[str], dict[str, bytes]], bool] | None = None
_still_encodes: Callable[[Any, bytes], bool] | None = None
_all_still_encode: Callable[..., bool] | None = None
_digest_map: Callable[[dict[str, Any], type[Digest]], bytes | None] | None = None
_digest_of_tag: Callable[[Any, type[Digest]], Digest | None] | None = None
try:
    # The same check compiled (setup.py builds it where a C compiler exists):
    # ~7x faster, and the walk is most of what encoding costs beyond orjson.
    # And the scans that let encode_many and decode_many work on a whole map.
    from pinrun.artifacts._speedups import all_still_encode as _compiled_all_still_encode
    from pinrun.artifacts._speedups import canonical as _compiled_canonical
    from pinrun.artifacts._speedups import digest_map as _compiled_digest_map
    from pinrun.artifacts._speedups import digest_of_tag as _compiled_digest_of_tag
    from pinrun.artifacts._speedups import in_order as _compiled_in_order
    from pinrun.artifacts._speedups import join_members as _compiled_join
    from pinrun.artifacts._speedups import members_match as _compiled_members_match
    from pinrun.artifacts._speedups import plain as _compiled_plain
    from pinrun.artifacts._speedups import plain_in_order as _compiled_plain_in_order
    from pinrun.artifacts._speedups import sorted_keys as _compiled_sorted_keys
    from pinrun.artifacts._speedups import split_map as _compiled_split_map
    from pinrun.artifacts._speedups import split_values as _compiled_split
    from pinrun.artifacts._speedups import still_encodes as _compiled_still_encodes
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    pass
else:
    _plain, _plain_in_order = _compiled_plain, _compiled_plain_in_order
    _split_values, _join_members = _compiled_split, _compiled_join
    _split_map = _compiled_split_map
    _canonical, _in_order = _compiled_canonical, _compiled_in_order
    _sorted_keys = _compiled_sorted_keys
    _members_match = _compiled_members_match
    _still_encodes, _all_still_encode = _compiled_still_encodes, _compiled_all_still_encode
    _digest_map = _compiled_digest_map
    _digest_of_tag = _compiled_digest_of_tag

#: Maps with fewer keys than this are encoded and decoded value by value (as cheap).
_MANY: Final = 64


def _canonical_bytes(encoded: Any) -> bytes:
    """The final bytes of an encoded part: the sort key of set elements and map keys."""
    try:
        return orjson.dumps(encoded, option=_SORT)
    except TypeError:
        return orjson.dumps(_escape_surrogates(encoded), option=_SORT)


def _enc(value: Any) -> Any:
    """Turn a value into its JSON-safe tagged form."""
    cls = type(value)
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        try:
            return {"$int": str(value)}
        except ValueError:  # over sys.get_int_max_str_digits(): it could not be read back
            raise _UnsupportedError(value, f"integers of more than "
                                    f"{sys.get_int_max_str_digits()} digits cannot be "
                                    "stored (store it as a string or bytes)") from None
    if cls is float:
        return value if value - value == 0.0 else {"$float": repr(value)}
    if cls is dict:
        for key in value:
            if type(key) is not str or key[:1] == "$":
                pairs = [[_enc(k), _enc(v)] for k, v in value.items()]
                pairs.sort(key=lambda pair: _canonical_bytes(pair[0]))
                return {"$map": pairs}
        return {key: _enc(item) for key, item in value.items()}
    if cls is list:
        return [_enc(item) for item in value]
    if cls is tuple:
        return {"$tuple": [_enc(item) for item in value]}
    if cls is set or cls is frozenset:
        items = sorted((_enc(item) for item in value), key=_canonical_bytes)
        return {"$set" if cls is set else "$frozenset": items}
    codec = _registry.codec_for_type(cls)
    if codec is not None:
        return {"$ext": [codec.name, _enc(codec.encode(value))]}
    handler = types.EXACT_ENCODERS.get(cls)
    try:
        if handler is not None:
            return handler(value, _enc)
        return types.encode_special(value, _enc)
    except types.NoCodecError as exc:
        raise _UnsupportedError(value, str(exc)) from None


def _escape_surrogates(encoded: Any) -> Any:
    """Rewrite strings that are not valid UTF-8 (lone surrogates) as ``$str`` tags."""
    if type(encoded) is str:
        try:
            encoded.encode("utf-8")
        except UnicodeEncodeError:
            raw = encoded.encode("utf-8", "surrogatepass")
            return {"$str": base64.b64encode(raw).decode("ascii")}
        return encoded
    if type(encoded) is list:
        return [_escape_surrogates(item) for item in encoded]
    if type(encoded) is dict:
        pairs = [[_escape_surrogates(k), _escape_surrogates(v)] for k, v in encoded.items()]
        if all(type(k) is str for k, _ in pairs):
            return dict(pairs)
        pairs.sort(key=lambda pair: _canonical_bytes(pair[0]))
        return {"$map": pairs}
    return encoded


def encode(value: Any, *, root: str = "value") -> bytes:
    """The canonical bytes of ``value``.

    Raises :class:`~pinrun.errors.UnsupportedValueError` naming the path of
    the first part that cannot be encoded (``root`` names the value itself in
    that path, e.g. ``state``).
    """
    try:
        # Most values are plain JSON: the container's types are checked (no copy) and the
        # value itself handed to orjson. Done here, not in a call, since the engine
        # encodes every state value it is given or returns.
        cls = type(value)
        if (cls is dict or cls is list) and _plain(value):
            try:
                out = orjson.dumps(value, option=_SORT)
            except TypeError:
                pass  # a non-str key, a huge int or a lone surrogate: the full walk
            else:
                if b"$" not in out or b'"$' not in out:  # no key that could look like a tag
                    return bytes(memoryview(out)) if len(out) < COMPACT_BELOW else out
        out = _encode_tagged(value)
    except _UnsupportedError as exc:
        path = find_path(value, exc.obj, root)
        raise UnsupportedValueError(path, _type_name(exc.obj), exc.reason) from None
    except RecursionError:
        raise UnsupportedValueError(root, _type_name(value), "it contains itself or is nested "
                                    "too deeply") from None
    # orjson hands back its working buffer, which for a short encoding is a 4-8 KiB
    # allocation: the engine keeps one encoding per state key, so 100,000 small values
    # held ~400 MB, and touching that fresh memory was most of their encoding time. A
    # copy of a short one is exact-sized (and costs a memcpy).
    return bytes(memoryview(out)) if len(out) < COMPACT_BELOW else out


def encode_many(values: Mapping[str, Any]) -> dict[str, bytes] | None:
    """``{key: encode(value)}`` for a map of many plain JSON values, encoded at once.

    One orjson call writes the whole map, whose members are then cut into
    each value's encoding: the same bytes as one :func:`encode` per value,
    for a fraction of its cost. None when that does not apply (a small map,
    one that is not a ``dict`` of string keys, a value needing a tag or not
    plain JSON, no C speedups): the caller then encodes value by value, which
    also names any value that cannot be encoded. The result is in ``values``' order.
    """
    if _split_values is None or type(values) is not dict or len(values) < _MANY:
        return None
    told = _plain_in_order(values) if _plain_in_order is not None else int(_plain(values))
    if not told:
        return None
    if told == 2 and _split_map is not None:
        # Every map inside the values has its keys in order already: orjson writes each
        # value as with its keys sorted, and the members in the map's own order, which
        # split_map reads: nothing to sort (the map's own keys need no order here).
        try:
            whole = orjson.dumps(values)
        except TypeError:  # a key that is not a str, an integer past 64 bits, a surrogate
            return None
        if b"$" in whole and b'"$' in whole:
            return None
        made = _split_map(whole, values)
        if made is not None:
            return made
    try:
        whole = orjson.dumps(values, option=_SORT)
    except TypeError:  # a key that is not a str, an integer past 64 bits, a lone surrogate
        return None
    # A key or string that may need the tagged form: value by value. ("$" first: one
    # byte is a memchr, two a slower search, and most maps hold no "$" at all.)
    if b"$" in whole and b'"$' in whole:
        return None
    # Cut straight into a dict when the members are in the map's own order (often: a
    # map built in key order).
    if _split_map is not None:
        made = _split_map(whole, values)
        if made is not None:
            return made
    parts = _split_values(whole)
    if parts is None or len(parts) != len(values):
        return None
    # orjson sorts keys by their UTF-8 bytes, which is the order of sorted() for strings
    # that encode (a lone surrogate raised above).
    if _in_order is not None and _in_order(values):  # (often: a map built in key order)
        return dict(zip(values, parts, strict=True))
    encoded = dict(zip(sorted(values), parts, strict=True))
    return {key: encoded[key] for key in values}


def decode_many(encodings: Mapping[str, bytes]) -> dict[str, Any] | None:
    """``{key: decode(raw)}`` for a map of many encodings, decoded at once (fresh values).

    The encodings are joined as the members of one JSON object, each checked
    first to be one value that cannot end its member or add another (a
    bracket or string scan, in C), so the object holds exactly these keys and
    values. None when that does not apply (a small map, a key JSON escapes or
    that starts with ``$``, a ``bytes`` value's :class:`BytesEntry`, no C
    speedups, or anything that does not parse): the caller then decodes value by
    value, which also raises for what is malformed. The result is in the map's order.
    """
    if _join_members is None or type(encodings) is not dict or len(encodings) < _MANY:
        return None
    joined = _join_members(encodings)
    if joined is None:
        return None
    try:
        obj = orjson.loads(joined)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or len(obj) != len(encodings):
        return None
    if b"$" in joined and b'{"$' in joined:  # (its keys never start with $: see above)
        try:
            obj = _dec(obj)
        except (PinrunError, RecursionError):
            return None
    decoded: dict[str, Any] = obj
    return decoded


def sorted_keys(mapping: Mapping[str, Any]) -> list[str]:
    """``sorted(mapping)``, without sorting when the keys are in that order already (a
    walk in C tells: a wide map is often built in key order), or are but for a few (a
    state: its inputs first), which are then placed in the rest."""
    if _sorted_keys is not None and type(mapping) is dict:
        made = _sorted_keys(mapping)
        if made is not None:
            return made
    return sorted(mapping)


def key_span(mapping: dict[str, Any]) -> tuple[str, str] | None:
    """``(min(mapping), max(mapping))`` of a non-empty dict whose keys are exact ``str``
    in ascending order (a decoded page's are), read off its ends after one walk in C;
    None when that does not hold (or without the C speedups): the caller checks the
    keys the slow way. No Python code runs, and nothing is compared twice."""
    if _in_order is None or type(mapping) is not dict or not mapping or \
            not _in_order(mapping):
        return None
    return next(iter(mapping)), next(reversed(mapping))


def reads_back(value: Any) -> bool:
    """Whether ``decode(encode(value))`` is ``value`` as it is, which a walk can tell (in C).

    True for exact dicts and lists of ``str``, ``int``, ``float``, ``bool`` and
    ``None``, every dict's keys exact ``str`` in sorted order, none starting with
    ``$`` or holding a lone surrogate (those are written in a tagged form). Then a
    value whose encoding is a given one is what decoding that encoding would make,
    with no copy made. Without the C speedups: False (a walk in Python costs about
    what decoding does); :func:`_reads_back_python` is the reference.
    """
    return _canonical is not None and _canonical(value)


def still_encodes(value: Any, raw: bytes) -> bool:
    """Whether ``value`` :func:`reads_back` as it is and encodes to ``raw``, a canonical
    encoding (``encode(value) == raw``): then it is what ``decode(raw)`` would make.

    First one walk of the value against ``raw`` (in C: nothing encoded or allocated),
    which says yes only when sure; when it is not (a string JSON escapes, an int past
    64 bits, or a value that changed), the value is checked and encoded again.
    """
    if _still_encodes is not None and _still_encodes(value, raw):
        return True
    return encodes_again(value, raw)


def encodes_again(value: Any, raw: bytes) -> bool:
    """:func:`still_encodes` the slow way (where its walk in C is not sure, or not built):
    ``reads_back(value) and encode(value) == raw``."""
    if not reads_back(value):
        return False
    try:
        return encode(value) == raw
    except Exception:  # whatever the value holds now cannot even be encoded
        return False


def read_back_all(values: Mapping[str, Any], encodings: Mapping[str, bytes],
                  wides: tuple[Wide, ...] = ()) -> bool:
    """Whether every value of ``values`` :func:`reads_back` as it is and encodes to its
    encoding in ``encodings`` (the same keys): then they are what :func:`decode_many`
    of the encodings would make, with no copy made.

    One walk of each value against its encoding (in C, see :func:`still_encodes`);
    when that is not sure of every value, one orjson call for the whole map, whose
    members are compared with the encodings in place. False without the C speedups,
    for a small map, or for anything else (a value needing a tag, bytes; a key JSON
    escapes, unless every value was told by the walk).

    ``wides``: :class:`~pinrun.artifacts.seen.Wide` records of steps' outputs. While
    everything one of them saw is unchanged, a value that is the very object its
    outputs held under the key, beside the very encoding cut for it, is told by
    identity instead of a walk (in the same call in C).
    """
    if _members_match is None or type(values) is not dict or type(encodings) is not dict \
            or len(values) < _MANY or len(values) != len(encodings):
        return False
    # One walk of every value against its encoding; when it is not sure of one (see
    # still_encodes), the whole map is encoded again and compared.
    if _all_still_encode is not None and (_all_still_encode(values, encodings, wides)
                                          if wides else _all_still_encode(values, encodings)):
        return True
    if not reads_back(list(values.values())):
        return False
    try:
        whole = orjson.dumps(values, option=_SORT)
    except TypeError:  # an integer past 64 bits, a lone surrogate
        return False
    return _members_match(whole, sorted_keys(values), encodings)


def _reads_back_python(value: Any, depth: int = 0) -> bool:
    """:func:`reads_back` in Python (the reference the C walk is tested against)."""
    cls = type(value)
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return True
    if depth >= 200:
        return False
    if cls is list:
        return all(_reads_back_python(item, depth + 1) for item in value)
    if cls is not dict:
        return False
    keys = list(value)
    for key in keys:
        if type(key) is not str or key[:1] == "$" or any(
                "\ud800" <= char <= "\udfff" for char in key):
            return False
    return all(a < b for a, b in itertools.pairwise(keys)) and \
        all(_reads_back_python(item, depth + 1) for item in value.values())


def encode_digest_map(node: dict[str, Any], field: str, entries: Mapping[str, Digest]) -> bytes:
    """``encode({**node, field: entries})`` for a map of digests, without the generic walk.

    Trees are encoded for every snapshot a run stores, so this path matters;
    a key the generic walk would escape (``$...`` or a lone surrogate) takes it.
    A map tree (``{"type": "map"}``, ``"entries"``) of plain keys is written in C
    (:func:`~pinrun.artifacts._speedups.digest_map`: the same bytes, ~11k fewer
    instructions a tree, two trees a recorded step).
    """
    if _digest_map is not None and field == "entries" and type(entries) is dict and \
            len(node) == 1 and node.get("type") == "map":
        made = _digest_map(entries, Digest)
        if made is not None:
            return made
    plain: dict[str, Any] = {}
    for key, digest in entries.items():
        if key[:1] == "$" or type(key) is not str:
            return encode({**node, field: dict(entries)})
        plain[key] = {"$digest": digest.hex}
    try:
        return orjson.dumps({**node, field: plain}, option=_SORT)
    except TypeError:
        return encode({**node, field: dict(entries)})


def _encode_tagged(value: Any) -> bytes:
    """The encoding of a value that is not plain JSON: the converting walk, then orjson."""
    encoded = _enc(value)
    try:
        return orjson.dumps(encoded, option=_SORT)
    except TypeError as exc:
        if "surrogates" not in str(exc):
            # orjson refuses nesting deeper than 255 levels.
            raise _UnsupportedError(value, f"it is nested too deeply ({exc})") from None
    return orjson.dumps(_escape_surrogates(encoded), option=_SORT)


def _type_name(obj: object) -> str:
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def find_path(root_value: Any, target: object, root: str) -> str:
    """Where ``target`` sits inside ``root_value``, in Python syntax (for error messages)."""
    stack: list[tuple[Any, str]] = [(root_value, root)]
    seen: set[int] = set()
    while stack:
        current, path = stack.pop()
        if current is target:
            return path
        if id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(reversed(list(_children(current, path))))
    return root


def _children(value: Any, path: str) -> list[tuple[Any, str]]:
    if isinstance(value, dict):
        out: list[tuple[Any, str]] = []
        for key, item in value.items():
            out.append((key, f"{path} key {key!r}"))
            out.append((item, f"{path}[{key!r}]"))
        return out
    if isinstance(value, list | tuple):
        return [(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        return [(item, f"{path} element {item!r}") for item in value]
    fields = getattr(type(value), "__dataclass_fields__", None) or getattr(
        type(value), "model_fields", None
    )
    if fields:
        extra = getattr(value, "__pydantic_extra__", None) or {}
        return [(getattr(value, name, None), f"{path}.{name}") for name in [*fields, *extra]]
    if hasattr(value, "iloc") and hasattr(value, "items"):  # a pandas DataFrame or Series
        out = []
        for label, column in value.items():
            cells = column.items() if hasattr(column, "items") else [(None, column)]
            out += [(cell, f"{path}[{label!r}]" + (f"[{row!r}]" if row is not None else ""))
                    for row, cell in cells]
        return out
    return []


# ------------------------------------------------------------------ decode


def _dec(obj: Any) -> Any:
    cls = type(obj)
    if cls is dict:
        if len(obj) == 1:
            ((key, payload),) = obj.items()
            if key[:1] == "$":
                # A digest as pinrun writes it (a tree's entries), in one C call; any
                # other form of the tag is Digest.from_hex's to take or refuse.
                if key == "$digest" and _digest_of_tag is not None:
                    digest = _digest_of_tag(obj, Digest)
                    if digest is not None:
                        return digest
                return _dec_tag(key, payload)
        return {key: _dec(item) for key, item in obj.items()}
    if cls is list:
        return [_dec(item) for item in obj]
    return obj


def _dec_tag(tag: str, payload: Any) -> Any:
    if tag == "$ext":
        if type(payload) is not list or len(payload) != 2:
            raise UndecodableValueError(f"its $ext payload does not fit ({payload!r:.80})")
        codec = _registry.codec_for_name(payload[0]) if type(payload[0]) is str else None
        if codec is None:
            # No codec of that name in this process: the value stays data.
            return types.UnloadedValue(tag, payload)
        return codec.decode(_dec(payload[1]))
    decoder = types.TAG_DECODERS.get(tag)
    if decoder is None:
        raise UndecodableValueError(f"unknown tag {tag[:40]!r}; a newer pinrun may have "
                                    "written it")
    try:
        return decoder(payload, _dec)
    except PinrunError:
        raise
    except RecursionError:
        raise
    except Exception as exc:
        # The bytes passed their digest check, so a payload that does not fit
        # its tag was written by another version of a class or of pinrun, or
        # crafted. Whatever the library underneath raised, it is one error here.
        raise UndecodableValueError(f"its {tag} payload does not fit "
                                    f"({type(exc).__name__}: {str(exc)[:160]})") from None


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UndecodableValueError(f"it is not canonical JSON ({exc})") from None


def decode(data: bytes) -> Any:
    """Rebuild the value that :func:`encode` turned into ``data``.

    Imports nothing and calls nothing the data names: a value of a class that
    is not loaded (or not of the kind its tag declares) comes back as an
    :class:`UnloadedValue`. Anything malformed raises
    :class:`~pinrun.errors.UndecodableValueError`.
    """
    if type(data) is BytesEntry:  # a bytes state value, in memory: immutable, no copy
        return data.value
    try:  # (_loads, without the call: the engine decodes every value a step reads)
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UndecodableValueError(f"it is not canonical JSON ({exc})") from None
    # Tags always appear as the bytes {"$ : plain keys never start with $ and a
    # quote inside a string is escaped, so without them there is nothing to undo.
    # A lone $ is rare in data and memchr finds it ~50x faster than a search
    # for {"$ (which stops at every brace), so look for that first.
    if b"$" in data and b'{"$' in data:
        try:
            return _dec(obj)
        except RecursionError:
            raise UndecodableValueError("it is nested too deeply to rebuild") from None
    return obj


def decode_tagged(data: bytes) -> Any:
    """The stored JSON structure itself, tags included, importing nothing (for display)."""
    return _loads(data)
