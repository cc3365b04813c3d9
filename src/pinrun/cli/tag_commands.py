"""pinrun tag: put a label on runs, take it off, list the labels.

A tag is a label that many runs can carry (``pinrun run --tag``, ``pinrun tag
RUN... NAME``); ``pinrun runs --tag NAME`` lists its runs and ``pinrun verify
--tag NAME`` replays them. Tags are refs (see :mod:`pinrun.artifacts.tags`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pinrun.cli._common import console, json_option, print_json, store_option, with_store
from pinrun.safe_text import for_rich, printable

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store


@click.command(name="tag")
@click.argument("words", nargs=-1, metavar="RUN... NAME")
@click.option("--remove", is_flag=True, help="Take the tag NAME off the runs instead.")
@click.option("--list", "list_tags", is_flag=True,
              help="List every tag and the runs carrying it (no RUN or NAME then).")
@json_option
@store_option
@with_store
def tag_command(store: Store, words: tuple[str, ...], remove: bool, list_tags: bool,
                as_json: bool) -> None:
    """Tag runs with NAME, a label many runs can carry; --remove takes it off.

    The last word is the tag, the others are runs (ids or unique prefixes).
    Tagging a run that already carries the tag, or removing one it does not
    carry, changes nothing and says so (exit 0). `pinrun verify --tag NAME`
    then replays every current run carrying it.

    \b
    Examples:
      pinrun tag 20261123T0130 20261124T0915 golden
      pinrun tag --remove 20261123T0130 golden
      pinrun tag --list --json
      pinrun runs --tag golden
    """
    from pinrun.artifacts.tags import add_tags, remove_tags, run_tags, validate_tag
    from pinrun.engine.records import load_run

    if list_tags:
        if words or remove:
            raise click.UsageError("--list takes no RUN or NAME, and no --remove")
        _list(run_tags(store), as_json)
        return
    if len(words) < 2:
        raise click.UsageError("name the runs, then the tag: pinrun tag RUN... NAME")
    *given, name = words
    validate_tag(name)
    ids = list(dict.fromkeys(load_run(store, run_id).id for run_id in given))
    changed = remove_tags(store, ids, [name]) if remove else add_tags(store, ids, [name])
    done = [run_id for run_id, _ in changed]
    unchanged = [run_id for run_id in ids if run_id not in done]
    if as_json:
        print_json({"tag": name, "removed" if remove else "added": done,
                    "unchanged": unchanged})
        return
    shown = printable(name)
    for run_id in unchanged:
        click.echo(f"run {printable(run_id)} " + (f"does not carry the tag {shown}" if remove
                                       else f"already carries the tag {shown}"))
    verb = "removed the tag" if remove else "tagged"
    runs = "run" if len(done) == 1 else "runs"
    click.echo(f"{verb} {shown} from {len(done)} {runs}" if remove
               else f"{verb} {len(done)} {runs} {shown}")


def _list(labels: dict[str, list[str]], as_json: bool) -> None:
    by_tag: dict[str, list[str]] = {}
    for run_id, names in labels.items():
        for name in names:
            by_tag.setdefault(name, []).append(run_id)
    if as_json:
        print_json({name: sorted(ids) for name, ids in sorted(by_tag.items())})
        return
    if not by_tag:
        click.echo("no tags yet: `pinrun tag RUN... NAME` or `pinrun run --tag NAME` adds one")
        return
    from rich.table import Column, Table

    table = Table(Column("tag", overflow="fold"), Column("runs", justify="right"),
                  Column("newest run", no_wrap=True), box=None, pad_edge=False)
    for name, ids in sorted(by_tag.items()):
        table.add_row(for_rich(name), str(len(ids)), for_rich(max(ids)))
    console().print(table)


COMMANDS = (tag_command,)
