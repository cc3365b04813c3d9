"""``remote``, ``push`` and ``pull``: share runs through S3 or a shared folder."""

from __future__ import annotations

import sys
from typing import Any

import click

from pinrun.artifacts.store import Store
from pinrun.cli._common import (
    console,
    human_bytes,
    json_option,
    print_json,
    progress_bar,
    store_option,
    with_store,
)
from pinrun.safe_text import printable


@click.group(name="remote")
def remote_group() -> None:
    """Name the shared stores runs are pushed to and pulled from.

    A remote is an S3 bucket (s3://BUCKET[/PREFIX]: AWS, or any S3-compatible
    server) or a folder on a shared disk. Credentials come from the standard
    environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    AWS_ENDPOINT_URL) and are never written to the store.

    \b
    Examples:
      pinrun remote add prod s3://acme-runs/pricing --default
      pinrun remote add minio s3://runs --endpoint-url http://127.0.0.1:9000 --allow-http
      pinrun remote add shared /mnt/team/pinrun
    """


@remote_group.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option("--default", "make_default", is_flag=True,
              help="Use this remote when a command names none.")
@click.option("--endpoint-url", metavar="URL",
              help="An S3-compatible server's address (default: $AWS_ENDPOINT_URL, else AWS).")
@click.option("--region", metavar="NAME", help="The S3 region (default: $AWS_REGION).")
@click.option("--allow-http", is_flag=True,
              help="Allow a plain-http endpoint (a server on a private network or test).")
@store_option
@with_store
def remote_add(store: Store, name: str, url: str, make_default: bool,
               endpoint_url: str | None, region: str | None, allow_http: bool) -> None:
    """Name a remote NAME at URL (s3://BUCKET[/PREFIX], a folder, or file:///FOLDER)."""
    from pinrun.errors import InputError
    from pinrun.remote.remotes import RemoteSettings, add_remote, normalize_url

    normalized = normalize_url(url)
    if not normalized.startswith("s3://") and (endpoint_url or region or allow_http):
        raise InputError("--endpoint-url, --region and --allow-http are for s3:// remotes")
    add_remote(store.path, RemoteSettings(name, normalized, endpoint_url, region, allow_http),
               default=make_default)
    click.echo(f"added remote {name}: {normalized}")


@remote_group.command(name="list")
@json_option
@store_option
@with_store
def remote_list(store: Store, as_json: bool) -> None:
    """List the store's remotes (the default one is marked *)."""
    from pinrun.remote.remotes import list_remotes

    remotes, default = list_remotes(store.path)
    if as_json:
        print_json([{"name": r.name, **r.to_json(), "default": r.name == default}
                    for r in remotes])
        return
    if not remotes:
        click.echo("no remotes: add one with `pinrun remote add NAME URL`")
    for remote in remotes:
        extra = f" (endpoint {remote.endpoint_url})" if remote.endpoint_url else ""
        mark = "*" if remote.name == default else " "
        click.echo(printable(f"{mark} {remote.name}  {remote.url}{extra}"))


@remote_group.command(name="remove")
@click.argument("name")
@store_option
@with_store
def remote_remove(store: Store, name: str) -> None:
    """Forget the remote NAME (nothing on the remote is touched)."""
    from pinrun.remote.remotes import remove_remote

    remove_remote(store.path, name)
    click.echo(f"removed remote {name}")


def _selection_options(func: Any) -> Any:
    for option in reversed([
        click.argument("run_ids", nargs=-1, metavar="[RUN]..."),
        click.option("--flow", "flow_name", metavar="NAME", help="Runs of this flow."),
        click.option("--tag", metavar="NAME", help="Runs carrying this tag."),
        click.option("--since", metavar="TIME",
                     help="Runs started since TIME: 2h, 3d, 1w, a date or time (UTC)."),
        click.option("--all", "everything", is_flag=True, help="Every run."),
        click.option("--remote", "remote_name", metavar="NAME|URL",
                     help="The remote (default: the store's default remote)."),
        click.option("--dry-run", is_flag=True, help="Say what would move; move nothing."),
    ]):
        func = option(func)
    return func


def _selection(run_ids: tuple[str, ...], flow_name: str | None, tag: str | None,
               since: str | None, everything: bool, command: str) -> Any:
    from pinrun.cli.inspect_commands import since_prefix
    from pinrun.errors import InputError
    from pinrun.remote.selection import RemoteSelection

    selection = RemoteSelection(run_ids, flow_name, tag,
                                since_prefix(since) if since else None, everything=everything)
    if selection.empty:
        raise InputError(f"say which runs to {command}: RUN..., --flow NAME, --tag NAME, "
                         "--since TIME, or --all")
    return selection


@click.command(name="push")
@_selection_options
@click.option("--sign-with", metavar="KEY",
              help="Sign with this key (default: $PINRUN_SIGNING_KEY, else your default key).")
