"""The run context: recorded answers, replayed answers, and divergences."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

from pinrun.engine.context import Context, Event, RecordingLog, ReplayLog, activate, current_context
from pinrun.errors import ContextDivergenceError, UnsupportedValueError


class FixedWorld:
    """A world whose clock and entropy are scripted, so tests are deterministic."""

    def __init__(self) -> None:
        self.ticks = 0

    def now(self) -> dt.datetime:
        self.ticks += 1
        return dt.datetime(2026, 1, 1, 12, 0, self.ticks, tzinfo=dt.UTC)

    def entropy(self, size: int) -> bytes:
        self.ticks += 1
        return bytes([self.ticks]) * size


def _work(ctx: Context, calls: list[str]) -> dict[str, Any]:
    def fetch_rate(currency: str) -> float:
        calls.append(currency)  # observable: the test counts real calls
        return 1.08

    rate = ctx.effect("fx_rate", fetch_rate, "EUR")
    return {"at": ctx.now(), "draw": ctx.random().random(), "id": ctx.uuid4(), "rate": rate}


def test_replay_returns_what_recording_saw_without_calling_effects() -> None:
    """Replaying gives the recorded time, draws, UUIDs and effect results; fn is not called."""
    recording = RecordingLog(FixedWorld())
    calls: list[str] = []
    first = _work(Context("r1", "price", recording), calls)
    assert calls == ["EUR"]
    stored = [Event.from_value(e.as_value()) for e in recording.events]
    replay = ReplayLog(stored)
    again = _work(Context("r1", "price", replay), calls)
    assert again == first
    assert calls == ["EUR"]  # the effect function ran once, while recording
    assert replay.unused == []
    assert first["id"].version == 4


def test_effect_with_other_arguments_diverges() -> None:
    """An effect called with other arguments than recorded is a divergence naming it."""
    recording = RecordingLog(FixedWorld())
    Context("r1", "price", recording).effect("fx_rate", lambda c: 1.0, "EUR")
    replay = ReplayLog(recording.events)
    with pytest.raises(ContextDivergenceError) as caught:
        Context("r1", "price", replay).effect("fx_rate", lambda c: 1.0, "USD")
    assert caught.value.step == "price"
    assert caught.value.index == 0
    assert "fx_rate" in str(caught.value)


def test_other_order_or_extra_calls_diverge() -> None:
    """A call of another kind, or one more than recorded, is a divergence."""
    recording = RecordingLog(FixedWorld())
    Context("r1", "s", recording).now()
    with pytest.raises(ContextDivergenceError, match=r"ctx.now\(\).*ctx.uuid4\(\)"):
        Context("r1", "s", ReplayLog(recording.events)).uuid4()
    replay = ReplayLog(recording.events)
    ctx = Context("r1", "s", replay)
    ctx.now()
    with pytest.raises(ContextDivergenceError, match="nothing more"):
        ctx.now()


def test_unrecordable_effect_results_and_arguments_are_refused() -> None:
    """An effect whose arguments or result cannot be stored fails, naming the effect."""
    ctx = Context("r1", "s", RecordingLog(FixedWorld()))
    with pytest.raises(UnsupportedValueError, match="result of effect 'client'"):
        ctx.effect("client", object)
    with pytest.raises(UnsupportedValueError, match="arguments of effect 'send'"):
        ctx.effect("send", lambda x: 1, object())
    with pytest.raises(TypeError, match="non-empty name"):
        ctx.effect("", lambda: 1)


def test_current_context_is_scoped_to_thread_and_task() -> None:
    """Each thread and asyncio task sees only the context it activated."""
    seen: dict[str, str] = {}

    def in_thread(name: str) -> None:
        with activate(Context(name, "s", RecordingLog(FixedWorld()))):
            seen[name] = current_context().run_id

    threads = [threading.Thread(target=in_thread, args=(f"run{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {f"run{n}": f"run{n}" for n in range(4)}

    async def task(name: str) -> str:
        with activate(Context(name, "s", RecordingLog(FixedWorld()))):
            await asyncio.sleep(0)
            return current_context().run_id

    async def both() -> list[str]:
        return list(await asyncio.gather(task("a"), task("b")))

    assert asyncio.run(both()) == ["a", "b"]
    with pytest.raises(RuntimeError, match="no pinrun step is running"):
        current_context()


def test_a_recorded_effect_error_type_is_looked_up_never_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaying an effect that raised rebuilds only loaded Exception types; it imports nothing."""
    import sys

    from pinrun.errors import InputError, RecordedEffectError

    (tmp_path / "boom_mod_xyz.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('x')\n"
        "class Boom(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {"ValueError": ValueError, "json.JSONDecodeError": RecordedEffectError,
             "boom_mod_xyz.Boom": RecordedEffectError, "subprocess.Popen": RecordedEffectError,
             "os.system": RecordedEffectError, "pinrun.errors.InputError": InputError}
    for type_name, expected in cases.items():
        event = Event("effect", None, "x", "00", (type_name, "it failed"))
        with pytest.raises(Exception) as info:  # noqa: PT011 - the type is what is checked
            event.answer()
        assert type(info.value) is expected, type_name
    assert "boom_mod_xyz" not in sys.modules
    assert not (tmp_path / "boom_mod_xyz.ran").exists()
