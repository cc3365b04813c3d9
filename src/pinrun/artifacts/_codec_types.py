"""Encoders and decoders for the value model beyond plain JSON.

Each encoder turns one Python value into a tagged JSON structure
``{"$tag": payload}``; each decoder turns the payload back. They receive the
codec's recursive ``enc``/``dec`` functions as arguments so that this module
does not import the codec core (which imports it).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import sys
import uuid
from collections.abc import Callable
from typing import Any, Final

from pinrun.artifacts._codec_classes import (
    Dec,
    Enc,
    NoCodecError,
    UnloadedValue,
    decode_dataclass,
    decode_enum,
    decode_flag,
    decode_namedtuple,
    decode_pydantic,
    encode_dataclass,
    encode_enum,
    encode_namedtuple,
    encode_pydantic,
)
from pinrun.artifacts.digest import Digest

__all__ = [
    "EXACT_ENCODERS",
    "TAG_DECODERS",
    "NoCodecError",
    "UnloadedValue",
    "encode_special",
]

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(payload: Any) -> str:
    """A payload the encoder always writes as a string (a number would decode differently)."""
    if type(payload) is not str:
        raise TypeError(f"expected text, found {type(payload).__name__}")
    return payload


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


# ---------------------------------------------------------------- datetimes
#
# A datetime or time is stored as its naive wall-clock text, a zone spec and
# its fold. Keeping the wall time (rather than an offset to convert from) is
# what round-trips times inside DST gaps and folds, and near datetime.min/max.
# Zone specs: None; ["zone", "Europe/Paris"] for zoneinfo; ["offset",
# microseconds, name or None] for datetime.timezone (sub-second offsets and
# names included, which isoformat text would lose on Python 3.11).


def _enc_zone(tzinfo: dt.tzinfo | None) -> Any:
    if tzinfo is None:
        return None
    key = getattr(tzinfo, "key", None)  # zoneinfo.ZoneInfo keeps its IANA name
    if key is not None and type(tzinfo).__module__ == "zoneinfo":
        return ["zone", key]
    if isinstance(tzinfo, dt.timezone):
        offset = tzinfo.utcoffset(None)
        micros = (offset.days * 86_400 + offset.seconds) * 1_000_000 + offset.microseconds
        named = tzinfo.tzname(None) != dt.timezone(offset).tzname(None)
        return ["offset", micros, tzinfo.tzname(None) if named else None]
    raise NoCodecError(f"time zone type {type(tzinfo).__qualname__} (use zoneinfo or "
                       "datetime.timezone)")


def _dec_zone(spec: Any) -> dt.tzinfo | None:
    if spec is None:
        return None
    if spec[0] == "zone":
        import zoneinfo

        return zoneinfo.ZoneInfo(spec[1])
    offset = dt.timedelta(microseconds=spec[1])
    return dt.timezone(offset, spec[2]) if spec[2] is not None else dt.timezone(offset)


def _enc_datetime(value: dt.datetime, enc: Enc) -> Any:
    wall = value.replace(tzinfo=None, fold=0).isoformat()
    return {"$datetime": [wall, _enc_zone(value.tzinfo), value.fold]}


# The classes as imported: replay guards stand in for the datetime module's own
# attributes while a step runs, and decoding must not go through them.
_DATETIME: Final = dt.datetime
_DATE: Final = dt.date


def _dec_datetime(payload: list[Any], dec: Dec) -> dt.datetime:
    wall, zone, fold = payload
    return _DATETIME.fromisoformat(wall).replace(tzinfo=_dec_zone(zone), fold=fold)


def _enc_time(value: dt.time, enc: Enc) -> Any:
    wall = value.replace(tzinfo=None, fold=0).isoformat()
    return {"$time": [wall, _enc_zone(value.tzinfo), value.fold]}


def _dec_time(payload: list[Any], dec: Dec) -> dt.time:
    wall, zone, fold = payload
    return dt.time.fromisoformat(wall).replace(tzinfo=_dec_zone(zone), fold=fold)


# ------------------------------------------------------------------- numpy


def _enc_ndarray(value: Any, enc: Enc) -> Any:
    if value.dtype.kind in "OV":
        raise NoCodecError(f"numpy arrays of dtype {value.dtype} (only fixed-size dtypes)")
    import numpy as np

    data = np.ascontiguousarray(value).tobytes()
    return {"$ndarray": [value.dtype.str, list(value.shape), _b64(data)]}


# Kinds of fixed-size plain data: bool, ints, floats, complex, datetimes, bytes,
# text. An object or void dtype read from stored bytes would turn those bytes
# into pointers; the encoder never writes one, so the decoder never reads one.
_PLAIN_DTYPE_KINDS: Final = frozenset("biufcmMSU")
# Bounded before allocating: an array's elements come from its base64 text,
# except for zero-size dtypes, which frombuffer cannot size.
_MAX_EMPTY_ELEMENTS: Final = 1 << 24


def _plain_dtype(spec: Any) -> Any:
    import numpy as np

    if type(spec) is not str:
        raise ValueError("a dtype is written as a string")
    kind = np.dtype(spec)
    if kind.kind not in _PLAIN_DTYPE_KINDS or kind.hasobject or kind.fields is not None \
            or kind.subdtype is not None:
        raise ValueError(f"dtype {spec!r} is not a plain fixed-size dtype")
    return kind


def _dec_ndarray(payload: list[Any], dec: Dec) -> Any:
    import numpy as np

    dtype, shape, data = payload
    kind = _plain_dtype(dtype)
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError("an array shape is a list of sizes")
    if kind.itemsize == 0:  # empty strings: frombuffer cannot size them
        if int(np.prod(shape, dtype=object)) > _MAX_EMPTY_ELEMENTS:
            raise ValueError(f"an array of {shape} empty strings is implausible")
        return np.zeros(shape, dtype=kind)
    return np.frombuffer(_unb64(data), dtype=kind).reshape(shape).copy()


def _enc_npscalar(value: Any, enc: Enc) -> Any:
    if value.dtype.kind in "OV":
        raise NoCodecError(f"numpy scalars of dtype {value.dtype}")
    return {"$npscalar": [value.dtype.str, _b64(value.tobytes())]}


def _dec_npscalar(payload: list[Any], dec: Dec) -> Any:
    import numpy as np

    kind = _plain_dtype(payload[0])
    if kind.itemsize == 0:
        return kind.type()
    return np.frombuffer(_unb64(payload[1]), dtype=kind)[0]


# ------------------------------------------------------------------ pandas


def _enc_pandas_values(series: Any, enc: Enc) -> Any:
    dtype = series.dtype
    if type(dtype).__name__ == "CategoricalDtype":
        # Categories and order are part of the value: str(dtype) ("category") would lose them.
        return {"categorical": {
            "categories": _enc_index(dtype.categories, enc),
            "codes": _enc_ndarray(series.cat.codes.to_numpy(), enc)["$ndarray"],
            "ordered": bool(dtype.ordered),
        }}
    if getattr(dtype, "kind", "O") not in "OV" and type(dtype).__module__.startswith("numpy"):
        return {"numpy": _enc_ndarray(series.to_numpy(), enc)["$ndarray"]}
    return {"dtype": str(dtype), "values": enc(series.tolist())}


def _dec_pandas_values(encoded: dict[str, Any], dec: Dec) -> Any:
    if "categorical" in encoded:
        import pandas as pd

        spec = encoded["categorical"]
        return pd.Categorical.from_codes(_dec_ndarray(spec["codes"], dec),
                                         categories=_dec_index(spec["categories"], dec),
                                         ordered=spec["ordered"])
    if "numpy" in encoded:
        return _dec_ndarray(encoded["numpy"], dec)
    import pandas as pd

    values = dec(encoded["values"])
    if encoded["dtype"] == "object":
        return pd.array(values, dtype=object)
    return pd.array(values, dtype=encoded["dtype"])


def _enc_index(index: Any, enc: Enc) -> Any:
    import pandas as pd

    if isinstance(index, pd.MultiIndex):
        raise NoCodecError("pandas MultiIndex (reset_index() first)")
    name = enc(index.name)
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "name": name}
    return {"values": _enc_pandas_values(index.to_series(), enc), "name": name}


def _dec_index(encoded: dict[str, Any], dec: Dec) -> Any:
    import pandas as pd

    name = dec(encoded["name"])
    if "range" in encoded:
        return pd.RangeIndex(*encoded["range"], name=name)
    return pd.Index(_dec_pandas_values(encoded["values"], dec), name=name)


def _enc_dataframe(value: Any, enc: Enc) -> Any:
    columns = [
        _enc_pandas_values(value.iloc[:, position], enc) for position in range(value.shape[1])
    ]
    labels = _enc_index(value.columns, enc)
    index = _enc_index(value.index, enc)
    return {"$dataframe": {"columns": labels, "data": columns, "index": index}}


def _dec_dataframe(payload: dict[str, Any], dec: Dec) -> Any:
    import pandas as pd

    index = _dec_index(payload["index"], dec)
    columns = [_dec_pandas_values(col, dec) for col in payload["data"]]
    frame = pd.DataFrame(dict(enumerate(columns)), index=index, copy=False)
    frame.columns = _dec_index(payload["columns"], dec)
    return frame


def _enc_series(value: Any, enc: Enc) -> Any:
    return {
        "$series": {
            "index": _enc_index(value.index, enc),
            "name": enc(value.name),
            "values": _enc_pandas_values(value, enc),
        }
    }


def _dec_series(payload: dict[str, Any], dec: Dec) -> Any:
    import pandas as pd

    values = _dec_pandas_values(payload["values"], dec)
    return pd.Series(values, index=_dec_index(payload["index"], dec), name=dec(payload["name"]))


# ------------------------------------------------------------------ tables


def encode_special(value: Any, enc: Enc) -> Any:
    """Encode a value whose type needs an ``isinstance`` test; ``NoCodecError`` if none fits."""
    cls = type(value)
    if isinstance(value, enum.Enum):
        return encode_enum(value, enc)
    if hasattr(cls, "__dataclass_fields__") and dataclasses.is_dataclass(value):
        return encode_dataclass(value, enc)
    if isinstance(value, tuple) and hasattr(cls, "_fields"):
        return encode_namedtuple(value, enc)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return encode_pydantic(value, enc)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            if type(value) is not numpy.ndarray:
                # A masked array or matrix would silently lose what makes it one.
                raise NoCodecError(f"numpy array subclass {cls.__qualname__} (convert it to a "
                                   "plain array, or register a codec)")
            return _enc_ndarray(value, enc)
        if isinstance(value, numpy.generic):
            return _enc_npscalar(value, enc)
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(value, pandas.DataFrame):
            return _enc_dataframe(value, enc)
        if isinstance(value, pandas.Series):
            return _enc_series(value, enc)
    raise NoCodecError("")


# Elements sharing one hash make a set or dict quadratic to build: ints that are
# multiples of 2**61 - 1 all hash alike, so a few MB of crafted data would take
# minutes. Honest data has next to no full-hash collisions.
_MAX_SAME_HASH: Final = 64


def _spread(items: list[Any]) -> list[Any]:
    """``items``, once proven not to crowd into one hash bucket (linear: counts by hash)."""
    if len(items) > _MAX_SAME_HASH:
        counts: dict[int, int] = {}
        for item in items:
            key = hash(item)
            counts[key] = seen = counts.get(key, 0) + 1
            if seen > _MAX_SAME_HASH:
                raise ValueError(f"more than {_MAX_SAME_HASH} of its elements share one hash")
    return items


def _spread_pairs(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    _spread([key for key, _ in pairs])
    return pairs


def _enc_float_like(value: float) -> Any:
    if value - value == 0.0:
        return value
    return {"$float": repr(value)}  # 'nan', 'inf' or '-inf': JSON has no spelling for them


# Static tables keyed by built-in types and tags: no user class is ever kept here (user
# classes are looked up afresh, _codec_classes.find_class; registered ones are owned,
# _codec_registry), so a pinned replay's fresh classes are never shadowed by stale ones.
EXACT_ENCODERS: Final[dict[type, Callable[[Any, Enc], Any]]] = {
    bytes: lambda v, enc: {"$bytes": _b64(v)},
    bytearray: lambda v, enc: {"$bytearray": _b64(bytes(v))},
    dt.datetime: _enc_datetime,
    dt.date: lambda v, enc: {"$date": v.isoformat()},
    dt.time: _enc_time,
    dt.timedelta: lambda v, enc: {"$timedelta": [v.days, v.seconds, v.microseconds]},
    decimal.Decimal: lambda v, enc: {"$decimal": str(v)},
    uuid.UUID: lambda v, enc: {"$uuid": v.hex},
    complex: lambda v, enc: {"$complex": [_enc_float_like(v.real), _enc_float_like(v.imag)]},
    Digest: lambda v, enc: {"$digest": v.hex},
    UnloadedValue: lambda v, enc: v.encoded(),
}

TAG_DECODERS: Final[dict[str, Callable[[Any, Dec], Any]]] = {
    "$int": lambda p, dec: int(_text(p)),
    "$float": lambda p, dec: float(_text(p)),
    "$str": lambda p, dec: _unb64(p).decode("utf-8", "surrogatepass"),
    "$bytes": lambda p, dec: _unb64(p),
    "$bytearray": lambda p, dec: bytearray(_unb64(p)),
    "$datetime": _dec_datetime,
    "$date": lambda p, dec: _DATE.fromisoformat(_text(p)),
    "$time": _dec_time,
    "$timedelta": lambda p, dec: dt.timedelta(days=p[0], seconds=p[1], microseconds=p[2]),
    "$decimal": lambda p, dec: decimal.Decimal(_text(p)),
    "$uuid": lambda p, dec: uuid.UUID(hex=_text(p)),
    "$complex": lambda p, dec: complex(dec(p[0]), dec(p[1])),
    "$digest": lambda p, dec: Digest.from_hex(p),
    "$tuple": lambda p, dec: tuple(dec(x) for x in p),
    "$set": lambda p, dec: set(_spread([dec(x) for x in p])),
    "$frozenset": lambda p, dec: frozenset(_spread([dec(x) for x in p])),
    "$map": lambda p, dec: dict(_spread_pairs([(dec(k), dec(v)) for k, v in p])),
    "$enum": decode_enum,
    "$flag": decode_flag,
    "$dataclass": decode_dataclass,
    "$namedtuple": decode_namedtuple,
    "$pydantic": decode_pydantic,
    "$ndarray": _dec_ndarray,
    "$npscalar": _dec_npscalar,
    "$dataframe": _dec_dataframe,
    "$series": _dec_series,
}
