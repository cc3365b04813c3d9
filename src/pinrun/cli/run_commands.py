"""Commands that record runs: run, resume."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from pinrun.cli._common import json_option, print_json, store_option, with_store
from pinrun.cli.inspect_commands import run_summary
from pinrun.errors import InputError, PinrunWarning
from pinrun.safe_text import printable

if TYPE_CHECKING:
    from pinrun.artifacts.store import Store
    from pinrun.engine.records import RunRecord
    from pinrun.engine.run import Durability
    from pinrun.errors import RunFailedError
    from pinrun.flows.flow import Flow
    from pinrun.flows.status import CodePolicy

EXIT_RUN_FAILED = 1
CODE_POLICY_HELP = ("What to do when the code on disk differs from the pinned code: warn "
                    "(run it, say so), strict (refuse), artifact (run the pinned code), "
                    "disabled (do not check).")


def target_entry(target: str) -> str:
    """``MODULE:FLOW`` as importable, putting a file's folder (or the cwd) on ``sys.path``."""
    from pinrun.flows.entries import split_entry

    module_name, attribute = split_entry(target)
    cwd = Path.cwd()
    if str(cwd) not in sys.path:
        sys.path.insert(0, str(cwd))  # as `python -m` would: the project is importable
    if not module_name.endswith(".py"):
        return f"{module_name}:{attribute}"
    path = Path(module_name).resolve()
    if not path.is_file():
        raise InputError(f"no such file: {module_name}")
    if path.is_relative_to(cwd):
        # Recorded by its path in the project (pipelines/daily.py:flow) and imported as
        # pipelines.daily, its folder on sys.path as Python runs a script: replay loads
        # it the same way, and it never shadows a library module.
        return f"{path.relative_to(cwd).as_posix()}:{attribute}"
    existing = sys.modules.get(path.stem)
    if existing is not None and getattr(existing, "__file__", None) != str(path):
        raise InputError(f"{module_name} would be imported as {path.stem!r}, which is "
                         "another module already; run pinrun from the project folder that "
                         "holds the file, or rename it")
    sys.path.insert(0, str(path.parent))
    return f"{path.stem}:{attribute}"


def load_flow(target: str) -> Flow:
    """The flow named by ``MODULE:FLOW`` or ``path/to/file.py:FLOW``."""
    from pinrun.flows.entries import import_entry

    return import_entry(target_entry(target))


def parse_inputs(input_file: str | None, assignments: tuple[str, ...]) -> dict[str, Any]:
    """Inputs from a JSON file (``-`` for stdin), then each ``KEY=JSON`` over them."""
    inputs: dict[str, Any] = {}
    if input_file is not None:
        try:
            text = sys.stdin.read() if input_file == "-" else Path(input_file).read_text()
            loaded = json.loads(text)
        except OSError as exc:
            raise InputError(f"cannot read --input {input_file}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise InputError(f"--input {input_file} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InputError(f"--input {input_file} must hold a JSON object of state keys")
        inputs.update(loaded)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise InputError(f"--set {assignment!r}: write KEY=JSON, e.g. --set order_id='\"A1\"'")
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"--set {key}: {raw!r} is not JSON ({exc.msg}). Quote strings: "
                             f"--set {key}='\"{raw}\"'") from exc
    return inputs


@contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show pinrun's own warnings as one ``pinrun: warning:`` line each on stderr.

    Other warnings (the user's code's) are shown as Python would show them.
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always", PinrunWarning)
            try:
                yield
            finally:
                caught = list(recorded)
    finally:
        # Shown once the recording has ended: shown inside it, a warning would be
        # recorded again into the list being shown, for ever.
        for warning in caught:
            if issubclass(warning.category, PinrunWarning):
                # It names steps and files: shown escaped.
                click.echo(f"pinrun: warning: {printable(warning.message)}", err=True)
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename,
                                     warning.lineno)


def code_policy_option(func: Any) -> Any:
    """Add ``--code-policy``."""
    return click.option("--code-policy", type=click.Choice(["warn", "strict", "artifact",
                                                             "disabled"]),
                        default="warn", show_default=True, help=CODE_POLICY_HELP)(func)


def durability_option(func: Any) -> Any:
    """Add ``--durability``."""
    return click.option(
        "--durability", type=click.Choice(["step", "run", "none"]), default="step",
        show_default=True,
        help="step: commit after every step (a killed run can be resumed); run: one commit "
             "when the run ends; none: the same without forcing it to disk.")(func)


def _report(store: Store, run: RunRecord, as_json: bool) -> None:
    if as_json:
        print_json(run_summary(store, run))
    else:
        click.echo(printable(run.id))


@click.command(name="run")
@click.argument("target", metavar="MODULE:FLOW")
@click.option("--input", "input_file", metavar="FILE",
              help="A JSON object of inputs (state keys); - reads it from stdin.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=JSON",
              help="Set one input (repeatable); the value is JSON: --set n=3 --set id='\"A1\"'.")
