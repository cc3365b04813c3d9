"""``key``: sign what you publish; trust what you execute."""

from __future__ import annotations

import click

from pinrun.artifacts.store import Store
from pinrun.cli._common import json_option, print_json, store_option, with_store
from pinrun.safe_text import printable


@click.group(name="key")
def key_group() -> None:
    """Ed25519 keys: pushes are signed, and pinned code pulled from a remote runs only
    if a key this store trusts signed it.

    \b
    Where runs are recorded (once):
      pinrun key generate prod-workers        # prints the public key to trust
      export PINRUN_SIGNING_KEY="$(cat ~/.config/pinrun/keys/prod-workers.secret)"
    Where runs are replayed with their pinned code:
      pinrun key trust prod-workers:BASE64...
    """


@key_group.command(name="generate")
@click.argument("name")
def key_generate(name: str) -> None:
    """Create the key pair NAME; the private key stays in your config folder."""
    from pinrun.remote.keys import generate

    key, path = generate(name)
    click.echo(f"created signing key {name}: {path} (keep it secret; give it to a CI job or "
               "worker as PINRUN_SIGNING_KEY)")
    click.echo("public key, to trust where its runs are replayed with `pinrun key trust`:")
    click.echo(key.public.text)


@key_group.command(name="trust")
@click.argument("public_key", metavar="PUBLIC_KEY")
@store_option
@with_store
def key_trust(store: Store, public_key: str) -> None:
    """Trust PUBLIC_KEY (NAME:BASE64) to sign pinned code this store may run."""
    from pinrun.remote.keys import parse_public
    from pinrun.remote.origin import trust_key

    key = parse_public(public_key)
    if trust_key(store.path, key):
        click.echo(f"this store now trusts key {key.name}")
    else:
        click.echo(f"this store trusts key {key.name} already")


@key_group.command(name="distrust")
@click.argument("key_name", metavar="NAME|PUBLIC_KEY")
@store_option
@with_store
def key_distrust(store: Store, key_name: str) -> None:
    """Stop trusting a key: runs it signed no longer run pinned code here."""
    from pinrun.errors import InputError
    from pinrun.remote.origin import distrust_key

    if not distrust_key(store.path, key_name):
        raise InputError(f"this store does not trust a key {key_name[:80]!r}; "
                         "`pinrun key list` shows the ones it does")
    click.echo(f"this store no longer trusts {printable(key_name)}")


@key_group.command(name="list")
@json_option
@store_option
@with_store
def key_list(store: Store, as_json: bool) -> None:
    """The keys this store trusts, and your own signing key."""
    from pinrun.remote.keys import signing_key_from_environment
    from pinrun.remote.origin import trusted_keys

    trusted = trusted_keys(store.path)
    mine = signing_key_from_environment()
    if as_json:
        print_json({"trusted": [k.text for k in trusted],
                    "signing": mine.public.text if mine else None})
        return
    click.echo("trusted keys:" if trusted else "no trusted keys: `pinrun key trust KEY` adds one")
    for key in trusted:
        click.echo(f"  {key.text}")
    click.echo(f"signing with: {mine.public.text}" if mine else
               "no signing key: `pinrun key generate NAME` creates one")


COMMANDS = [key_group]
