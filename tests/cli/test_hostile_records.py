"""Hostile records through the command line, each command a real subprocess.

One store holds real runs of a flow whose names, keys and error messages
carry terminal escape sequences and rich markup, beside crafted records: a
run whose id climbs out of the store, records with a missing field, a wrong
type or an unknown status, a run whose id is an escape sequence, and one
whose environment holds a hash seed Python refuses to start with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import open_store
from tests.helpers import SRC

pytestmark = pytest.mark.slow

EVIL = "\x1b]0;pwned\x07\x1b[2J[red]x[/red]"

FLOWS = f"""
import os

import pinrun

EVIL = {EVIL!r}


@pinrun.step(name="load" + EVIL)
def load(n: int) -> dict:
    return {{"value" + EVIL: n}}


@pinrun.step(name="boom" + EVIL)
def boom(n: int) -> dict:
    raise ValueError("bad " + EVIL)


@pinrun.step(name="noisy" + EVIL)
def noisy(n: int) -> dict:
    return {{"key" + EVIL: os.urandom(4).hex()}}


# A flow's name becomes a ref (flows/NAME), which may not hold control
# characters: markup only here; crafted records carry escapes in theirs.
ok = pinrun.Flow("ok[red]x[/red]", [load])
failing = pinrun.Flow("failing[red]x[/red]", [boom])
noisy_flow = pinrun.Flow("noisy[red]x[/red]", [noisy])
"""

#: Crafted run ids (valid in form) and what is wrong with each record.
MISSING = "20300101T000000000-00000a"
MISTYPED = "20300101T000000000-00000b"
UNKNOWN_STATUS = "20300101T000000000-00000c"
HAZARDS = "20300101T000000000-00000d"
BAD_SEED = "20300101T000000000-00000e"
#: A ref whose record's id is an escape sequence.
EVIL_ID_REF = "20300101T000000000-0000ef"
#: A ref (a valid name) made of markup, holding another run's record.
MARKUP_REF = "[red]x[/red]"
BAD = (MISSING, MISTYPED, UNKNOWN_STATUS, EVIL_ID_REF)
#: Refs whose record says it is run ../../precious (ref names themselves
#: cannot hold "..": the store refuses such names).
TRAVERSAL_REFS = ("x",)
#: Environment variables that would make rich or click write styles of their own.
_STYLE_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE",
              "PINRUN_STORE", "PYTHONHASHSEED", "PINRUN_HASH_SEED_SET", "GITHUB_ACTIONS")


@dataclass
class World:
    """The folders, and the ids of the real runs."""

    root: Path
    project: Path
    store: Path
    runs: dict[str, str]

    def pinrun(self, *args: str, env: dict[str, str] | None = None,
               store: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        """``python -m pinrun ARGS`` in the project folder; bytes out, whatever it exits."""
        base = {key: value for key, value in os.environ.items() if key not in _STYLE_ENV}
        base.update(PYTHONPATH=str(SRC), COLUMNS="240", **(env or {}))
        command = [sys.executable, "-m", "pinrun", "--store", str(store or self.store), *args]
        return subprocess.run(command, cwd=self.project, env=base, capture_output=True,
                              timeout=180, check=False)

    def outside(self) -> dict[str, bytes]:
        """Every file outside the store, with its content."""
        return {str(path.relative_to(self.root)): path.read_bytes()
                for path in sorted(self.root.rglob("*"))
                if path.is_file() and self.store not in path.parents}


def _craft(store_path: Path, runs: dict[str, str]) -> None:
    """Write the crafted records next to the real ones, as a hostile bundle would."""
    with open_store(store_path) as store:
        base: dict[str, Any] = codec.decode_tagged(store.load(store.ref(f"runs/{runs['ok']}"))[1])
        env: dict[str, Any] = codec.decode_tagged(store.load(store.ref(f"runs/{runs['ok']}"))[1])
        env = codec.decode_tagged(store.load(_digest(base["env"]))[1])
        step = base["steps"][0]
        crafted: dict[str, dict[str, Any]] = {
            MISSING: {key: value for key, value in base.items() if key != "inputs"},
            MISTYPED: {**base, "steps": [{**step, "attempt": "1"}]},
            UNKNOWN_STATUS: {**base, "status": "exploded"},
            HAZARDS: {**base, "flow": f"crafted{EVIL}",
                      "steps": [{**step, "hazards": [f"collision on {EVIL}"]}]},
        }
        with store.batch() as batch:
            bad_env = batch.put(Kind.ENV, _json({**env, "hash_seed": "99999999999"}))
            crafted[BAD_SEED] = {**base, "env": {"$digest": bad_env.hex}}
            for run_id, record in crafted.items():
                batch.set_ref(f"runs/{run_id}", batch.put(Kind.RUN, _json({**record,
                                                                            "id": run_id})))
            traversal = batch.put(Kind.RUN, _json({**base, "id": "../../precious",
                                                   "status": "running"}))
            for name in TRAVERSAL_REFS:
                batch.set_ref(f"runs/{name}", traversal)
            batch.set_ref(f"runs/{EVIL_ID_REF}", batch.put(Kind.RUN, _json({**base, "id": EVIL})))
            batch.set_ref(f"runs/{MARKUP_REF}", store.ref(f"runs/{runs['ok']}"))


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _digest(tag: dict[str, str]) -> Any:
    from pinrun.artifacts.digest import Digest

    return Digest.from_hex(tag["$digest"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Real runs of the hostile flows, and the crafted records, in one store."""
    root = tmp_path_factory.mktemp("outer")
    project = root / "project"
    (project / "evilpkg").mkdir(parents=True)
    (project / "evilpkg" / "__init__.py").write_text("")
    (project / "evilpkg" / "flows.py").write_text(textwrap.dedent(FLOWS))
    for sentinel in (root / "precious.lock", project / "precious.lock"):
        sentinel.write_text("precious")
    made = World(root, project, project / ".pinrun", {})
    assert made.pinrun("init").returncode == 0
    for label, target in (("ok", "ok"), ("failing", "failing"), ("noisy", "noisy_flow"),
                          ("noisy2", "noisy_flow")):
        done = made.pinrun("run", f"evilpkg.flows:{target}", "--set", "n=1", "--json")
        assert done.returncode in (0, 1), done.stderr
        made.runs[label] = json.loads(done.stdout)["id"]
    _craft(made.store, made.runs)
    return made


