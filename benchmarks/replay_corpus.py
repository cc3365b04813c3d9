"""Projects and recorded corpora for the replay benchmarks, written to a temporary folder.

Replay imports a run's flow by module name and judges every project module
that is loaded (guards watch them, and compare their module-level values
before and after each step), so the benchmarks give replay a project of its
own, outside the repository, instead of the repository's ``benchmarks``
package (whose test modules a pytest session also loads):

* :func:`write_order_project` writes ``pinrun_bench_orders.py``: the five step
  functions of :mod:`benchmarks.flow_baselines`, copied verbatim (their
  source, through ``inspect.getsource``), and the 5-step flow ``FLOW``;
* :func:`record_corpus` records runs of that flow into a new store in the
  project, ``durability="none"`` into a store opened ``durable=False``;
* :func:`write_import_project` writes five modules of ~200 lines each (four
  helper modules and the module defining a 5-step flow whose steps call into
  all four), for the pinned-import benchmark.

The generated code is deterministic, so every run imports the same text.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

import pinrun
from benchmarks import flow_baselines
from pinrun.artifacts import trees
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.store import Store

__all__ = [
    "IMPORT_ENTRY_MODULE",
    "IMPORT_MODULES",
    "ORDER_MODULE",
    "Corpus",
    "MinimalReplayer",
    "on_sys_path",
    "record_corpus",
    "write_import_project",
    "write_order_project",
]

#: The module holding the order flow (as ``FLOW``), and its entry point.
ORDER_MODULE: Final = "pinrun_bench_orders"
#: The pinned-import project: four helper modules, then the flow's module.
IMPORT_HELPERS: Final = tuple(f"pinrun_bench_imp_helpers{n}" for n in range(1, 5))
IMPORT_ENTRY_MODULE: Final = "pinrun_bench_imp_flow"
IMPORT_MODULES: Final = (*IMPORT_HELPERS, IMPORT_ENTRY_MODULE)
#: Lines per generated module (about).
IMPORT_MODULE_LINES: Final = 200


@dataclass(frozen=True)
class Corpus:
    """Recorded runs of the order flow: the project, its store and the runs' ids."""

    project: Path
    store_path: Path
    run_ids: tuple[str, ...]
    #: The order ids the runs were recorded with, in ``run_ids`` order.
    inputs: tuple[dict[str, str], ...]


# ------------------------------------------------------------------ the order flow


