"""Bundles written by an attacker: nothing runs, nothing outside the store changes, one line.

Each bundle goes through the command line in a child process, as a user
would run it, in a folder where a module with an import-time side effect is
importable: before this was fixed, decoding imported modules named by data
and called classes such as ``subprocess.Popen`` with arguments from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pinrun
from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.objects import FORMAT_VERSION
from pinrun.artifacts.store import Store
from tests.helpers import Project
from tests.hostile import (
    EVIL_MODULE,
    TWO_STEP_FLOW,
    files_outside,
    honest,
    pinrun_cli,
    value_record,
    write_bundle,
    zero_bomb,
    zstd_record,
)


def _hostile_values(sentinels: Path) -> list[bytes]:
    touch = f"touch {sentinels}/SENT"
    return [text.replace("TOUCH", touch).encode() for text in [
        '{"$namedtuple":["subprocess:Popen",[["sh","-c","TOUCH-popen"]]]}',
        '{"$dataclass":["subprocess:Popen",{"args":["sh","-c","TOUCH-dataclass"]}]}',
        '{"$namedtuple":["os:system",["TOUCH-system"]]}',
        '{"$pydantic":["os:system",{"command":"TOUCH-pydantic"}]}',
        '{"$flag":["subprocess:Popen",["sh","-c","TOUCH-flag"]]}',
        '{"$enum":["subprocess:Popen","args"]}',
        '{"$dataclass":["evil_mod:Thing",{"x":1}]}',
        '{"$enum":["evil_mod:E","A"]}',
        '{"$flag":["evil_mod:F",1]}',
        '{"$namedtuple":["evil_mod:Thing",[1]]}',
        '{"$pydantic":["evil_mod:Thing",{"x":1}]}',
        '{"$ext":["evil_mod",{"$namedtuple":["subprocess:Popen",["TOUCH-ext"]]}]}',
        '{"$dataclass":["builtins:eval",{"source":"__import__(\'os\').system(\'TOUCH-eval\')"}]}',
    ]]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A user's folder where an evil module is importable (on PYTHONPATH via ``lib``)."""
    folder = tmp_path / "victim"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "evil_mod.py").write_text(EVIL_MODULE)
    return folder


def _hostile_run(store: Store, project: Project, sentinels: Path) -> tuple[str, str, list[Digest]]:
    """An honest run, and a copy whose outputs, state and events are hostile values."""
    project.write("flows", TWO_STEP_FLOW)
    run = pinrun.record(project.load("flows"), {"order_id": "A"}, store=store)
    assert run.digest is not None
    value: dict[str, Any] = codec.decode(store.load(run.digest)[1])
    values = _hostile_values(sentinels)
    with store.batch() as batch:
        digests = [batch.put(Kind.VALUE, v) for v in values]
        tree = batch.put_entries({f"k{i}": d for i, d in enumerate(digests)})
        events = batch.put(Kind.VALUE, b"[" + b",".join(
            b'{"kind":"effect","name":"x","arguments":"00","value":' + v + b"}"
            for v in values) + b"]")
        new_id = run.id[:-6] + "0bad00"
        steps = [dict(step) for step in value["steps"]]
        steps[0].update(outputs=tree, events=events)
        steps[1].update(inputs=tree)
        crafted = {**value, "id": new_id, "steps": steps, "state": tree}
        batch.set_ref(f"runs/{new_id}", batch.put(Kind.RUN, codec.encode(crafted)))
    return run.id, new_id, digests


