"""A small data pipeline: load raw sales, clean them, aggregate by region, report.

    pinrun run examples.pipeline:flow --set day='"2026-11-20"'
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pinrun

RAW_SALES = """region,product,amount,currency
north,widget,120.50,EUR
south,widget,80.00,EUR
north,gadget,,EUR
east,widget,99.90,eur
south,gadget,45.25,EUR
north,widget,12.00,EUR
"""


@pinrun.step
def load(day: str) -> dict[str, Any]:
    """Read the day's raw sales export (CSV)."""
    rows = list(csv.DictReader(io.StringIO(RAW_SALES)))
    return {"raw": rows, "source": f"sales-{day}.csv"}


@pinrun.step
def clean(raw: list[dict[str, str]]) -> dict[str, Any]:
    """Drop rows without an amount; normalise currency codes; parse amounts."""
    rows = [
        {"region": row["region"], "product": row["product"], "amount": float(row["amount"]),
         "currency": row["currency"].upper()}
        for row in raw if row["amount"]
    ]
    return {"rows": rows, "dropped": len(raw) - len(rows)}


@pinrun.step
def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Total sales per region, in a stable (sorted) order."""
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["region"]] = round(totals.get(row["region"], 0.0) + row["amount"], 2)
    return {"by_region": dict(sorted(totals.items()))}


@pinrun.step
def report(by_region: dict[str, float], dropped: int, day: str) -> dict[str, Any]:
    """A one-line summary for the daily mail."""
    best = max(by_region, key=lambda region: by_region[region])
    lines = ", ".join(f"{region} {total:.2f}" for region, total in by_region.items())
    return {"report": f"{day}: {lines}; best {best}; {dropped} row(s) dropped"}


flow = pinrun.Flow("daily-sales", [load, clean, aggregate, report])