def write_order_project(folder: Path) -> Path:
    """Write the order flow's module into ``folder`` (made if needed); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    functions = "\n\n".join(inspect.getsource(func) for func in flow_baselines.FUNCTIONS)
    names = ", ".join(func.__name__ for func in flow_baselines.FUNCTIONS)
    text = (
        '"""The benchmark order flow: the five functions of benchmarks/flow_baselines.py."""\n'
        "\n"
        "from __future__ import annotations\n"
        "\n"
        "from typing import Any\n"
        "\n"
        "import pinrun\n"
        "\n\n"
        f"{functions}\n\n"
        f'FLOW = pinrun.Flow("order", [pinrun.step(name=func.__name__)(func)\n'
        f"                             for func in ({names})])\n"
    )
    (folder / f"{ORDER_MODULE}.py").write_text(text)
    return folder


@contextmanager
def on_sys_path(folder: Path, modules: tuple[str, ...]) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the block; ``modules`` are forgotten after it."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)
        for name in modules:
            sys.modules.pop(name, None)


def order_flow() -> pinrun.Flow:
    """The order flow, imported from the project (which must be on ``sys.path``)."""
    import importlib

    flow = importlib.import_module(ORDER_MODULE).FLOW
    assert isinstance(flow, pinrun.Flow)
    return flow


def record_corpus(project: Path, name: str, runs: int) -> Corpus:
    """Record ``runs`` runs of the order flow into a new store ``project/stores/name``.

    The project must be on ``sys.path``. The store is opened ``durable=False``
    and every run recorded with ``durability="none"``, as the issue asks.
    """
    flow = order_flow()
    store_path = project / "stores" / name
    inputs = flow_baselines.make_inputs(runs)
    with pinrun.open_store(store_path, create=True, durable=False) as store:
        ids = [pinrun.record(flow, item, store=store, durability="none",
                             project_root=project).id for item in inputs]
    if len(set(ids)) != runs:
        raise RuntimeError(f"recorded {runs} runs but got {len(set(ids))} distinct ids")
    return Corpus(project, store_path, tuple(ids), tuple(inputs))


# ------------------------------------------------------------ the minimal replayer


class _Digests:
    """An object sink that only hashes, as a replay does (nothing is written)."""

    def __init__(self) -> None:
        self.digests: list[Digest] = []

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        found = digest if digest is not None else compute_digest(kind, payload)
        self.digests.append(found)
        return found


def _digest(tagged: dict[str, str]) -> Digest:
    return Digest.from_hex(tagged["$digest"])


class MinimalReplayer:
    """The physical reference of the worker-CPU benchmark: a replay of an order run
    reduced to its reads, its execution and its hashing, with none of pinrun's checks.

    For each run: the run record is read (its ref, the object, JSON-decoded); for
    each step, its recorded inputs and events are read, the step function
    (``flow_baselines``, called directly) runs on the inputs, its outputs are
    encoded and hashed as a snapshot and compared with the recorded digest, and
    the recorded output objects are read back (each decompressed and re-hashed,
    as pinrun's replay does before a match counts).
    """

    def __init__(self, store_path: str | Path) -> None:
        self.store = Store.open(store_path)
        self.functions = {func.__name__: (func, tuple(inspect.signature(func).parameters))
                          for func in flow_baselines.FUNCTIONS}

    def replay(self, run_id: str) -> bool:
        """Whether every step of the run reproduced its recorded outputs."""
        store = self.store
        _, payload = store.load(store.ref(f"runs/{run_id}"))
        record: dict[str, Any] = orjson.loads(payload)
        same = True
        for step in record["steps"]:
            func, names = self.functions[step["name"]]
            inputs = store.get_snapshot(_digest(step["inputs"]))
            store.get_value(_digest(step["events"]))
            outputs = func(**{name: inputs[name] for name in names})
            sink = _Digests()
            digest = trees.store_snapshot(sink, outputs)
            same = same and digest == _digest(step["outputs"])
            store.load_many(sink.digests)
        return same


# ------------------------------------------------------------ the import project


def _helper_module(index: int) -> str:
    """About ``IMPORT_MODULE_LINES`` lines: a table, a dataclass and small functions."""
    lines = [
        f'"""Pricing helpers, part {index} (generated for the pinned-import benchmark)."""',
        "",
        "from __future__ import annotations",
        "",
        "import math",
        "from dataclasses import dataclass",
        "",
        f"RATES = {{{', '.join(f'{chr(97 + k)!r}: {0.5 + k * index / 10}' for k in range(8))}}}",
        "",
        "",
        "@dataclass(frozen=True)",
        "class Rule:",
        '    """A named weight."""',
        "",
        "    name: str",
        "    weight: float",
        "",
        "    def apply(self, value: float) -> float:",
        '        """The weighted value."""',
        "        return round(value * self.weight, 4)",
        "",
    ]
    k = 0
    while len(lines) < IMPORT_MODULE_LINES - 12:
        lines += [
            "",
            f"def helper_{k}(value: float, count: int) -> float:",
            f'    """Rule {k} of part {index}: a small loop and a branch."""',
            "    total = 0.0",
            "    for n in range(count):",
            f"        total += math.sqrt(abs(value) + n) * {k + 1}",
            f"    if total > {(k + 1) * 100}:",
            f"        total = total / {k + 2}",
            f"    return round(total * RATES[{chr(97 + k % 8)!r}], 4)",
            "",
        ]
        k += 1
    return "\n".join(lines) + "\n"


def _flow_module() -> str:
    """Five steps, each calling into one helper module (the fifth into all four)."""
    imports = "\n".join(f"import {name}" for name in IMPORT_HELPERS)
    h1, h2, h3, h4 = IMPORT_HELPERS
    head = f'''"""A 5-step flow over four helper modules (generated for a benchmark)."""

from __future__ import annotations

from typing import Any

import pinrun

{imports}


def first(order_id: str) -> dict[str, Any]:
    """A value from the order id."""
    return {{"a": {h1}.helper_0(float(len(order_id)), 4)}}


def second(a: float) -> dict[str, Any]:
    """Part two."""
    return {{"b": {h2}.helper_1(a, 3)}}


def third(b: float) -> dict[str, Any]:
    """Part three."""
    return {{"c": {h3}.helper_2(b, 3)}}


def fourth(c: float) -> dict[str, Any]:
    """Part four."""
    return {{"d": {h4}.Rule("d", 1.5).apply(c)}}


def fifth(a: float, b: float, c: float, d: float) -> dict[str, Any]:
    """All four parts."""
    return {{"total": round(a + b + c + d + {h1}.RATES["a"] + {h4}.helper_3(d, 2), 4)}}
'''
    lines = head.splitlines()
    k = 0
    while len(lines) < IMPORT_MODULE_LINES - 6:
        lines += [
            "",
            "",
            f"def unused_{k}(values: list[float]) -> float:",
            f'    """Not a step: code a real flow module carries along ({k})."""',
            f"    return round(sum(v * {k + 1} for v in values) / max(len(values), 1), 4)",
        ]
        k += 1
    lines += [
        "",
        "",
        'FLOW = pinrun.Flow("imports", [pinrun.step()(func)',
        "                               for func in (first, second, third, fourth, fifth)])",
    ]
    return "\n".join(lines) + "\n"


def write_import_project(folder: Path) -> dict[str, int]:
    """Write the five modules into ``folder`` (made if needed); returns module -> lines."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = {name: _helper_module(n) for n, name in enumerate(IMPORT_HELPERS, 1)}
    texts[IMPORT_ENTRY_MODULE] = _flow_module()
    for name, text in texts.items():
        (folder / f"{name}.py").write_text(text)
    return {name: text.count("\n") for name, text in texts.items()}