@pytest.mark.slow
def test_hostile_class_tags_run_nothing_in_any_command(project: Project,
                                                       project_store: Store,
                                                       victim: Path) -> None:
    """Class tags naming Popen, os.system, eval and an evil module execute nothing, anywhere."""
    from pinrun.artifacts.bundle import export_bundle

    honest_id, hostile_id, digests = _hostile_run(project_store, project, victim)
    bundle = victim / "incident.pinrun"
    export_bundle(project_store, [f"runs/{hostile_id}", f"runs/{honest_id}"], bundle)
    lib = victim / "lib"
    imported = pinrun_cli(victim, "import", str(bundle), extra_path=lib)
    assert imported.returncode == 0, imported.stderr
    before = files_outside(victim, ".pinrun")
    commands: list[list[str]] = [
        ["runs"], ["runs", "--json"], ["show", hostile_id], ["diff", hostile_id, honest_id],
        ["fsck"], ["stats"], ["cat", f"runs/{hostile_id}"], ["gc", "--dry-run"],
        ["export", hostile_id, "-o", str(victim / "out" / "again.pinrun")],
        ["verify", hostile_id, "--code", "workdir"], ["replay", hostile_id, "--code", "workdir"],
        ["replay", hostile_id], ["gc"],
        *[["cat", digest.hex] for digest in digests],
        *[["cat", "--json", digest.hex] for digest in digests[:3]],
    ]
    for command in commands:
        result = pinrun_cli(victim, *command, extra_path=lib)
        shown = result.stdout + result.stderr
        assert result.returncode in (0, 1, 2, 3), (command, shown)
        assert b"Traceback" not in shown, (command, shown)
        assert not (lib / "IMPORTED").exists(), command
        assert not list(victim.glob("SENT*")), command
    after = files_outside(victim, ".pinrun", "out")
    assert after == before  # nothing outside the store changed


@pytest.mark.slow
def test_an_honest_bomb_is_verified_in_bounded_memory(victim: Path) -> None:
    """A 40 KB bundle holding a true 1 GiB value is proven as a stream, never inflated."""
    digest, frame = zero_bomb(1 << 30)
    bundle = write_bundle(victim / "bomb.pinrun",
                          [(digest, zstd_record(Kind.VALUE, digest, 1 << 30, frame))],
                          refs={"tags/bomb": digest.hex})
    assert bundle.stat().st_size < 100_000
    result = pinrun_cli(victim, "import", str(bundle))
    assert result.returncode == 0, result.stderr
    assert result.peak_rss_kib < 64 * 1024, result.peak_rss_kib  # tens of MiB, not 1 GiB


def _refused(victim: Path, bundle: Path) -> Any:
    result = pinrun_cli(victim, "import", str(bundle))
    assert result.returncode == 2, result.stderr
    assert result.one_line_error, result.stderr
    assert not (victim / ".pinrun").exists()  # a refused import makes no store
    assert result.peak_rss_kib < 64 * 1024, result.peak_rss_kib
    return result


@pytest.mark.slow
@pytest.mark.parametrize("claim", ["tiny", "huge", "terabyte", "u64-max", "over-limit"])
def test_bombs_with_lying_sizes_are_refused_cheaply(victim: Path, claim: str) -> None:
    """A header or frame that lies about a record's size is refused before allocating it."""
    digest, frame = zero_bomb(256 << 20)
    header = {"tiny": 10, "huge": (256 << 20) + 1, "terabyte": 1 << 40,
              "u64-max": (1 << 64) - 1, "over-limit": 3 << 30}[claim]
    bundle = write_bundle(victim / "bomb.pinrun",
                          [(digest, zstd_record(Kind.VALUE, digest, header, frame))],
                          refs={"tags/bomb": digest.hex})
    _refused(victim, bundle)


@pytest.mark.slow
def test_a_structural_bomb_is_refused_before_inflating(victim: Path) -> None:
    """A run record that would inflate 256 MiB from a few KB is refused by its ratio."""
    digest, frame = zero_bomb(256 << 20)
    structural = Digest(digest.raw)  # the digest cannot match as a run: refused before that
    bundle = write_bundle(victim / "bomb.pinrun",
                          [(structural, zstd_record(Kind.RUN, structural, 256 << 20, frame))],
                          refs={"runs/x": structural.hex})
    assert "inflate" in _refused(victim, bundle).stderr.decode()