@click.option("--tag", "tags", multiple=True, metavar="NAME",
              help="Tag the run NAME (repeatable): a label many runs can carry, for "
                   "`pinrun runs --tag` and `pinrun verify --tag`.")
@code_policy_option
@durability_option
@json_option
@store_option
@with_store
def run_command(store: Store, target: str, input_file: str | None,
                assignments: tuple[str, ...], tags: tuple[str, ...], code_policy: str,
                durability: str, as_json: bool) -> None:
    """Run the flow MODULE:FLOW and record it; prints the run id.

    When the flow was pinned (`pinrun pin`), its code on disk is first checked
    against the pinned code, as --code-policy says.

    \b
    Examples:
      pinrun run examples.pricing:flow --set order_id='"A-1001"'
      pinrun run pipelines/daily.py:flow --input inputs.json --tag nightly
      pinrun run examples.pricing:flow --set order_id='"A-1"' --code-policy strict

    Exit code 1 when a step fails (the failure is recorded too, with the step
    and the error on one line, and tagged as asked).
    """
    from pinrun.artifacts.tags import add_tags, validate_tag
    from pinrun.engine.run import record
    from pinrun.errors import RunFailedError
    from pinrun.flows.entries import import_entry
    from pinrun.flows.pinning import project_root_for
    from pinrun.flows.registry import load_pinned, pinned_flows
    from pinrun.flows.status import flow_under_policy

    for tag in tags:  # a bad name is refused before anything runs
        validate_tag(tag)
    entry = target_entry(target)
    inputs = parse_inputs(input_file, assignments)
    flow: Flow | None = None
    if code_policy == "artifact":
        # The pinned code runs: the module on disk is not even imported.
        pinned = next((p for p in pinned_flows(store).values() if p.entry == entry), None)
        if pinned is None:
            raise InputError(f"{target} was never pinned, so there is no pinned code to run; "
                             f"pin it first: pinrun pin {target}")
    else:
        flow = import_entry(entry)
        pinned = load_pinned(store, flow.name)
    try:
        with warnings_to_stderr(), ExitStack() as stack:
            if pinned is not None:
                flow, _ = stack.enter_context(flow_under_policy(
                    store, cast("CodePolicy", code_policy), pinned.flow, entry=entry,
                    project_root=project_root_for(store.path), flow=flow,
                    what=f"the code pinned for {target}", typed_entry=True))
            assert flow is not None  # imported above, or from the pin
            run = record(flow, inputs, store=store, durability=cast("Durability", durability),
                         entry=entry)
    except RunFailedError as failure:
        add_tags(store, [failure.run.id], tags)
        _fail(store, failure, as_json)
    add_tags(store, [run.id], tags)
    _report(store, run, as_json)


def _fail(store: Store, failure: RunFailedError, as_json: bool) -> NoReturn:
    if as_json:
        print_json(run_summary(store, failure.run))
    # The flow and step names and the error message are the step's own text.
    click.echo(f"pinrun: {printable(failure)}", err=True)
    sys.exit(EXIT_RUN_FAILED)


@click.command(name="resume")
@click.argument("run_id", metavar="RUN")
@code_policy_option
@durability_option
@click.option("--allow-unsigned", is_flag=True,
              help="With --code-policy artifact: run the pinned code of a run pulled from a "
                   "remote even though no key this store trusts signed it.")
@json_option
@store_option
@with_store
def resume_command(store: Store, run_id: str, code_policy: str, durability: str,
                   allow_unsigned: bool, as_json: bool) -> None:
    """Continue RUN, interrupted or failed, from its last committed step.

    The steps that succeeded are not run again; the others run on the state
    committed after them, in the same run record (a failed step's retry is its
    next attempt). By default the code on disk runs, with a warning when it
    differs from the code the run pinned; --code-policy artifact runs the
    pinned code itself, from the store.

    \b
    Examples:
      pinrun resume 20261123T0130
      pinrun resume 20261123T013055012-4f1a2b --code-policy strict

    Exit code 1 when a step fails again.
    """
    from pinrun.engine.records import load_run, recorded_hash_seed
    from pinrun.engine.resume import resume
    from pinrun.errors import RunFailedError

    # A damaged record or recorded hash seed is refused before any step runs again.
    recorded_hash_seed(store, load_run(store, run_id))
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        with warnings_to_stderr():
            run = resume(run_id, store=store, code_policy=cast("CodePolicy", code_policy),
                         durability=cast("Durability", durability),
                         allow_unsigned=allow_unsigned)
    except RunFailedError as failure:
        _fail(store, failure, as_json)
    _report(store, run, as_json)


COMMANDS = (run_command, resume_command)
