"""An effects-heavy flow: five steps, each making ``calls`` effect calls with small arguments.

Each step calls ``ctx.effect`` ``calls`` times (a state input, 10 in the
benchmark, 0 for the same flow with no effects) on :func:`fx_rate`, a pure
function standing in for an API, with a short string and a small int as
arguments: the pattern of a step that asks a service a few questions. Two
effect names are used (``rate`` in three steps, ``fee`` in two), so replay's
matching by (name, argument digest) sees repeated names with distinct
arguments. :func:`direct_runner` runs the same functions with a stand-in
``ctx`` whose ``effect`` just calls the function.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import pinrun

__all__ = ["EFFECT_FLOW", "EFFECT_FUNCTIONS", "direct_runner", "make_inputs"]


def fx_rate(currency: str, day: int) -> float:
    """The outside world: a rate for a currency and a day."""
    return round(1.0 + (len(currency) * 7 + day) % 13 / 100, 4)


def quote(order_id: str, calls: int, ctx: pinrun.Context) -> dict[str, Any]:
    """Rates for the order's own key."""
    return {"r1": round(sum(ctx.effect("rate", fx_rate, order_id, n) for n in range(calls)), 4)}


def convert_eur(r1: float, calls: int, ctx: pinrun.Context) -> dict[str, Any]:
    """EUR rates."""
    return {"r2": round(r1 + sum(ctx.effect("rate", fx_rate, "EUR", n) for n in range(calls)), 4)}


def convert_usd(r2: float, calls: int, ctx: pinrun.Context) -> dict[str, Any]:
    """USD rates."""
    return {"r3": round(r2 + sum(ctx.effect("rate", fx_rate, "USD", n) for n in range(calls)), 4)}


def fees_gbp(r3: float, calls: int, ctx: pinrun.Context) -> dict[str, Any]:
    """GBP fees."""
    return {"r4": round(r3 + sum(ctx.effect("fee", fx_rate, "GBP", n) for n in range(calls)), 4)}


def fees_jpy(order_id: str, r4: float, calls: int, ctx: pinrun.Context) -> dict[str, Any]:
    """JPY fees, and a one-line summary."""
    fees = sum(ctx.effect("fee", fx_rate, "JPY", n) for n in range(calls))
    return {"summary": f"{order_id}: {r4 + fees:.4f}"}


#: The five steps, in order.
EFFECT_FUNCTIONS: Final = (quote, convert_eur, convert_usd, fees_gbp, fees_jpy)
EFFECT_FLOW: Final = pinrun.Flow("effects-x10", [pinrun.step()(func) for func in EFFECT_FUNCTIONS])


def make_inputs(count: int, calls: int, prefix: str = "E") -> list[dict[str, Any]]:
    """``count`` distinct run inputs: an order id and the effect calls per step."""
    return [{"order_id": f"{prefix}{n:06d}", "calls": calls} for n in range(count)]


class _DirectContext:
    """``ctx`` for the direct loop: an effect is just the call."""

    def effect(self, name: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


def direct_runner() -> Any:
    """The flow as a plain loop (no framework): call each function on a dict."""
    ctx = _DirectContext()
    plan: list[tuple[Any, tuple[str, ...]]] = [
        (func, tuple(inspect.signature(func).parameters)) for func in EFFECT_FUNCTIONS]

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        state = dict(inputs)
        for func, reads in plan:
            arguments: dict[str, Any] = {key: ctx if key == "ctx" else state[key]
                                         for key in reads}
            state.update(func(**arguments))
        return state

    return run