def _one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The single line a refusal prints, checked to be one line and no traceback."""
    text = result.stderr.decode()
    assert b"Traceback" not in result.stderr + result.stdout, text
    assert len(text.strip().splitlines()) == 1, text
    return text


def test_a_run_id_climbing_out_of_the_store_is_refused(world: World) -> None:
    """resume, show and replay refuse a record whose id is a path: exit 3, nothing outside."""
    before = world.outside()
    for name in TRAVERSAL_REFS:
        for command in ("resume", "show", "replay"):
            result = world.pinrun(command, name)
            assert result.returncode == 3, (command, name, result.stderr)
            assert "corrupt" in _one_line(result)
    assert world.outside() == before
    assert (world.root / "precious.lock").read_text() == "precious"
    assert (world.project / "precious.lock").read_text() == "precious"


def test_runs_lists_the_good_runs_and_names_the_bad(world: World) -> None:
    """One bad record does not hide the store: the good runs are listed, each bad one named."""
    result = world.pinrun("runs")
    assert result.returncode == 3
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in out + err
    for run_id in (*world.runs.values(), HAZARDS, BAD_SEED):
        assert run_id in out
    warnings = err.splitlines()
    assert all(line.startswith("pinrun: warning: run ") for line in warnings), err
    for name in (*BAD, *TRAVERSAL_REFS, MARKUP_REF):
        assert sum(f"run {name} cannot be read" in line for line in warnings) == 1, name
    assert len(warnings) == len(BAD) + len(TRAVERSAL_REFS) + 1
    assert "\\x1b]0;pwned\\x07\\x1b[2J[red]x[/red]" in err  # the crafted id, escaped
    listed = json.loads(world.pinrun("runs", "--json").stdout)
    unreadable = {item["id"] for item in listed if item["status"] == "unreadable"}
    assert unreadable == {*BAD, *TRAVERSAL_REFS, MARKUP_REF}
    assert {item["id"] for item in listed} - unreadable >= set(world.runs.values())


@pytest.mark.parametrize("run_id", [*BAD, MARKUP_REF])
def test_show_of_a_bad_record_is_one_line(world: World, run_id: str) -> None:
    """show of a malformed record exits 3 with one line naming what is wrong."""
    result = world.pinrun("show", run_id)
    assert result.returncode == 3
    assert result.stdout == b""
    line = _one_line(result)
    assert "not a well-formed run object" in line or "kept under the ref" in line
    assert b"\x1b" not in result.stderr


def test_fsck_reports_and_import_refuses_malformed_records(world: World) -> None:
    """fsck names the malformed records; a bundle holding them is refused, nothing written."""
    fsck = world.pinrun("fsck")
    assert fsck.returncode == 3
    report = (fsck.stdout + fsck.stderr).decode()
    assert "not a well-formed run object" in report
    assert "hash_seed" in report
    bundle = world.root / "all.pinrun"
    assert world.pinrun("export", "--all", "-o", str(bundle)).returncode == 0
    other = world.root / "other"
    assert world.pinrun("init", store=other).returncode == 0
    refused = world.pinrun("import", str(bundle), store=other)
    assert refused.returncode == 2
    assert "not a well-formed" in _one_line(refused)
    assert world.pinrun("runs", "--json", store=other).stdout.strip() == b"[]"
    bundle.unlink()


def test_no_escape_sequence_reaches_the_terminal(world: World) -> None:
    """Escapes in stored names, keys, errors and ids are shown escaped; markup prints literally."""
    runs = world.runs
    junit = world.root / "junit.xml"
    commands: list[tuple[str, ...]] = [
        ("runs",), ("runs", "--json"),
        ("show", runs["ok"]), ("show", runs["failing"]), ("show", HAZARDS),
        ("show", runs["noisy"], "--json"), ("replay", HAZARDS),
        ("replay", runs["failing"]), ("replay", runs["noisy"]), ("replay", runs["ok"], "--json"),
        ("diff", runs["noisy"], runs["noisy2"]), ("diff", runs["ok"], runs["failing"]),
        ("verify", runs["ok"], runs["failing"], runs["noisy"], "--junit-xml", str(junit)),
        ("run", "evilpkg.flows:failing", "--set", "n=2"),
        ("pin", "evilpkg.flows:ok"), ("status", "evilpkg.flows:ok"),
    ]
    shown = b""
    for command in commands:
        result = world.pinrun(*command, env={"GITHUB_ACTIONS": "true"})
        output = result.stdout + result.stderr
        assert b"\x1b" not in output, (command, output)
        assert b"\x07" not in output, (command, output)
        # pinrun never crashes; show prints the failed step's recorded traceback (on stdout).
        assert b"Traceback" not in (result.stderr if command[0] == "show" else output), \
            (command, output)
        shown += output
    assert b"\x1b" not in junit.read_bytes()
    text = shown.decode()
    assert "[red]x[/red]" in text  # markup printed as the characters it is made of
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in text  # the escape, shown as its escape
    assert "hazard in load\\x1b]0;pwned" in text  # show names the crafted hazard
    assert "::error" in text  # the GitHub annotation was written, escaped


@pytest.mark.parametrize("command", ["replay", "resume", "verify"])
def test_a_bad_recorded_hash_seed_is_one_line(world: World, command: str) -> None:
    """A hash seed Python would die on is refused before anything re-executes."""
    result = world.pinrun(command, BAD_SEED)
    assert result.returncode == 3, result.stderr
    output = (result.stdout + result.stderr).decode()
    assert "Fatal Python error" not in output
    assert "hash_seed" in output
    if command != "verify":
        _one_line(result)
