"""Ed25519 keys: sign what a push publishes, trust what a pull may execute.

A key is written ``NAME:BASE64`` (the public key, 32 bytes; the secret key's
32-byte seed), as Nix writes its signing keys. A private key lives outside
any store: in ``$XDG_CONFIG_HOME/pinrun/keys/NAME.secret`` (mode 0600), or in
the ``PINRUN_SIGNING_KEY`` environment variable of a CI job or a worker (the
key text, or the path of a file holding it). A store trusts public keys by
listing them in its settings (``pinrun key trust``).

What is signed is named by a domain string, so a signature over one thing
can never be replayed as a signature over another.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pinrun.artifacts.digest import Digest
from pinrun.errors import InputError

__all__ = ["PublicKey", "SigningKey", "generate", "key_folder", "parse_public",
           "run_message", "signing_key_from_environment"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_VAR: Final = "PINRUN_SIGNING_KEY"


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InputError(f"{name[:80]!r} is not a key name: use letters, digits and . _ - "
                         "(at most 64), e.g. prod-workers-1")
    return name


def _split(text: str, what: str, *, secret: bool = False) -> tuple[str, bytes]:
    name, sep, encoded = text.strip().partition(":")
    try:
        raw = base64.b64decode(encoded, validate=True) if sep else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        # A secret is never echoed, not even a malformed one.
        shown = "the text given" if secret else repr(text.strip()[:100])
        raise InputError(f"{shown} is not a {what}: write NAME:BASE64 as "
                         "`pinrun key generate` writes it")
    return _check_name(name), raw


@dataclass(frozen=True)
class PublicKey:
    """A named Ed25519 public key."""

    name: str
    raw: bytes

    @property
    def text(self) -> str:
        """``NAME:BASE64``, as printed, pasted and trusted."""
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's over ``message``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class SigningKey:
    """A named Ed25519 private key."""

    def __init__(self, name: str, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        self.public = PublicKey(name, self._key.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw))

    @property
    def secret_text(self) -> str:
        """``NAME:BASE64`` of the seed: keep it secret."""
        return f"{self.name}:{base64.b64encode(self._seed).decode()}"

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:  # never the secret
        return f"SigningKey({self.name!r})"


def parse_public(text: str) -> PublicKey:
    """A public key from its ``NAME:BASE64`` text."""
    name, raw = _split(text, "public key")
    return PublicKey(name, raw)


def parse_secret(text: str) -> SigningKey:
    """A signing key from its ``NAME:BASE64`` text."""
    name, raw = _split(text, "signing key", secret=True)
    return SigningKey(name, raw)


def key_folder() -> Path:
    """Where private keys are kept: ``$XDG_CONFIG_HOME/pinrun/keys`` (or ``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pinrun" / "keys"


def generate(name: str) -> tuple[SigningKey, Path]:
    """A new key pair, its secret written to :func:`key_folder` (never overwritten)."""
    _check_name(name)
    folder = key_folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{name}.secret"
    key = SigningKey(name, os.urandom(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"a key named {name!r} exists already ({path}); pick another name, "
                         "or remove that file if you mean to replace it") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(key.secret_text + "\n")
    (folder / f"{name}.public").write_text(key.public.text + "\n")
    default = folder / "default"
    if not default.exists():
        default.write_text(name + "\n")
    return key, path


def load_named(name: str) -> SigningKey:
    """The private key ``name`` from :func:`key_folder`."""
    path = key_folder() / f"{_check_name(name)}.secret"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"no signing key named {name!r} in {key_folder()}; "
                         f"create one with `pinrun key generate {name}`") from None
    return parse_secret(text)


def signing_key_from_environment() -> SigningKey | None:
    """The key to sign with: ``PINRUN_SIGNING_KEY``, else the default key, else None."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        if ":" not in value:  # a path to a file holding the key (never echoed: it may be one)
            try:
                value = Path(value).read_text().strip()
            except (OSError, ValueError):
                raise InputError(f"{ENV_VAR} is neither a signing key (NAME:BASE64) nor the "
                                 "path of a readable file holding one") from None
        return parse_secret(value)
    default = key_folder() / "default"
    if default.is_file():
        return load_named(default.read_text().strip())
    return None


def run_message(run_id: str, digest: Digest) -> bytes:
    """What a run's signature covers: that run id names exactly that record."""
    return b"pinrun run ref v1\x00" + run_id.encode() + b"\x00" + digest.raw


def index_message(body: bytes) -> bytes:
    """What an index entry's signature covers: its body, byte for byte."""
    return b"pinrun index v1\x00" + body
