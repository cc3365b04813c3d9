"""An S3-compatible remote through obstore (the Rust ``object_store`` crate).

obstore is imported only when an ``s3://`` remote is used. Credentials come
from the standard environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``), read by obstore;
the endpoint, region and plain-http permission may also come from the
remote's settings. Secrets are never written to the store's config.

Creating an object uses ``If-None-Match: *``, which S3 and compatible
servers (SeaweedFS, Ceph, R2, GCS's S3 API) enforce: of two writers of one
name, exactly one creates it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from pinrun.errors import InputError, RemoteError
from pinrun.remote.client import MAX_OBJECT, check_key

__all__ = ["S3Client"]


class S3Client:
    """One bucket (and prefix) of an S3-compatible store."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None,
                 region: str | None = None, allow_http: bool = False) -> None:
        try:
            from obstore.store import S3Store
        except ImportError:  # pragma: no cover - obstore is a dependency
            raise InputError("s3:// remotes need obstore: pip install obstore") from None
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") \
            or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and endpoint.startswith("http://") and not allow_http:
            raise InputError(f"the endpoint {endpoint} is plain http: add --allow-http to "
                             "`pinrun remote add` if that is intended (a local test server)")
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self._where = self.url + (f" at {endpoint}" if endpoint else "")
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        config["region"] = region or "us-east-1"
        try:
            self._store = S3Store(
                bucket, prefix=prefix or None, config=config,  # type: ignore[arg-type]
                client_options={"allow_http": allow_http, "connect_timeout": "5s",
                                "timeout": "120s"},
                retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=30)})
        except Exception as exc:  # obstore's configuration errors
            raise InputError(f"cannot use remote {self.url}: {_reason(exc)}") from None

    def _fail(self, what: str, exc: Exception) -> RemoteError:
        reason = _reason(exc)
        if "169.254.169.254" in reason or "credential" in reason.lower():
            hint = ("no credentials were found: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with an instance role)")
        elif "error sending request" in reason or "connect" in reason.lower():
            hint = "the server cannot be reached: check the endpoint and the network"
        elif "403" in reason or "Forbidden" in reason or "401" in reason:
            hint = "access was denied: check the credentials and the bucket's permissions"
        elif "NoSuchBucket" in reason or "404" in reason:
            hint = "check the bucket's name (and the endpoint and region)"
        else:
            hint = "check the URL, endpoint and credentials"
        return RemoteError(self._where, f"{what} failed; {hint} ({reason})")

    def get(self, key: str) -> bytes | None:
        import obstore

        try:
            result = obstore.get(self._store, check_key(key, self.url))
            size = int(result.meta["size"])
            if size > MAX_OBJECT:  # known from the headers, before the body is read
                raise RemoteError(self._where, f"{key} holds {size:,} bytes, more than any "
                                  "object pinrun reads whole; it is not pinrun's")
            return bytes(result.bytes())
        except FileNotFoundError:
            return None
        except RemoteError:
            raise
        except Exception as exc:
            raise self._fail(f"reading {key}", exc) from None

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        import obstore

        if not ranges:
            return []
        try:
            # One request per range: the caller has merged what is worth merging
            # (object_store would also fetch the gaps up to 1 MiB between ranges).
            path = check_key(key, self.url)
            parts = [obstore.get_range(self._store, path, start=start, end=end)
                     for start, end in ranges]
        except FileNotFoundError:
            raise RemoteError(self._where, f"{key} is missing, though an index names it") \
                from None
        except Exception as exc:
            raise self._fail(f"reading {key}", exc) from None
        out = [bytes(part) for part in parts]
        for (start, end), data in zip(ranges, out, strict=True):
            if len(data) != end - start:
                raise RemoteError(self._where, f"{key} is shorter than its index says")
        return out

    def put_new(self, key: str, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self._store, check_key(key, self.url), data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
        except Exception as exc:
            raise self._fail(f"writing {key}", exc) from None
        return True

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        import obstore

        try:
            # object_store lists by whole path segments: "index/" is the folder "index".
            for chunk in obstore.list(self._store, prefix.rstrip("/") or None, chunk_size=1000):
                for meta in chunk:
                    if meta["path"].startswith(prefix):
                        yield meta["path"], int(meta["size"])
        except Exception as exc:
            raise self._fail(f"listing {prefix}", exc) from None


def _reason(exc: Exception) -> str:
    """obstore's message, first line only, without the request dump that follows."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
