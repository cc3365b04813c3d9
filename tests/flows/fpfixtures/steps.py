"""Example steps, one per construct the fingerprint has to handle."""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Callable

import blake3

import pinrun
from tests.flows.fpfixtures import helpers
from tests.flows.fpfixtures.helpers import Color, Money, cached_square, is_even


def uses_stdlib(values: list[float]) -> str:
    """Calls the standard library and an installed package only."""
    digest = blake3.blake3(b"x").hexdigest()
    return json.dumps({"norm": math.sqrt(sum(v * v for v in values)), "d": digest})


def parity(n: int) -> bool:
    """Calls into two mutually recursive project functions."""
    return is_even(n)


def recursive(n: int) -> int:
    """Calls itself."""
    return 0 if n == 0 else recursive(n - 1)


async def fetch_total(items: list[int]) -> int:
    """An async step."""
    return sum(items)


def uses_class(amount: float) -> float:
    """Builds a project dataclass and calls its method."""
    return Money(amount, "EUR").rounded()


def uses_enum() -> int:
    """Reads a project enum."""
    return Color.RED.value


def uses_cached(x: int) -> int:
    """Calls a helper wrapped by functools.cache."""
    return cached_square(x)


def uses_nested(xs: list[float]) -> list[float]:
    """A nested function that calls a helper through its module."""

    def inner(x: float) -> float:
        return helpers.net(x)

    return [inner(x) for x in xs]


class Pricer:
    """A class whose methods are steps."""

    def price(self, amount: float) -> float:
        """A method."""
        return helpers.net(amount)

    @staticmethod
    def static_price(amount: float) -> float:
        """A static method."""
        return helpers.net(amount) * 2


double: Callable[[int], int] = lambda x: x * 2  # noqa: E731 - the fingerprint must cope with module-level lambdas


def uses_lambda(x: int) -> int:
    """Calls a module-level lambda."""
    return int(double(x))


triple = functools.partial(int.__mul__, 3)


def uses_partial(x: int) -> int:
    """Calls a functools.partial, which has no source to fingerprint."""
    return triple(x)


lock = threading.Lock()


def uses_lock() -> int:
    """Reads a lock: state that no fingerprint can capture."""
    with lock:
        return 1


def calls_lock_user() -> int:
    """Reads the lock only through a helper."""
    return uses_lock()


def make_scaler(factor: int) -> Callable[[int], int]:
    """Steps that differ only in a closure value."""

    def scale(x: int) -> int:
        return x * factor

    return scale


scale_by_two = make_scaler(2)
scale_by_three = make_scaler(3)


@pinrun.step(name="net_price")
def net_price(amount: float) -> dict[str, float]:
    """A pinrun step: the module global is a Step object."""
    return {"net": helpers.net(amount)}


def calls_step(amount: float) -> dict[str, float]:
    """Calls another step as a plain function."""
    result: dict[str, float] = net_price(amount)
    return result
