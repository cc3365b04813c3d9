"""A production machine that records runs, and empty machines that pull them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from tests.remote.conftest import ok, pinrun

FLOW = '''
    import logging

    import pinrun

    log = logging.getLogger(__name__)


    @pinrun.step
    def load(order_id: str) -> dict:
        log.info("loading %s", order_id)
        if order_id == "BAD":
            raise KeyError(order_id)
        return {"items": [{"sku": order_id + "-x", "qty": 2, "price": 3.5}]}


    @pinrun.step
    def price(items: list, ctx: pinrun.Context) -> dict:
        rate = ctx.effect("fx", lambda: 1.25)
        return {"total": sum(i["qty"] * i["price"] for i in items) * rate}


    flow = pinrun.Flow("orders", [load, price])
'''


def production(root: Path, runs: int) -> tuple[Path, list[str]]:
    """A project folder with a package ``shop``, a store, and ``runs`` recorded runs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "shop").mkdir(exist_ok=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "orders.py").write_text(textwrap.dedent(FLOW))
    ok(pinrun(root, "init"))
    ids = [ok(pinrun(root, "run", "shop.orders:flow", "--set", f'order_id="A-{i}"')).strip()
           for i in range(runs)]
    return root, ids


def empty_machine(root: Path) -> Path:
    """A folder with a new store and none of the project's files."""
    root.mkdir(parents=True, exist_ok=True)
    ok(pinrun(root, "init"))
    return root


def as_json(result_text: str) -> Any:
    """The JSON a ``--json`` command printed."""
    return json.loads(result_text)
