"""``pinrun demo``: a guided tour of the store on a throw-away folder."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from pinrun.cli._common import chosen_store, console, human_bytes, store_option


def _example_state(revision: int) -> dict[str, Any]:
    """An order-pricing state; ``revision`` changes one key, as one workflow step would."""
    import datetime as dt
    from decimal import Decimal

    items = [
        {"sku": f"SKU-{n:04d}", "qty": 1 + n % 3, "price": Decimal(f"{9 + n}.99"),
         "tags": ("gift",) if n % 5 == 0 else ()}
        for n in range(200)
    ]
    return {
        "order_id": "A1",
        "customer": {"id": 42, "tier": "gold", "since": dt.date(2019, 5, 17)},
        "items": items,
        "catalog": {f"SKU-{n:04d}": f"Product number {n}, a fine thing" for n in range(2000)},
        "fx_rate": Decimal("1.0842") if revision == 0 else Decimal("1.0851"),
    }


@click.command()
@store_option
def demo(store_path: str | None) -> None:
    """Show what the store does, step by step, on an example order.

    Uses a temporary store that is removed afterwards, unless --store names one
    to keep for exploring with `pinrun cat`, `stats` and `fsck`.
    """
    target = chosen_store(store_path)
    if target:
        _tour(Path(target))
        return
    with tempfile.TemporaryDirectory(prefix="pinrun-demo-") as tmp:
        _tour(Path(tmp) / ".pinrun")


def _tour(folder: Path) -> None:
    from pinrun.artifacts.bundle import export_bundle, import_bundle
    from pinrun.artifacts.maintenance import fsck, stats
    from pinrun.artifacts.store import Store

    out = console()
    with Store.open(folder, create=True) as store:
        out.print(f"[bold]1. A store[/bold] at {store.path}")
        first = _example_state(0)
        with store.batch() as batch:
            root1 = batch.put_snapshot(first)
            batch.set_ref("demo/before", root1)
        out.print(f"[bold]2. Snapshot[/bold] of an order with {len(first['items'])} items: "
                  f"{batch.new_objects} objects, root {root1.short}")
        second = _example_state(1)
        with store.batch() as batch:
            root2 = batch.put_snapshot(second)
            batch.set_ref("demo/after", root2)
        out.print(f"[bold]3. One key changed[/bold] (fx_rate): only {batch.new_objects} new "
                  f"objects (the new value and the new tree), root {root2.short}")
        back = store.get_snapshot(root2)
        assert back == second, "the store returned a different state"  # demo self-check
        out.print("[bold]4. Read back[/bold]: every object re-hashed on read; the state "
                  "equals the original, types included (Decimal, date, tuple)")
        scratch = Path(tempfile.mkdtemp(prefix="pinrun-demo-bundle-"))
        bundle = scratch / "demo.pinrun"
        exported = export_bundle(store, ["demo/after"], bundle)
        out.print(f"[bold]5. Export[/bold] demo/after to {bundle.name}: {exported.objects} "
                  f"objects, {human_bytes(exported.bytes)}")
        figures = stats(store)
        out.print(f"[bold]6. Stats[/bold]: {figures.total_objects} objects, "
                  f"{human_bytes(figures.total_stored_bytes)} stored for "
                  f"{human_bytes(figures.offered_raw_bytes)} written: dedup "
                  f"{figures.dedup_ratio:.2f}x, compression {figures.compression_ratio:.2f}x")
    with Store.open(scratch / "imported", create=True) as other:
        imported = import_bundle(other, bundle)
        report = fsck(other)
        out.print(f"[bold]7. Import[/bold] into a fresh store: {imported.objects} objects "
                  f"verified; fsck: {'clean' if report.ok else report.problems}")
    shutil.rmtree(scratch, ignore_errors=True)
    out.print("\nNext: `pinrun init` in your project, then see `pinrun --help`.")
