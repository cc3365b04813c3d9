"""The guards benchmark's project: a 5-step order flow whose module holds what project
modules hold at module level (see ``test_bench_guards.py``)."""

from __future__ import annotations

from pathlib import Path

#: The module the flow lives in (a name no other benchmark uses).
GUARDED_MODULE = "pinrun_bench_guarded"

SOURCE = '''"""An order flow over module-level constants, tables, a class and a cache."""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import re
from typing import Any

import pinrun

log = logging.getLogger(__name__)
ORDER_ID = re.compile(r"^[A-Z]\\d+$")
RATES = {"EU": 0.2, "US": 0.07, "UK": 0.2, "JP": 0.1}
REGIONS = ("EU", "US", "UK", "JP")
CURRENCY = "EUR"
MAX_LINES = 50


class Region(enum.Enum):
    EU = "EU"
    US = "US"
    UK = "UK"
    JP = "JP"


@dataclasses.dataclass(frozen=True)
class Line:
    sku: str
    qty: int
    price: float


class Catalog:
    prices = {"A": 1.5, "B": 2.25, "C": 9.99, "D": 0.5}
    currency = "EUR"

    def price(self, sku: str, default: float | None = None) -> float:
        return self.prices.get(sku, default if default is not None else 0.0)


CATALOG = Catalog()


@functools.lru_cache(maxsize=256)
def rate_for(region: str) -> float:
    return RATES[region]


def money(value: float, places: int = 2) -> float:
    return round(value, places)


@pinrun.step
def load(order_id: str) -> dict[str, Any]:
    assert ORDER_ID.match(order_id)
    n = int(order_id[1:])
    skus = "ABCD"
    lines = [Line(skus[(n + i) % 4], 1 + (n + i) % 3, CATALOG.price(skus[(n + i) % 4]))
             for i in range(3)][:MAX_LINES]
    return {"lines": [dataclasses.asdict(line) for line in lines],
            "region": Region(REGIONS[n % len(REGIONS)]).value}


@pinrun.step
def price(lines: list[dict[str, Any]]) -> dict[str, Any]:
    log.debug("pricing %d lines", len(lines))
    return {"subtotal": money(sum(line["qty"] * line["price"] for line in lines))}


@pinrun.step
def tax(subtotal: float, region: str) -> dict[str, Any]:
    return {"tax": money(subtotal * rate_for(region))}


@pinrun.step
def total(subtotal: float, tax: float) -> dict[str, Any]:
    return {"total": money(subtotal + tax)}


@pinrun.step
def receipt(order_id: str, total: float) -> dict[str, Any]:
    return {"receipt": f"{order_id}: {total:.2f} {CURRENCY}"}


FLOW = pinrun.Flow("guarded", [load, price, tax, total, receipt])
'''


def write_guarded_project(folder: Path) -> Path:
    """Write the module into ``folder`` (made if needed); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{GUARDED_MODULE}.py").write_text(SOURCE)
    return folder
