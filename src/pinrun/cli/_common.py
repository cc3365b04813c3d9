"""What every command shares: the --store and --json options, opening the store, output."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from pinrun.artifacts.store import Store

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Settings:
    """Options given to the ``pinrun`` group itself, before the subcommand."""

    store: str | None = None
    debug: bool = False


def store_option(func: F) -> F:
    """Add ``--store PATH`` to a command (it overrides the group's ``--store``)."""
    return click.option(
        "--store", "store_path", metavar="PATH", default=None,
        help="The store folder. Default: $PINRUN_STORE, else .pinrun/ found upward.",
    )(func)


def json_option(func: F) -> F:
    """Add ``--json``: print machine-readable JSON instead of tables."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON for machines instead of text for people.")(func)


def chosen_store(store_path: str | None) -> str | None:
    """The --store given to the command, else the one given to the group."""
    if store_path:
        return store_path
    ctx = click.get_current_context()
    settings = ctx.find_object(Settings)
    return settings.store if settings else None


def open_cli_store(store_path: str | None, *, create: bool = False) -> Store:
    """Open the store a command should work on."""
    from pinrun.artifacts.store import open_store

    return open_store(chosen_store(store_path), create=create)


def with_store(func: Callable[..., Any]) -> Callable[..., Any]:
    """Open the store named by --store for the command and close it afterwards."""

    @functools.wraps(func)
    def wrapper(*args: Any, store_path: str | None, **kwargs: Any) -> Any:
        with open_cli_store(store_path) as store:
            return func(store, *args, **kwargs)

    return wrapper


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON on stdout, every control character escaped."""
    import orjson

    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    except TypeError:
        # A str UTF-8 cannot hold: a file name or $HOME that is not UTF-8 (Python keeps
        # its bytes as lone surrogates). The json module writes them as \udcff escapes.
        import json

        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True).encode()
    sys.stdout.buffer.write(json_escaped(text) + b"\n")
    sys.stdout.flush()


def json_escaped(text: bytes) -> bytes:
    """JSON text with the characters JSON leaves raw (C1 controls, bidi overrides,
    line separators...) written as ``\\uXXXX`` escapes: still the same JSON value,
    and nothing in it a terminal would obey."""
    decoded = text.decode("utf-8")
    if decoded.isascii():
        return text  # orjson escaped every ASCII control already
    from pinrun.safe_text import json_unicode_escapes

    return json_unicode_escapes(decoded).encode("utf-8")


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - unreachable, keeps mypy sure of a return


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on stderr (only on a terminal); yields ``update(done, total)``.

    A ``total`` of 0 means "not known yet": the bar then only counts.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    err = console(stderr=True)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def json_file_option(help_text: str) -> Callable[[F], F]:
    """Add ``--json [FILE]``: write JSON to FILE, or to stdout when FILE is ``-`` or left out.

    The value is optional, as ``--json`` is a flag on every other command: a
    bare ``--json``, or one followed by another option (``--json --junit-xml
    x.xml``), means stdout, and never takes the next option as its file name.
    Check the value with :func:`check_json_file` before writing.
    """

    def decorate(func: F) -> F:
        return click.option("--json", "json_file", metavar="[FILE]", is_flag=False,
                            flag_value="-", default=None,
                            help=f"{help_text} Without FILE, or with -, on stdout.")(func)

    return decorate


def check_json_file(json_file: str | None, store: Store | None = None) -> None:
    """Refuse a ``--json`` value that is no file to write: a missing folder, or a run id.

    ``--json RUN`` (the option before the runs) would write the report over a
    file named after the run and verify every run instead: with ``store``
    given, a value that names a run in it is refused with how to write it.
    """
    from pathlib import Path

    from pinrun.errors import InputError

    if json_file is None or json_file == "-":
        return
    if store is not None and "/" not in json_file and "." not in json_file:
        from pinrun.engine.records import RUN_REF_PREFIX

        if store.refs(f"{RUN_REF_PREFIX}{json_file}"):
            raise InputError(f"--json took the run {json_file} as its file name; put --json "
                             "after the runs, or give it a file (--json report.json) or - "
                             "for stdout")
    if not Path(json_file).resolve().parent.is_dir():
        raise InputError(f"--json {json_file}: its folder does not exist; create it first")
