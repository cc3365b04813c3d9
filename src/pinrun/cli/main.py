"""The ``pinrun`` group: global options, error handling, and the list of commands.

Exit codes (the contract): 0 success; 1 diverged or failed; 2 usage or bad
input; 3 store error (missing store, corruption, missing object).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pinrun.cli._common import Settings
from pinrun.errors import PinrunError
from pinrun.safe_text import printable

EXIT_INTERRUPTED = 130


class PinrunGroup(click.Group):
    """A group that turns pinrun's errors into one line and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PinrunError as exc:
            if _debug(ctx):
                raise
            # Messages quote stored names (run ids, refs, step errors): never raw.
            click.echo(f"pinrun: error: {printable(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader left (`pinrun show RUN | head`): click's own handling quiets the
            # output and exits 1, as it does when the pipe breaks at the final flush.
            raise
        except OSError as exc:
            if _debug(ctx):
                raise
            where = printable(f" ({exc.filename})" if exc.filename else "")
            what = printable(exc.strerror or exc)
            click.echo(f"pinrun: error: {what}{where}. Check the path and "
                       "its permissions, and the free disk space.", err=True)
            ctx.exit(3)
        except RecursionError:  # a stored value nested past what Python can walk
            if _debug(ctx):
                raise
            click.echo("pinrun: error: a stored value is nested too deeply to process; the "
                       "store may hold crafted data: `pinrun fsck` checks it.", err=True)
            ctx.exit(3)
        except KeyboardInterrupt:
            click.echo("pinrun: interrupted; nothing half-written was kept. A run recorded "
                       "with --durability step keeps its finished steps: `pinrun runs --status "
                       "interrupted` lists it and `pinrun resume RUN` continues it.", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _debug(ctx: click.Context) -> bool:
    settings = ctx.find_object(Settings)
    return bool(settings and settings.debug)


@click.group(cls=PinrunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", metavar="PATH", default=None,
              help="The store folder. Default: $PINRUN_STORE, else .pinrun/ found upward.")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="pinrun", prog_name="pinrun")
@click.pass_context
def cli(ctx: click.Context, store: str | None, debug: bool) -> None:
    """pinrun: a content-addressed artifact store and replay verifier for workflows.

    Values, snapshots and code are stored under their BLAKE3 digest in an
    LMDB store (.pinrun/ in your project, found upward like .git/).

    \b
    Start here:
      pinrun demo                 a guided tour on a throw-away store
      pinrun init                 create .pinrun/ in this folder
      pinrun run MODULE:FLOW      run a flow and record it
      pinrun runs / show RUN      what was recorded
      pinrun resume RUN           continue an interrupted or failed run
      pinrun replay RUN           re-execute a run and prove it reproduces
      pinrun verify               replay every run against the code: the CI gate
      pinrun report merge FILE... one report from the shards of a CI matrix
      pinrun pin / status         pin a flow's code; check the code on disk against it
      pinrun tag RUN... NAME      label runs; runs/verify --tag NAME select them
      pinrun push / pull          share runs through S3 or a shared folder
      pinrun key                  sign what you push; trust what you run
      pinrun stats / fsck         what the store holds; check it
      pinrun upgrade              bring a store made by an older pinrun to this format

    Exit codes: 0 ok, 1 failed, 2 bad input, 3 store error.
    """
    ctx.obj = Settings(store=store, debug=debug)


def _register() -> None:
    from pinrun.cli import (
        demo,
        inspect_commands,
        key_commands,
        pin_commands,
        remote_commands,
        replay_commands,
        report_commands,
        run_commands,
        store_commands,
        tag_commands,
        verify_commands,
    )

    for command in (*run_commands.COMMANDS, *inspect_commands.COMMANDS,
                    *replay_commands.COMMANDS, *verify_commands.COMMANDS,
                    *pin_commands.COMMANDS, *tag_commands.COMMANDS, *remote_commands.COMMANDS,
                    *key_commands.COMMANDS, *report_commands.COMMANDS,
                    *store_commands.COMMANDS, demo.demo):
        cli.add_command(command)


_register()


def main() -> None:
    """Entry point of the ``pinrun`` console script."""
    from pinrun.cli.hash_seed import ensure_hash_seed

    ensure_hash_seed(sys.argv[1:])
    cli.main(prog_name="pinrun")
    sys.exit(0)  # pragma: no cover - click exits itself
