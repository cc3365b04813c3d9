"""Order pricing: load an order, price it at a live exchange rate, apply a discount.

The exchange rate comes from "the outside world" (here a stand-in function;
in production an HTTP API). It goes through ``ctx.effect``, so the run
records the rate it got and a replay gets the same rate back without calling
the API.

    pinrun run examples.pricing:flow --set order_id='"A-1001"'
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pinrun

# A small catalogue standing in for the order database.
ORDERS: dict[str, list[dict[str, Any]]] = {
    "A-1001": [{"sku": "KB-01", "qty": 2, "unit_price": "49.90"},
               {"sku": "MS-07", "qty": 1, "unit_price": "19.50"}],
    "A-1002": [{"sku": "MN-27", "qty": 1, "unit_price": "289.00"}],
}
DISCOUNT_TIERS = ((Decimal("200"), Decimal("0.05")), (Decimal("500"), Decimal("0.10")))


def fetch_exchange_rate(currency: str) -> str:
    """Stand-in for an exchange-rate API (EUR per unit of ``currency``)."""
    return {"USD": "0.9210", "GBP": "1.1730", "EUR": "1"}[currency]


@pinrun.step
def load_order(order_id: str) -> dict[str, Any]:
    """Fetch the order's lines."""
    if order_id not in ORDERS:
        raise KeyError(f"unknown order {order_id}")
    return {"lines": ORDERS[order_id], "currency": "USD"}


@pinrun.step
def price_order(lines: list[dict[str, Any]], currency: str, ctx: pinrun.Context) -> dict[str, Any]:
    """Total the lines in EUR at today's recorded exchange rate."""
    rate = Decimal(ctx.effect("exchange_rate", fetch_exchange_rate, currency))
    subtotal = sum(Decimal(line["unit_price"]) * line["qty"] for line in lines)
    return {"subtotal_eur": (subtotal * rate).quantize(Decimal("0.01")),
            "rate": rate, "priced_at": ctx.now()}


@pinrun.step
def apply_discount(subtotal_eur: Decimal) -> dict[str, Any]:
    """The volume discount for the order's size."""
    discount = Decimal("0")
    for threshold, rate in DISCOUNT_TIERS:
        if subtotal_eur >= threshold:
            discount = rate
    total = (subtotal_eur * (1 - discount)).quantize(Decimal("0.01"))
    return {"discount": discount, "total_eur": total}


flow = pinrun.Flow("pricing", [load_order, price_order, apply_discount])