@pytest.mark.parametrize("field", ["record-size", "manifest-size"])
def test_framing_sizes_past_any_limit_are_refused(victim: Path, field: str) -> None:
    """A record length of 2**63 or a manifest of 4 GiB is refused, not allocated."""
    from pinrun.artifacts.bundle_format import BUNDLE_FORMAT, MAGIC, U32, U64

    if field == "record-size":
        body = MAGIC + bytes([BUNDLE_FORMAT]) + U32.pack(2) + b"{}" + b"\x01" + bytes(32) \
            + U64.pack(1 << 63)
    else:
        body = MAGIC + bytes([BUNDLE_FORMAT]) + U32.pack(0xFFFFFFFF)
    (victim / "b.pinrun").write_bytes(body + bytes(64))
    _refused(victim, victim / "b.pinrun")


def test_deep_nesting_and_malformed_tags_are_one_line(victim: Path) -> None:
    """Odd values import as data and show as stored; nesting past JSON's limit is refused."""
    values = [
        b'{"$tuple":[' * 400 + b"]}" * 400,
        b'{"$decimal":"not a number"}',
        b'{"$int":"' + b"9" * 5000 + b'"}',
        b'{"$ndarray":["|O",[1],"AAAAAAAAAAA="]}',
        b'{"$datetime":["x",null,0]}',
    ]
    records = [value_record(v) for v in values]
    refs = {f"tags/v{i}": digest.hex for i, (digest, _) in enumerate(records)}
    bundle = write_bundle(victim / "odd.pinrun", records, refs=refs)
    assert pinrun_cli(victim, "import", str(bundle)).returncode == 0
    for name in refs:
        result = pinrun_cli(victim, "cat", name)
        if name == "tags/v0":  # deeper than JSON output can go: said in one line
            assert result.returncode == 3
            assert result.one_line_error, result.stderr
        else:
            assert result.returncode == 0, result.stderr  # cat shows stored structure as data
    assert pinrun_cli(victim, "fsck").returncode == 0  # values are data: the store is sound
    too_deep = write_bundle(victim / "deep.pinrun", [value_record(b"[" * 2000 + b"]" * 2000)],
                            refs={"tags/deep": value_record(b"[" * 2000 + b"]" * 2000)[0].hex})
    result = pinrun_cli(victim, "import", str(too_deep))
    assert result.returncode == 2
    assert result.one_line_error, result.stderr


def test_reading_malformed_values_through_the_api_raises_store_errors(victim: Path) -> None:
    """Store.get_value of a malformed value raises UndecodableValueError, a StoreError."""
    with pinrun.open_store(victim / ".pinrun", create=True) as store:
        with store.batch() as batch:
            bad = batch.put(Kind.VALUE, b'{"$decimal":"not a number"}')
            deep = batch.put(Kind.VALUE, b'{"$tuple":[' * 400 + b"]}" * 400)
        for digest in (bad, deep):
            with pytest.raises(pinrun.StoreError):
                store.get_value(digest)


def test_unknown_record_format_and_kind_are_refused(victim: Path) -> None:
    """A record with an unknown format version or kind code is refused at import."""
    digest, record = honest(Kind.VALUE, b'"x"')
    future = bytes([FORMAT_VERSION + 1]) + record[1:]
    alien = record[:1] + bytes([99]) + record[2:]
    for body in (future, alien):
        bundle = write_bundle(victim / "f.pinrun", [(digest, body)], refs={"tags/x": digest.hex})
        _refused(victim, bundle)


def test_cat_never_writes_raw_control_characters(victim: Path) -> None:
    """C1 controls, bidi overrides and carriage returns in values and keys print escaped."""
    nasty = "a\u009b2J\u202ec\rX\x1b]0;t\x07"
    with pinrun.open_store(victim / ".pinrun", create=True) as store, store.batch() as batch:
        value = batch.put_value({"k": nasty})
        tree = batch.put_snapshot({nasty: 1, "plain": 2})
        blob = batch.put_blob(nasty.encode())
    for digest in (value, tree, blob):
        result = pinrun_cli(victim, "cat", digest.hex)
        assert result.returncode == 0, result.stderr
        shown = result.stdout.decode()
        for raw in ("\u009b", "\u202e", "\r", "\x1b", "\x07"):
            assert raw not in shown, (digest, shown)