@click.option("--no-sign", is_flag=True, help="Publish unsigned, even with a key configured.")
@json_option
@store_option
@with_store
def push_command(store: Store, run_ids: tuple[str, ...], flow_name: str | None,
                 tag: str | None, since: str | None, everything: bool,
                 remote_name: str | None, dry_run: bool, sign_with: str | None,
                 no_sign: bool, as_json: bool) -> None:
    """Upload runs, with all they pin, to a remote, as packs.

    Only what the remote lacks is sent, in one pack per 10,000 runs; then the
    runs are published, signed when a signing key is configured. A second push of the
    same runs sends nothing. Pushes from many workers at once are safe.

    \b
    Examples:
      pinrun push --all                     # every run, to the default remote
      pinrun push --flow pricing --since 1d --remote prod
      PINRUN_SIGNING_KEY=... pinrun push --all
    """
    from pinrun.engine.publishing import published_by, selected_runs
    from pinrun.errors import InputError
    from pinrun.remote.keys import load_named, signing_key_from_environment
    from pinrun.remote.remotes import open_remote
    from pinrun.remote.transfer import push_runs

    selection = _selection(run_ids, flow_name, tag, since, everything, "push")
    if no_sign and sign_with:
        raise InputError("--no-sign and --sign-with contradict each other; give one")
    remote = open_remote(store.path, remote_name)
    key = None if no_sign else (load_named(sign_with) if sign_with
                                else signing_key_from_environment())
    # What our own key published already is described from the remote's catalog: a
    # push of runs the remote holds reads no record here.
    catalog = remote.catalog() if remote.exists() else None
    runs = selected_runs(store, selection, published_by(catalog, key))
    if not runs:
        raise InputError("no run in this store matches; nothing was pushed (`pinrun runs` "
                         "lists the runs)")
    if dry_run:
        from pinrun.remote.index import Catalog
        from pinrun.remote.transfer import published_as_here

        catalog = catalog or Catalog()
        _warn_skipped(catalog, remote.url)
        new = [r.id for r in runs if not published_as_here(r, catalog.runs.get(r.id), key)]
        if as_json:
            print_json({"remote": remote.url, "would_push": new,
                        "already": len(runs) - len(new)})
            return
        click.echo(f"would push {len(new)} of {_runs(len(runs))} to {printable(remote.name)}")
        for run_id in new:
            click.echo(f"  {run_id}")
        return
    with progress_bar(f"pushing {len(runs)} runs"):
        report = push_runs(store, remote, runs, key, catalog)
    if as_json:
        print_json({"remote": remote.url, "pushed": report.runs, "already": report.already,
                    "objects": report.objects, "bytes": report.bytes, "pack": report.pack,
                    "signed_by": report.signed_by})
        return
    where = printable(f"{remote.name} ({remote.url})" if remote.name != remote.url
                      else remote.url)
    if not report.runs:
        click.echo(f"nothing to push: {where} has all {_runs(report.already)}")
        return
    signed = f", signed by {report.signed_by}" if report.signed_by else ", unsigned"
    packs = "1 pack" if report.packs == 1 else f"{report.packs} packs"
    sent = (f"{packs} of {report.objects} objects, {human_bytes(report.bytes)}"
            if report.pack else "no new objects")
    click.echo(f"pushed {_runs(len(report.runs))} to {where}: {sent}{signed}"
               + (f"; {report.already} were there already" if report.already else ""))


@click.command(name="pull")
@_selection_options
@json_option
@store_option
@with_store
def pull_command(store: Store, run_ids: tuple[str, ...], flow_name: str | None,
                 tag: str | None, since: str | None, everything: bool,
                 remote_name: str | None, dry_run: bool, as_json: bool) -> None:
    """Download runs, with all they pin, from a remote.

    Only the records this store lacks are fetched. Every record is proven
    against its digest and every signature checked before anything is
    written: a tampered or damaged pack fails the pull (exit 3) with nothing
    written. Pinned code of a pulled run runs only if a trusted key signed it
    (`pinrun key trust`).

    \b
    Examples:
      pinrun pull 20261203T101502113-4f1a2b     # one run, for forensic replay
      pinrun pull --flow pricing --since 7d --remote prod
    """
    from pinrun.remote.remotes import open_remote
    from pinrun.remote.selection import select_remote_runs
    from pinrun.remote.transfer import pull_runs

    selection = _selection(run_ids, flow_name, tag, since, everything, "pull")
    remote = open_remote(store.path, remote_name)
    catalog = remote.catalog()
    _warn_skipped(catalog, remote.url)
    runs = select_remote_runs(catalog, selection)
    if dry_run:
        click.echo(f"would pull {_runs(len(runs))} from {printable(remote.name)}")
        for run in runs:
            click.echo(printable(f"  {run.id}  {run.flow}  {run.status}"))
        return
    with progress_bar(f"pulling {len(runs)} runs") as update:
        report = pull_runs(store, remote, runs, update, catalog)
    if as_json:
        print_json({"remote": remote.url, "pulled": report.runs, "already": report.already,
                    "kept_local": report.kept_local, "objects": report.objects,
                    "bytes": report.bytes})
        return
    out = console(stderr=False)
    for run_id in report.kept_local:
        click.echo(f"kept run {run_id} as it is here: the remote has another record of it, "
                   "and this one was not pulled", err=True)
    if not runs:
        click.echo("no runs match on the remote", err=True)
        sys.exit(0)
    out.print(f"pulled {_runs(len(report.runs))} from {printable(remote.name)}: "
              f"{report.objects} objects, {human_bytes(report.bytes)}"
              + (f"; {report.already} were here already" if report.already else ""),
              markup=False, highlight=False)


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _warn_skipped(catalog: Any, url: str) -> None:
    """Name the stray files under a remote's index/ that were left out."""
    if catalog.skipped:
        names = ", ".join(catalog.skipped[:3]) + (" ..." if len(catalog.skipped) > 3 else "")
        click.echo(printable(f"pinrun: warning: {url} holds {len(catalog.skipped)} object(s) "
                             f"under index/ that are no pinrun index entry, left out: {names}"),
                   err=True)


COMMANDS = [remote_group, push_command, pull_command]
