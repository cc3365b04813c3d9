"""Commands that work on the store itself: init, cat, stats, fsck, gc, upgrade, export,
import."""

from __future__ import annotations

import base64
import sys
from typing import TYPE_CHECKING, Any

import click

from pinrun.cli._common import (
    chosen_store,
    console,
    human_bytes,
    json_option,
    open_cli_store,
    print_json,
    progress_bar,
    store_option,
    with_store,
)
from pinrun.safe_text import printable

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store

EXIT_STORE_PROBLEMS = 3


@click.command()
@store_option
def init(store_path: str | None) -> None:
    """Create a store: ./.pinrun, or the folder given by --store / $PINRUN_STORE.

    Running it again on an existing store changes nothing.
    """
    from pinrun.artifacts.discovery import default_store_path
    from pinrun.artifacts.store import Store

    folder = default_store_path(chosen_store(store_path), for_create=True)
    existed = (folder / "data.mdb").exists()
    with Store.open(folder, create=True) as store:
        where = store.path
    if existed:
        click.echo(f"A pinrun store already exists at {where}; nothing changed.")
    else:
        click.echo(f"Created an empty pinrun store at {where}")


# Objects larger than this are described, not printed, unless --raw asks for the bytes.
_SHOW_LIMIT = 16 << 20


@click.command()
@click.argument("name")
@click.option("--raw", is_flag=True,
              help="Write the object's exact uncompressed bytes to stdout.")