EFFECT_FLOW = """
import pinrun

def fetch() -> int:
    raise ValueError("the service is down")

@pinrun.step
def call(order_id: str, ctx: pinrun.Context) -> dict:
    try:
        ctx.effect("fetch", fetch)
    except Exception as exc:
        return {"failed_with": type(exc).__name__}
    return {"failed_with": None}

flow = pinrun.Flow("effecty", [call])
"""


@pytest.mark.slow
def test_hostile_fields_in_records_and_events_run_nothing(project: Project,
                                                          project_store: Store,
                                                          victim: Path) -> None:
    """Tags in a run record's fields, an env's distributions and an effect's recorded
    exception type, written straight into the store, import and run nothing."""
    project.write("effecty", EFFECT_FLOW)
    run = pinrun.record(project.load("effecty"), {"order_id": "A"}, store=project_store)
    assert run.digest is not None
    record: dict[str, Any] = codec.decode(project_store.load(run.digest)[1])
    events = codec.decode(project_store.load(record["steps"][0]["events"])[1])
    env = codec.decode(project_store.load(record["env"])[1])
    assert events[0]["error"][0] == "ValueError"
    crafted: list[str] = []
    with project_store.batch() as batch:
        for n, error_type in enumerate(["evil_mod.Thing", "subprocess.Popen", "os.system",
                                        "builtins.eval", "evil_mod"]):
            bad_events = [{**events[0], "error": [error_type, "sh -c 'touch SENT-event'"]}]
            steps = [{**record["steps"][0], "events": batch.put_value(bad_events)}]
            crafted.append(run.id[:-6] + f"e{n:05d}")
            batch.set_ref(f"runs/{crafted[-1]}", batch.put(Kind.RUN, codec.encode(
                {**record, "id": crafted[-1], "steps": steps})))
        tag = {"$dataclass": ["evil_mod:Thing", {"x": 1}]}
        bad_env = batch.put(Kind.ENV, codec.encode({**env, "distributions": {"evil": tag}}))
        for suffix, changes in (("f00000", {"env": bad_env}), ("f00001", {"entry": tag}),
                                ("f00002", {"flow": tag}), ("f00003", {"status": tag})):
            crafted.append(run.id[:-6] + suffix)
            payload = codec.encode({**record, "id": crafted[-1]})
            for field, value in changes.items():  # raw JSON: the encoder would not write tags
                import orjson

                raw = orjson.loads(payload)
                raw[field] = value if not isinstance(value, Digest) else {"$digest": value.hex}
                payload = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
            batch.set_ref(f"runs/{crafted[-1]}", batch.put(Kind.RUN, payload))
    lib = victim / "lib"
    root = project.root
    before = files_outside(root, ".pinrun")
    commands: list[list[str]] = [["runs"], ["runs", "--json"], ["fsck"], ["stats"]]
    for run_id in crafted:
        commands += [["show", run_id], ["diff", run_id, run.id], ["replay", run_id],
                     ["replay", run_id, "--code", "workdir"], ["cat", f"runs/{run_id}"]]
    commands += [["verify", "--code", "workdir"], ["verify"], ["export", "--all", "-o",
                                                              str(victim / "all.pinrun")]]
    outcomes: dict[str, int] = {}
    for command in commands:
        result = pinrun_cli(root, *command, extra_path=lib)
        shown = result.stdout + result.stderr
        outcomes[" ".join(command)] = result.returncode
        assert result.returncode in (0, 1, 2, 3), (command, shown)
        assert b"Traceback" not in shown, (command, shown)
        assert not (lib / "IMPORTED").exists(), command
        assert not list(root.rglob("SENT*")), command
    assert files_outside(root, ".pinrun") == before
    # An event naming a type that is not loaded replays with RecordedEffectError standing in
    # (the step catches it and returns another name: diverged, exit 1); the malformed
    # records are damage (exit 3), never a run.
    assert outcomes[f"replay {crafted[0]} --code workdir"] == 1
    assert outcomes[f"replay {crafted[1]}"] == 1
    assert outcomes[f"show {crafted[-1]}"] == 3
    assert outcomes[f"show {crafted[-3]}"] == 3
