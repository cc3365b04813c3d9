"""The content-addressed store: digests, the canonical codec, objects, LMDB, trees.

This part knows nothing about flows or runs; everything above it stores and
reads through :class:`Store`.
"""

from __future__ import annotations

from pinrun.artifacts.codec import UndecodableValueError, decode, encode, register_type
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.objects import EncodedObject, RecordInfo, encode_record
from pinrun.artifacts.refs import ANY
from pinrun.artifacts.store import Store, WriteBatch, open_store

__all__ = [
    "ANY",
    "Digest",
    "EncodedObject",
    "Kind",
    "RecordInfo",
    "Store",
    "UndecodableValueError",
    "WriteBatch",
    "compute_digest",
    "decode",
    "encode",
    "encode_record",
    "open_store",
    "register_type",
]