@json_option
@store_option
@with_store
def cat(store: Store, name: str, raw: bool, as_json: bool) -> None:
    """Show one object, named by its digest, a unique prefix (6+ hex) or a ref.

    Values print as JSON: types JSON lacks show as {"$tag": ...} objects
    (see docs/store.md). Trees print as a table of keys and digests.
    """
    from pinrun.artifacts.codec import decode_tagged
    from pinrun.artifacts.digest import Kind

    digest = store.resolve(name)
    info = store.info(digest)
    if info.raw_size > _SHOW_LIMIT and not raw:
        # Shown as JSON it would take several times its size in memory.
        too_big = (f"(a {info.kind.value} of {info.raw_size:,} bytes: too large to show; "
                   "use --raw to write it out)")
        if as_json:
            print_json({"digest": digest.hex, "kind": info.kind.value,
                        "raw_size": info.raw_size, "stored_size": info.stored_size,
                        "codec": info.codec, "content": None})
        else:
            click.echo(too_big)
        return
    kind, payload = store.load(digest)
    chunked = kind is Kind.TREE and b'"type":"chunks"' in payload
    if raw:
        # A large blob is stored as a tree of chunks: --raw writes its bytes.
        sys.stdout.buffer.write(store.get_value(digest) if chunked else payload)
        sys.stdout.flush()
        return
    if chunked and not as_json:
        chunks = decode_tagged(payload)
        click.echo(f"({chunks['size']} bytes of blob data in {len(chunks['chunks'])} "
                   "chunks; use --raw to write them out)")
        return
    content: Any
    if kind is Kind.BLOB:
        content = {"$bytes": base64.b64encode(payload).decode("ascii")}
    else:
        content = decode_tagged(payload)
    try:
        if as_json:
            print_json({"digest": digest.hex, "kind": kind.value, "raw_size": info.raw_size,
                        "stored_size": info.stored_size, "codec": info.codec,
                        "content": content})
            return
        if kind is Kind.BLOB:
            _show_blob(payload)
        elif kind is Kind.TREE and type(content) is dict and content.get("type") == "map":
            _show_tree(store, content["entries"])
        else:
            import orjson

            text = orjson.dumps(content, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            # JSON escapes C0 controls; C1 controls and bidi overrides it leaves raw.
            click.echo(printable(text.decode("utf-8"), newlines=True))
    except TypeError as exc:  # orjson writes at most 255 levels of nesting
        from pinrun.errors import UndecodableValueError

        raise UndecodableValueError(f"object {digest.hex} cannot be shown as JSON ({exc}); "
                                    "`pinrun cat --raw` writes its bytes") from None


def _show_blob(payload: bytes) -> None:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\n\t" for ch in text):
        click.echo(text, nl=not text.endswith("\n"))
    else:
        click.echo(f"({len(payload)} bytes of binary data; use --raw to write them out)")


def _show_tree(store: Store, entries: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    from pinrun.artifacts.digest import Digest

    table = Table("key", "kind", "digest", box=None, pad_edge=False)
    pairs = entries["$map"] if isinstance(entries, dict) and "$map" in entries else \
        list(entries.items())
    for key, ref in pairs:
        digest = Digest.from_hex(ref["$digest"])
        kind = store.info(digest).kind.value if store.has(digest) else "missing"
        table.add_row(Text(printable(key)), kind, digest.hex)  # a key is data, not markup
    console().print(table)


@click.command()
@json_option
@store_option
@with_store
def stats(store: Store, as_json: bool) -> None:
    """Objects by kind, raw and stored bytes, compression and dedup ratios."""
    from rich.table import Table
    from rich.text import Text

    from pinrun.artifacts.maintenance import stats as compute_stats

    figures = compute_stats(store)
    if as_json:
        print_json({"store": str(store.path), **figures.as_dict()})
        return
    table = Table("kind", "objects", "raw", "stored",
                  title=Text(f"pinrun store {store.path}"), title_justify="left")
    for kind, count in figures.objects.items():
        if count:
            table.add_row(kind, f"{count:,}", human_bytes(figures.raw_bytes[kind]),
                          human_bytes(figures.stored_bytes[kind]))
    table.add_row("total", f"{figures.total_objects:,}", human_bytes(figures.total_raw_bytes),
                  human_bytes(figures.total_stored_bytes), style="bold")
    out = console()
    out.print(table)
    out.print(f"compression  {figures.compression_ratio:.2f}x (raw / stored)")
    out.print(f"dedup        {figures.dedup_ratio:.2f}x ({human_bytes(figures.offered_raw_bytes)}"
              " offered by writers / unique raw bytes kept)")
    if figures.dictionary is not None:
        # (The count is of records compressed with any dictionary: pinrun's own too.)
        out.print(f"dictionary   {figures.dictionary.short}; "
                  f"{figures.dictionary_records:,} records use a dictionary")
    else:
        out.print("dictionary   none yet (trained by the first batch of 1,000+ small values)")
    if figures.format_dictionary:
        # A store's first blob puzzles a user whose flows hold no bytes: say what it is.
        out.print("             " + ("until then: pinrun's own, the 2 KiB blob above"
                                     if figures.dictionary is None else
                                     "and pinrun's own, the 2 KiB blob above (older records)"))
    out.print(f"refs         {figures.refs:,}")
    free = max(0, figures.file_bytes - figures.live_bytes)
    out.print(f"file         {human_bytes(figures.file_bytes)} on disk, "
              f"{human_bytes(figures.live_bytes)} in use, map {human_bytes(figures.map_bytes)}")
    if free > max(1 << 20, figures.file_bytes // 4):
        out.print(f"             {human_bytes(free)} of free pages: `pinrun gc --compact` "
                  "gives them back to the disk")


@click.command()
@json_option
@store_option
def fsck(as_json: bool, store_path: str | None) -> None:
    """Check every page, object, ref and reference of the store.

    Reports every problem found, not just the first; exits 3 if there is any.
    The check runs in a child process: damage that crashes LMDB ends it with
    `store damaged: ...` and what was found until then, never a crash.
    """
    from pinrun.artifacts.discovery import default_store_path
    from pinrun.artifacts.fsck_child import fsck_isolated
    from pinrun.errors import StoreDamagedError, StoreNotFoundError

    folder = default_store_path(chosen_store(store_path))
    if not (folder / "data.mdb").is_file():
        raise StoreNotFoundError(str(folder), searched_upward=False)
    with progress_bar("checking objects") as update:
        report = fsck_isolated(folder, update)
    if as_json:
        print_json({"ok": report.ok, "objects_checked": report.objects_checked,
                    "refs_checked": report.refs_checked,
                    "structure_checked": report.structure_checked,
                    "aborted": report.aborted, "store_format": report.store_format,
                    "problems": [p.as_dict() for p in report.problems]})
    else:
        for problem in report.problems:
            if problem.kind != "aborted":
                click.echo(f"{problem.kind:10} {printable(problem.detail)}")
        if report.aborted is None:
            if report.store_format == 1:
                click.echo("note: this store's refs carry no checks (store format "
                           f"{report.store_format}), so a damaged ref name can go unseen; "
                           "`pinrun upgrade` adds them")
            verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
            click.echo(f"checked {report.objects_checked:,} objects and "
                       f"{report.refs_checked:,} refs: {verdict}")
    if report.aborted is not None:
        raise StoreDamagedError(folder.resolve(), report.aborted)
    if not report.ok:
        sys.exit(EXIT_STORE_PROBLEMS)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--compact", is_flag=True,
              help="Then rewrite the data file without its free pages, so it shrinks "
                   "(needs the store to itself).")
@json_option
@store_option
@with_store
def gc(store: Store, dry_run: bool, compact: bool, as_json: bool) -> None:
    """Delete objects that no ref reaches; with --compact, shrink the file too.

    Safe while other processes write: objects committed together with a ref
    are never deleted. Run `pinrun fsck` first if you suspect damage.
    LMDB keeps freed space for reuse but never gives it back to the disk:
    --compact writes a compact copy, checks it like fsck, and swaps it in.
    It refuses while another process has the store open.
    """
    from pinrun.artifacts.compact import compact as run_compact
    from pinrun.artifacts.maintenance import gc as run_gc

    if dry_run and compact:
        raise click.UsageError("--compact rewrites the store; it cannot be a dry run")
    report = run_gc(store, dry_run=dry_run)
    compacted = run_compact(store) if compact else None
    if as_json:
        print_json({"dry_run": report.dry_run, "examined": report.examined,
                    "reachable": report.reachable, "deleted": report.deleted,
                    "freed_bytes": report.freed_bytes,
                    "compacted": None if compacted is None else {
                        "before_bytes": compacted.before_bytes,
                        "after_bytes": compacted.after_bytes}})
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {report.deleted:,} unreachable objects ({human_bytes(report.freed_bytes)})"
               f", kept {report.reachable:,}")
    if compacted is not None:
        click.echo(f"compacted data.mdb from {human_bytes(compacted.before_bytes)} to "
                   f"{human_bytes(compacted.after_bytes)}")


@click.command()
@json_option
@store_option
@with_store
def upgrade(store: Store, as_json: bool) -> None:
    """Bring a store made by an older pinrun to the newest format (2), in which each
    ref carries a check, so that fsck sees a damaged ref name.

    A store keeps its format, which this pinrun reads and writes, until you
    upgrade it; `pinrun fsck` notes a format 1 store (`fsck --json`:
    `store_format`), and on a format 2 store upgrade has nothing to do.
    Once a store is upgraded, an older pinrun refuses it (asking to be
    upgraded itself), so upgrade once every process using the store runs
    this pinrun.

    \b
    The upgrade is one transaction (all or nothing) and needs the store to
    itself: it refuses while another process has it open, and refuses a ref
    that is no valid name and digest. Run `pinrun fsck` first: it finds other
    damage, though not a ref name damaged into another valid one, which is
    what the checks are for, and which an upgrade then seals as it is.
    """
    from pinrun.artifacts.upgrade import upgrade as run_upgrade

    report = run_upgrade(store)
    if as_json:
        print_json({"upgraded": report.upgraded, "format_before": report.format_before,
                    "format_after": report.format_after,
                    "refs_rewritten": report.refs_rewritten})
    elif report.upgraded:
        click.echo(f"upgraded the store from format {report.format_before} to "
                   f"{report.format_after}: {report.refs_rewritten:,} refs now carry a check")
    else:
        click.echo(f"the store is in the newest format ({report.format_after}): nothing to do")


@click.command(name="export")
@click.argument("roots", nargs=-1)
@click.option("-o", "--output", required=True, metavar="FILE", help="The bundle file to write.")
@click.option("--all", "everything", is_flag=True, help="Export every ref in the store.")
@json_option
@store_option
@with_store
def export_command(store: Store, roots: tuple[str, ...], output: str, everything: bool,
                   as_json: bool) -> None:
    """Write ROOTS (run ids, refs or digests) and every object they reach into one bundle.

    A run travels with everything it pins: its steps' inputs, outputs and
    events, the pinned flow and step code (the source bundles), and the
    environment, so `pinrun import` elsewhere can show, resume or replay it.

    \b
    Examples:
      pinrun export 20261123T013055012-4f1a2b -o incident.pinrun
      pinrun export snapshots/latest -o latest.pinrun
      pinrun --store other/ import latest.pinrun
    """
    from pinrun.artifacts.bundle import export_bundle

    if not roots and not everything:
        raise click.UsageError("name at least one ref or digest to export, or pass --all")
    if roots and everything:
        raise click.UsageError("give refs or digests to export, or --all, not both")
    with progress_bar("exporting objects") as update:
        report = export_bundle(store, None if everything else _run_refs(store, roots), output,
                               update)
    if as_json:
        print_json({"path": str(report.path), "objects": report.objects, "bytes": report.bytes,
                    "refs": {k: v.hex for k, v in report.refs.items()},
                    "roots": [d.hex for d in report.roots]})
        return
    click.echo(f"wrote {report.objects:,} objects ({human_bytes(report.bytes)}) with "
               f"{len(report.refs)} ref(s) to {report.path}")


def _run_refs(store: Store, roots: tuple[str, ...]) -> list[str]:
    """Each root that names a run (an id or a unique prefix of one) as its ``runs/`` ref."""
    from pinrun.engine.records import RUN_REF_PREFIX, run_ref
    from pinrun.errors import InputError

    named = []
    for root in roots:
        matches = ([] if "/" in root or store.get_ref(root) is not None
                   else sorted(store.refs(run_ref(root))))
        if run_ref(root) in matches or len(matches) == 1:
            named.append(run_ref(root) if run_ref(root) in matches else matches[0])
        elif matches:
            raise InputError(f"{root!r} is the start of {len(matches)} run ids; give more "
                             f"of it (e.g. {matches[0][len(RUN_REF_PREFIX):]})")
        else:
            named.append(root)
    return named


@click.command(name="import")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite refs that already point elsewhere.")
@json_option
@store_option
def import_command(bundle: str, force: bool, as_json: bool, store_path: str | None) -> None:
    """Verify BUNDLE completely, then add its objects and refs to the store.

    A damaged, truncated or altered bundle is refused and nothing is written.
    The store is the one found upward (or --store); without one, ./.pinrun is made.
    """
    import shutil
    from pathlib import Path

    from pinrun.artifacts.bundle import import_bundle, import_bundle_into_new
    from pinrun.errors import InputError, StoreNotFoundError

    if not Path(bundle).is_file():
        raise InputError(f"no bundle file at {printable(bundle)}")
    try:
        store = open_cli_store(store_path)  # the project's store, found upward
    except StoreNotFoundError:
        made: list[Store] = []

        def make_store() -> Store:  # called once the bundle is proven: a refused one
            made.append(open_cli_store(store_path, create=True))  # leaves no store
            return made[0]

        try:
            with progress_bar("verifying bundle bytes") as update:
                report = import_bundle_into_new(bundle, make_store, progress=update)
        except BaseException:
            for new_store in made:  # made for this import, which wrote nothing
                new_store.close()
                shutil.rmtree(new_store.path, ignore_errors=True)
            raise
        made[0].close()
    else:
        with store, progress_bar("verifying bundle bytes") as update:
            report = import_bundle(store, bundle, force=force, progress=update)
    if as_json:
        print_json({"objects": report.objects, "new_objects": report.new_objects,
                    "refs": {k: v.hex for k, v in report.refs.items()},
                    "roots": [d.hex for d in report.roots]})
        return
    click.echo(f"imported {report.objects:,} objects ({report.new_objects:,} new) and "
               f"{len(report.refs)} ref(s)")
    for name, target in report.refs.items():
        click.echo(f"  {printable(name)} -> {target.short}")


COMMANDS = (init, cat, stats, fsck, gc, upgrade, export_command, import_command)
