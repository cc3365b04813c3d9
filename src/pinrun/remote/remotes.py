"""Named remotes: where they are, how to reach them, and their catalog (cached).

A remote is named in the store's settings (``pinrun remote add``) with its
URL and, for S3, the endpoint, region and whether plain http is allowed;
credentials stay in the environment. Commands take ``--remote NAME`` or a
URL directly (a CI job needs no ``remote add``).

Index entries are immutable and named by their digest, so each one is
fetched once and kept in ``<store>/remotes/<remote>/``; later commands only
list the remote's index and fetch the entries they have not seen.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

import blake3
import orjson

from pinrun.errors import InputError, RemoteError
from pinrun.remote.client import FolderClient, ObjectClient
from pinrun.remote.index import (
    ENTRY_NAME,
    INDEX_PREFIX,
    MARKER,
    MAX_ENTRY,
    Catalog,
    Entry,
    check_marker,
    decode_entry,
)
from pinrun.remote.settings import read_settings, update_settings

__all__ = ["Remote", "RemoteSettings", "add_remote", "list_remotes", "open_remote",
           "remove_remote"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Set to 1 to allow plain-http S3 endpoints for every remote (a CI job's local server).
ALLOW_HTTP: Final = "PINRUN_ALLOW_HTTP"
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class RemoteSettings:
    """How to reach one remote (never a secret)."""

    name: str
    url: str
    endpoint_url: str | None = None
    region: str | None = None
    allow_http: bool = False

    def to_json(self) -> dict[str, Any]:
        """The settings as kept in the store's config."""
        return {"url": self.url, "endpoint_url": self.endpoint_url, "region": self.region,
                "allow_http": self.allow_http}


def _client(settings: RemoteSettings) -> ObjectClient:
    url = settings.url
    if url.startswith("s3://"):
        from pinrun.remote.s3 import S3Client

        bucket, _, prefix = url[len("s3://"):].partition("/")
        return S3Client(bucket, prefix.strip("/"), endpoint_url=settings.endpoint_url,
                        region=settings.region,
                        allow_http=settings.allow_http or os.environ.get(ALLOW_HTTP) == "1")
    return FolderClient(Path(unquote(urlparse(url).path)) if url.startswith("file://")
                        else Path(url))


def normalize_url(url: str) -> str:
    """``s3://BUCKET[/PREFIX]``, or an absolute ``file://`` URL for a folder, checked."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise InputError(f"{url!r}: {bucket!r} is not an S3 bucket name (3-63 lowercase "
                             "letters, digits, dots and hyphens)")
        prefix = prefix.strip("/")
        if prefix and not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", prefix):
            raise InputError(f"{url!r}: a prefix uses letters, digits and . _ / -")
        return f"s3://{bucket}/{prefix}".rstrip("/")
    if "://" in url and not url.startswith("file://"):
        raise InputError(f"{url!r} is not a remote URL pinrun knows: give s3://BUCKET[/PREFIX], "
                         "a folder path, or file:///FOLDER")
    path = Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)
    return path.expanduser().resolve().as_uri()


class Remote:
    """One remote, opened: its client and its catalog."""

    def __init__(self, settings: RemoteSettings, store_path: Path | None) -> None:
        self.name = settings.name
        self.settings = settings
        self.client = _client(settings)
        self.url = self.client.url
        key = blake3.blake3(settings.url.encode()).hexdigest()[:16]
        self._cache = store_path / "remotes" / key if store_path is not None else None
        #: The marker was read and checked (it is never removed): not read again.
        self._marked = False

    def _read_marker(self) -> bool:
        """Read and check the marker once; whether the remote has one."""
        if not self._marked:
            data = self.client.get(MARKER)
            if data is None:
                return False
            check_marker(data, self.url)
            self._marked = True
        return True

    def ensure_marker(self) -> None:
        """Mark a new remote as pinrun's, or check an existing mark."""
        if not self._read_marker():
            self.client.put_new(MARKER, orjson.dumps({"format": 1}))
            if not self._read_marker():
                raise RemoteError(self.url, f"{MARKER} vanished just after it was written")

    def exists(self) -> bool:
        """Whether anything was ever pushed here."""
        return self._read_marker()

    def catalog(self) -> Catalog:
        """Every run the remote publishes, and where each of its records lives."""
        if not self._read_marker():
            raise InputError(f"{self.url} holds no pinrun runs (it has no {MARKER}); check "
                             "the URL, or push to it first")
        skipped: list[str] = []
        listed = []
        for name, size in self.client.list(INDEX_PREFIX):
            if ENTRY_NAME.fullmatch(name):
                listed.append((name, size))
            else:
                skipped.append(name)
        catalog = Catalog.fold(self._entry(name, size) for name, size in listed)
        catalog.skipped = skipped
        return catalog

    def _entry(self, name: str, size: int) -> Entry:
        cached = self._cache / name.rpartition("/")[2] if self._cache else None
        if size > MAX_ENTRY:
            raise RemoteError(self.url, f"index entry {name} holds {size:,} bytes, more than "
                              "any pinrun writes; it is not pinrun's")
        data = None
        from_cache = cached is not None and cached.is_file()
        if cached is not None and from_cache:
            data = cached.read_bytes()
        if data is None:
            data = self.client.get(name)
            if data is None:
                raise RemoteError(self.url, f"{name} vanished while it was being read")
        # A cached copy was checked when it was fetched: its bytes are proven again (its
        # name is their digest), its signature need not be.
        entry = decode_entry(name, data, self.url, check_signature=not from_cache)
        if cached is not None and not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(cached)
        return entry


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InputError(f"{name[:80]!r} is not a remote name: use letters, digits and . _ - "
                         "(e.g. prod)")
    return name


