"""Shared data generators, the scale knob and the end-of-run summary.

All data is deterministic (``random.Random(seed)``), so every run and every
implementation sees the same bytes. ``PINRUN_BENCH_SCALE`` (float, default
1.0) multiplies the object counts: ``PINRUN_BENCH_SCALE=0.05`` is a quick run.

The generators build realistic JSON: order-like records (nested dicts, lists
of line items, ids, timestamps, free text from a fixed vocabulary, floats),
about 1 KiB each; 64 KiB documents are batches of such records; the dedup
state is 100 tables of about 100 KB each, half of them dicts (which pinrun
stores as subtrees) and half plain lists of records.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import shutil
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from benchmarks._harness import RESULTS, TARGET_PREFIX

# ----------------------------------------------------------------- the scale knob


def _read_scale() -> float:
    raw = os.environ.get("PINRUN_BENCH_SCALE", "1.0")
    try:
        scale = float(raw)
    except ValueError:
        raise pytest.UsageError(f"PINRUN_BENCH_SCALE={raw!r} is not a number") from None
    if not scale > 0:
        raise pytest.UsageError(f"PINRUN_BENCH_SCALE={raw!r} must be positive")
    return scale


SCALE: Final = _read_scale()


def scaled(count: int, minimum: int = 1) -> int:
    """``count`` multiplied by ``PINRUN_BENCH_SCALE``, never below ``minimum``."""
    return max(minimum, round(count * SCALE))


#: Object counts of the ingest and read benchmarks (full scale: 100k and 10k).
SMALL_COUNT: Final = scaled(100_000)
LARGE_COUNT: Final = scaled(10_000)
SMALL_SIZE: Final = 1024
LARGE_SIZE: Final = 64 * 1024
#: Every implementation commits once per this many objects (so 10 commits for
#: the 100k small values and 1 for the 10k large ones at full scale).
BATCH_SIZE: Final = 10_000
#: Random reads per read benchmark (a fixed random order, capped at the object count).
READ_COUNT: Final = scaled(10_000)
#: Dedup: snapshots in the series, keys per state, bytes per value.
DEDUP_SNAPSHOTS: Final = scaled(100, minimum=2)
DEDUP_KEYS: Final = 100
DEDUP_VALUE_SIZE: Final = 100_000

# ------------------------------------------------------------------ generators

_STATUSES: Final = ("new", "paid", "packed", "shipped", "delivered", "returned", "cancelled")
_CURRENCIES: Final = ("EUR", "USD", "GBP", "JPY", "CHF")


def _vocabulary() -> list[str]:
    rng = random.Random(20240601)
    return ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 11)))
            for _ in range(3000)]


_WORDS: Final = _vocabulary()


class JsonGen:
    """Deterministic realistic JSON documents (plain dict/list/str/int/float/bool/None)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = seed * 10_000_000

    def text(self, words: int) -> str:
        """``words`` words of free text from a fixed vocabulary."""
        return " ".join(self.rng.choices(_WORDS, k=words))

    def timestamp(self) -> str:
        """An ISO-8601 UTC timestamp in 2024."""
        r = self.rng
        return (f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
                f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z")

    def record(self) -> dict[str, Any]:
        """An order-like record of about 1 KiB of JSON (500 B to 1.7 KiB)."""
        r = self.rng
        self.serial += 1
        items: list[dict[str, Any]] = [
            {
                "sku": f"SKU-{r.randrange(100_000):05d}",
                "name": self.text(r.randint(2, 5)),
                "qty": r.randint(1, 20),
                "unit_price": round(r.uniform(0.5, 500.0), 2),
                "discount_pct": r.choice((0, 0, 0, 5, 10, 15)),
            }
            for _ in range(r.randint(1, 6))
        ]
        return {
            "id": self.serial,
            "uuid": f"{r.getrandbits(128):032x}",
            "created_at": self.timestamp(),
            "status": r.choice(_STATUSES),
            "currency": r.choice(_CURRENCIES),
            "customer": {
                "name": self.text(2).title(),
                "email": f"{r.choice(_WORDS)}.{r.choice(_WORDS)}@{r.choice(_WORDS)}.example",
                "address": {
                    "street": f"{r.randint(1, 400)} {self.text(2).title()}",
                    "city": r.choice(_WORDS[:300]).title(),
                    "zip": f"{r.randrange(100_000):05d}",
                },
                "vip": r.random() < 0.1,
                "tags": r.sample(_WORDS[:100], r.randint(0, 4)),
            },
            "items": items,
            "total": round(sum(i["unit_price"] * i["qty"] for i in items), 2),
            "risk_score": r.random(),
            "notes": self.text(r.randint(8, 60)) if r.random() < 0.8 else None,
            "metrics": [round(r.gauss(0.0, 1.0), 6) for _ in range(r.randint(4, 16))],
        }

    def records(self, target_bytes: int) -> list[dict[str, Any]]:
        """Records whose JSON adds up to about ``target_bytes``."""
        out: list[dict[str, Any]] = []
        size = 2
        while size < target_bytes:
            rec = self.record()
            size += len(orjson.dumps(rec)) + 1
            out.append(rec)
        return out

    def document(self, target_bytes: int) -> dict[str, Any]:
        """A batch document of about ``target_bytes``: a header, records and a summary."""
        r = self.rng
        self.serial += 1
        records = self.records(target_bytes - 320)
        return {
            "batch_id": self.serial,
            "source": {"system": r.choice(_WORDS[:20]), "region": r.choice(_WORDS[:8]),
                       "exported_at": self.timestamp()},
            "records": records,
            "summary": {
                "count": len(records),
                "by_status": {s: sum(1 for x in records if x["status"] == s) for s in _STATUSES},
                "revenue": round(sum(x["total"] for x in records), 2),
            },
        }

    def table(self, name: str, as_dict: bool, target_bytes: int) -> Any:
        """A ~``target_bytes`` state value: a dict with schema and rows, or a list of rows."""
        if not as_dict:
            return self.records(target_bytes)
        rows = self.records(target_bytes - 400)
        return {
            "name": name,
            "schema": {"columns": sorted(rows[0]), "primary_key": "id", "version": 3},
            "rows": rows,
            "stats": {"rows": len(rows), "revenue": round(sum(x["total"] for x in rows), 2),
                      "updated_at": self.timestamp()},
        }


def _freeze_heap() -> None:
    # The data sets hold millions of long-lived objects. Moving them out of the
    # collector's reach keeps gen-2 collections (triggered by whatever the code
    # under test allocates) from walking them during the timed rounds.
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class DedupSeries:
    """A state and the successive states that each change one key."""

    states: list[dict[str, Any]]
    #: ``changed[i]`` is the new value that made ``states[i + 1]`` from ``states[i]``.
    changed: list[Any]
    changed_keys: list[str]


# -------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def small_values() -> list[dict[str, Any]]:
    """``SMALL_COUNT`` distinct ~1 KiB JSON records."""
    gen = JsonGen(seed=1)
    values = [gen.record() for _ in range(SMALL_COUNT)]
    _freeze_heap()
    return values


@pytest.fixture(scope="session")
def large_values() -> list[dict[str, Any]]:
    """``LARGE_COUNT`` distinct ~64 KiB JSON documents."""
    gen = JsonGen(seed=2)
    values = [gen.document(LARGE_SIZE) for _ in range(LARGE_COUNT)]
    _freeze_heap()
    return values


@pytest.fixture(scope="session")
def dedup_series() -> DedupSeries:
    """``DEDUP_SNAPSHOTS`` states of ``DEDUP_KEYS`` x ~100 KB, each one key off the last."""
    gen = JsonGen(seed=3)
    keys = [f"table_{i:03d}" for i in range(DEDUP_KEYS)]
    shapes = {key: i % 2 == 0 for i, key in enumerate(keys)}
    state = {key: gen.table(key, shapes[key], DEDUP_VALUE_SIZE) for key in keys}
    states = [state]
    changed: list[Any] = []
    changed_keys: list[str] = []
    for _ in range(DEDUP_SNAPSHOTS - 1):
        key = gen.rng.choice(keys)
        value = gen.table(key, shapes[key], DEDUP_VALUE_SIZE)
        state = {**state, key: value}
        states.append(state)
        changed.append(value)
        changed_keys.append(key)
    _freeze_heap()
    return DedupSeries(states, changed, changed_keys)


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Callable[[], Path]:
    """A factory of new empty folders under this test's ``tmp_path`` (one per round)."""
    counter = itertools.count()

    def make() -> Path:
        path = tmp_path / f"round-{next(counter)}"
        path.mkdir()
        return path

    return make


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for stores that live the whole session (removed at the end)."""
    path = tmp_path_factory.mktemp("stores")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------- summary


def _fmt_rate(rate: float) -> str:
    return f"{rate:,.1f}" if rate < 100 else f"{rate:,.0f}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile pinrun's modules to bytecode first, as ``pip install`` does for an installed
    package: the interpreters a benchmark starts (verify's workers, CLI commands) then load
    pinrun as a user's would, not compiled from source at every start (an editable
    install under ``PYTHONDONTWRITEBYTECODE=1`` never writes its caches)."""
    import compileall

    import pinrun

    compileall.compile_dir(Path(pinrun.__file__).parent, quiet=2)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every group's throughput and pinrun's ratios to its baselines."""
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", f"pinrun benchmark summary (PINRUN_BENCH_SCALE={SCALE:g})")
    for group, results in RESULTS.items():
        write("")
        write(f"[{group}]")
        write(f"  {'implementation':<22}{'median s':>11}{'min s':>11}{'per second':>15}  unit")
        for res in results.values():
            write(f"  {res.name:<22}{res.median_s:>11.4f}{res.min_s:>11.4f}"
                  f"{_fmt_rate(res.rate):>15}  {res.unit} ({res.count} per round, "
                  f"{res.rounds} rounds)")
        baselines = [r for r in results.values() if not r.name.startswith(TARGET_PREFIX)]
        for res in results.values():
            if res.name.startswith(TARGET_PREFIX):
                for base in baselines:
                    write(f"  ratio {res.name} / {base.name}: {res.rate / base.rate:.3f}x "
                          "throughput")
        for res in results.values():
            for key, value in res.notes.items():
                write(f"  {res.name}.{key} = {value}")
