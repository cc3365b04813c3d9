"""Where a pulled run came from, and whether its pinned code may run here.

Before a pulled run becomes visible, its origin is kept under the internal
ref ``pinrun/pulled/<run id>``: the remote, the record it pulled, and the
signer and signature the remote published. Pinned code of such a run is
executed only when that signature is a key's this store trusts
(``pinrun key trust``), checked again at each use, so trusting or
distrusting a key later takes effect at once. A run recorded here, or
imported from a bundle file by hand, has no origin and runs as before.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinrun.artifacts.digest import Digest
from pinrun.artifacts.store import Store
from pinrun.errors import InputError, PinrunError, UntrustedRunError
from pinrun.remote.index import RemoteRun
from pinrun.remote.keys import PublicKey, parse_public, run_message
from pinrun.remote.settings import read_settings, update_settings

__all__ = ["Origin", "check_trusted", "distrust_key", "origin_refs", "pulled_digest",
           "trust_key", "trusted_keys"]

ORIGIN_PREFIX = "pinrun/pulled/"


@dataclass(frozen=True)
class Origin:
    """A pulled run's provenance."""

    remote: str
    digest: Digest
    signer: PublicKey | None
    signature: bytes | None


def origin_refs(store: Store, url: str, runs: Sequence[RemoteRun]) -> dict[str, Digest]:
    """Each run's origin, stored as a value, by the ref that will name it.

    The refs are set by the pull in the same transaction as the runs' own
    refs, so a run and the record of where it came from never disagree.
    """
    refs = {}
    with store.batch() as batch:  # one commit for them all, not one per run
        for run in runs:
            value = {"remote": url, "digest": run.digest.hex,
                     "signer": run.signer.text if run.signer else None,
                     "signature": base64.b64encode(run.signature).decode()
                     if run.signature else None}
            refs[f"{ORIGIN_PREFIX}{run.id}"] = batch.put_value(value)
    return refs


def origin(store: Store, run_id: str) -> Origin | None:
    """The origin of run ``run_id``, or None for a run that was not pulled."""
    target = store.get_ref(f"{ORIGIN_PREFIX}{run_id}")
    if target is None:
        return None
    value: Any = store.get_value(target)
    try:
        return Origin(str(value["remote"]), Digest.from_hex(value["digest"]),
                      parse_public(value["signer"]) if value["signer"] else None,
                      base64.b64decode(value["signature"]) if value["signature"] else None)
    except (KeyError, TypeError, ValueError, PinrunError):
        # A damaged origin is an unsigned one: it never grants trust.
        return Origin("?", target, None, None)


def pulled_digest(store: Store, run_id: str) -> Digest | None:
    """The record a pull brought for ``run_id``, if it was pulled."""
    found = origin(store, run_id)
    return found.digest if found else None


def trusted_keys(store_path: Path) -> list[PublicKey]:
    """The public keys this store trusts to sign pinned code."""
    return [parse_public(text) for text in read_settings(store_path).get("trusted_keys", [])]


def trust_key(store_path: Path, key: PublicKey) -> bool:
    """Trust ``key`` in this store; False when it was trusted already."""
    added = []

    def change(settings: dict[str, Any]) -> None:
        keys = settings.setdefault("trusted_keys", [])
        if any(parse_public(text).raw == key.raw for text in keys):
            return
        if any(parse_public(text).name == key.name for text in keys):
            raise InputError(f"this store trusts another key named {key.name!r} already; if "
                             "that key was replaced, `pinrun key distrust "
                             f"{key.name}` first")
        keys.append(key.text)
        added.append(key)

    update_settings(store_path, change)
    return bool(added)


def distrust_key(store_path: Path, name_or_text: str) -> bool:
    """Stop trusting a key (by name or text); False when it was not trusted."""
    removed = []

    def change(settings: dict[str, Any]) -> None:
        keep = []
        for text in settings.get("trusted_keys", []):
            key = parse_public(text)
            if name_or_text in (key.name, key.text):
                removed.append(key)
            else:
                keep.append(text)
        settings["trusted_keys"] = keep

    update_settings(store_path, change)
    return bool(removed)


def check_trusted(store: Store, run_id: str, digest: Digest | None = None, *,
                  allow_unsigned: bool = False) -> None:
    """Refuse to run pinned code of a pulled run not signed by a trusted key.

    ``digest`` is the record the caller is about to run (default: the run's
    ref now); it must be the very record the trusted signature covers.
    """
    found = origin(store, run_id)
    if found is None or allow_unsigned:
        return
    current = digest if digest is not None else store.get_ref(f"runs/{run_id}")
    if current != found.digest:
        raise UntrustedRunError(
            f"run {run_id} was pulled from {found.remote}, but its record here is not the one "
            "that was pulled (it was changed or continued since), so no signature covers the "
            "pinned code it would run. Pull it again, replay with --code workdir, or pass "
            "--allow-unsigned for this command only")
    trusted = trusted_keys(store.path)
    if found.signer is not None and found.signature is not None:
        message = run_message(run_id, found.digest)
        if any(key.raw == found.signer.raw and key.verify(found.signature, message)
               for key in trusted):
            return
        if any(key.name == found.signer.name for key in trusted):
            raise UntrustedRunError(
                f"run {run_id} was pulled from {found.remote}, signed by a key named "
                f"{found.signer.name!r} that is NOT the key of that name this store trusts. "
                "Someone may be signing in its name: do not trust it unless you know the key "
                "was replaced. Replay with --code workdir, or pass --allow-unsigned")
        raise UntrustedRunError(
            f"run {run_id} was pulled from {found.remote}, signed by key {found.signer.name!r}, "
            f"which this store does not trust, so its pinned code will not run here. If you "
            f"trust whoever holds it: `pinrun key trust {found.signer.text}`; or replay with "
            "--code workdir, or pass --allow-unsigned for this command only")
    raise UntrustedRunError(
        f"run {run_id} was pulled from {found.remote} unsigned, so its pinned code will not "
        "run here: anyone who can write to that remote could have put it there. Push it "
        "signed (`pinrun key generate NAME` where it was recorded, then `pinrun key trust` "
        "here), replay with --code workdir, or pass --allow-unsigned for this command only")