def list_remotes(store_path: Path) -> tuple[list[RemoteSettings], str | None]:
    """The store's remotes and the name of its default one."""
    settings = read_settings(store_path)
    remotes = settings.get("remotes", {})
    out = [RemoteSettings(name, str(r["url"]), r.get("endpoint_url"), r.get("region"),
                          bool(r.get("allow_http"))) for name, r in sorted(remotes.items())]
    return out, settings.get("default_remote")


def add_remote(store_path: Path, remote: RemoteSettings, *, default: bool) -> None:
    """Name a remote in the store's settings (a name already used is an error)."""
    _check_name(remote.name)

    def change(settings: dict[str, Any]) -> None:
        remotes = settings.setdefault("remotes", {})
        if remote.name in remotes:
            raise InputError(f"a remote named {remote.name!r} exists already "
                             f"({remotes[remote.name]['url']}); remove it first")
        remotes[remote.name] = remote.to_json()
        if default or len(remotes) == 1:
            settings["default_remote"] = remote.name

    update_settings(store_path, change)


def remove_remote(store_path: Path, name: str) -> None:
    """Forget a remote (its cached index too); the remote itself is not touched."""
    def change(settings: dict[str, Any]) -> None:
        remotes = settings.get("remotes", {})
        if name not in remotes:
            raise InputError(f"no remote named {name!r}; `pinrun remote list` shows them")
        del remotes[name]
        if settings.get("default_remote") == name:
            settings.pop("default_remote")
            if len(remotes) == 1:
                settings["default_remote"] = next(iter(remotes))

    update_settings(store_path, change)


def open_remote(store_path: Path | None, name_or_url: str | None) -> Remote:
    """The remote named ``name_or_url`` (or that URL, or the default remote)."""
    remotes, default = list_remotes(store_path) if store_path is not None else ([], None)
    by_name = {r.name: r for r in remotes}
    if name_or_url is None:
        if default is None:
            raise InputError("no remote given and no default remote: add one with "
                             "`pinrun remote add NAME URL --default`, or pass --remote")
        name_or_url = default
    if name_or_url in by_name:
        return Remote(by_name[name_or_url], store_path)
    if _NAME.fullmatch(name_or_url) and not Path(name_or_url).exists():
        known = ", ".join(by_name) or "none"
        raise InputError(f"no remote named {name_or_url!r} (remotes: {known}); add it with "
                         "`pinrun remote add NAME URL`, or give a URL")
    url = normalize_url(name_or_url)
    return Remote(RemoteSettings(url, url), store_path)
