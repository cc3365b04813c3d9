"""The benchmark's order flow: five plain functions, and the same flow in each framework.

The five step functions below are plain Python: each takes the state keys it
reads as keyword arguments and returns a dict of the keys it writes; the
state of a run stays under 1 KiB (an order id, three line items, a region, four
numbers and a one-line receipt). Every implementation runs these *same*
functions in the same order on the same inputs and ends with the same state:

* ``direct``: a loop that calls them on a dict (no framework at all);
* ``pinrun``: each function wrapped by ``pinrun.step``; the flows are
  ``PINRUN_FLOWS`` (module level, so a recorded run names its entry point);
* ``chainweaver``: each function wrapped as a ChainWeaver ``Tool`` (the
  ``@tool`` decorator with an explicit pydantic ``output_schema``), the steps
  as ``FlowStep``\\ s whose ``input_mapping`` names the keys they read, run by
  ``FlowExecutor`` with no checkpointer, cache or trace recorder (nothing is
  persisted); the long flow sets ``on_context_collision="overwrite"`` like
  pinrun's ``on_collision="overwrite"`` (the default, ``"warn"``, logs a
  warning for every overwritten key);
* ``dbos``: each function wrapped by ``DBOS.step()`` and called in order from
  one ``DBOS.workflow()``, on DBOS's SQLite system database: DBOS checkpoints
  the workflow's inputs and status and every step's output, each in its own
  transaction, before the workflow goes on.

The long flow repeats the five steps ``LONG_REPEATS`` times (step names made
unique with a suffix) so that per-run costs are spread over 50 steps while
the state stays as small as the short flow's.

ChainWeaver and DBOS are optional: they are imported only by the functions
that build their runners, and ``test_bench_recording.py`` skips their
comparisons when they are not installed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pinrun

__all__ = [
    "FUNCTIONS",
    "LONG_REPEATS",
    "PINRUN_FLOWS",
    "Runner",
    "StepFunction",
    "chainweaver_runner",
    "dbos_runner",
    "direct_runner",
    "floor_runner",
    "flow_functions",
    "make_inputs",
]

StepFunction = Callable[..., dict[str, Any]]
#: Runs the flow once on one run's inputs and returns the final state.
Runner = Callable[[dict[str, Any]], dict[str, Any]]

#: The long flow is the five steps repeated this many times (50 steps).
LONG_REPEATS: Final = 10

# ------------------------------------------------------------- the step functions
# Module level, reading only their arguments and constants, so that pinrun can
# fingerprint them.


def load(order_id: str) -> dict[str, Any]:
    """Three line items and a region, derived from the order id."""
    seed = sum(order_id.encode())
    return {
        "items": [
            {"sku": f"SKU-{(seed * 7 + n) % 10_000:04d}", "qty": 1 + (seed + n) % 5,
             "unit_price": round(1.5 + ((seed * 13 + n * 31) % 2_000) / 10, 2)}
            for n in range(3)
        ],
        "region": "EU" if seed % 2 else "US",
    }


def price(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The subtotal of the line items."""
    return {"subtotal": round(sum(i["qty"] * i["unit_price"] for i in items), 2)}


def tax(subtotal: float, region: str) -> dict[str, Any]:
    """Sales tax for the region."""
    return {"tax": round(subtotal * (0.2 if region == "EU" else 0.07), 2)}


def total(subtotal: float, tax: float) -> dict[str, Any]:
    """The amount due."""
    return {"total": round(subtotal + tax, 2)}


def receipt(order_id: str, total: float, region: str) -> dict[str, Any]:
    """A one-line receipt."""
    currency = "EUR" if region == "EU" else "USD"
    return {"receipt": f"order {order_id}: {total:.2f} {currency}"}


#: The five steps, in order.
FUNCTIONS: Final[tuple[StepFunction, ...]] = (load, price, tax, total, receipt)

#: Function -> the state keys it reads (its parameters, as pinrun reads them).
READS: Final[dict[StepFunction, tuple[str, ...]]] = {
    func: tuple(inspect.signature(func).parameters) for func in FUNCTIONS
}


def flow_functions(repeats: int) -> list[tuple[str, StepFunction]]:
    """(unique step name, function) for the five steps repeated ``repeats`` times."""
    if repeats == 1:
        return [(func.__name__, func) for func in FUNCTIONS]
    return [(f"{func.__name__}_{r:02d}", func) for r in range(repeats) for func in FUNCTIONS]


def make_inputs(count: int, prefix: str = "A") -> list[dict[str, Any]]:
    """``count`` distinct run inputs (one order id each)."""
    return [{"order_id": f"{prefix}{n:06d}"} for n in range(count)]


# ----------------------------------------------------------------------- pinrun


def _pinrun_flow(repeats: int) -> pinrun.Flow:
    # The long flow overwrites each key once per repetition, on purpose.
    return pinrun.Flow(f"order-x{repeats}",
                       [pinrun.step(name=name)(func) for name, func in flow_functions(repeats)],
                       on_collision="overwrite" if repeats > 1 else "warn")


ORDER_FLOW: Final = _pinrun_flow(1)
LONG_ORDER_FLOW: Final = _pinrun_flow(LONG_REPEATS)
#: repeats -> the pinrun flow.
PINRUN_FLOWS: Final[dict[int, pinrun.Flow]] = {1: ORDER_FLOW, LONG_REPEATS: LONG_ORDER_FLOW}


# ------------------------------------------------------------------ direct loop


def direct_runner(repeats: int) -> Runner:
    """The flow as a plain loop: call each function on a dict, merge what it returns."""
    plan = [(func, READS[func]) for _, func in flow_functions(repeats)]

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        state = dict(inputs)
        for func, reads in plan:
            state.update(func(**{key: state[key] for key in reads}))
        return state

    return run


# ------------------------------------------------------------------ ChainWeaver


def chainweaver_runner(repeats: int) -> Runner:
    """The flow on ChainWeaver's ``FlowExecutor`` (in memory, nothing persisted).

    Each function becomes a ``Tool`` through ``chainweaver.tool`` (input schema
    built from its annotations, output schema given), each step a ``FlowStep``
    whose ``input_mapping`` names the context keys it reads. ``execute_flow``
    validates every step's inputs and outputs with pydantic, merges the outputs
    into its context and keeps a ``StepRecord`` per step in the returned
    ``ExecutionResult``, whose ``final_output`` is the final context.
    """
    from chainweaver import Flow, FlowExecutor, FlowRegistry, FlowStep, tool
    from pydantic import BaseModel

    class Items(BaseModel):
        items: list[dict[str, Any]]
        region: str

    class Subtotal(BaseModel):
        subtotal: float

    class Tax(BaseModel):
        tax: float

    class Total(BaseModel):
        total: float

    class Receipt(BaseModel):
        receipt: str

    outputs: dict[StepFunction, type[BaseModel]] = {
        load: Items, price: Subtotal, tax: Tax, total: Total, receipt: Receipt}
    registry = FlowRegistry()
    executor = FlowExecutor(registry=registry)
    for func in FUNCTIONS:
        executor.register_tool(tool(name=func.__name__, description=func.__doc__ or "",
                                    output_schema=outputs[func])(func))
    name = f"order-x{repeats}"
    registry.register_flow(Flow(
        name=name, description="the benchmark order flow",
        steps=[FlowStep(tool_name=func.__name__, input_mapping={key: key for key in READS[func]})
               for _, func in flow_functions(repeats)],
        # As pinrun's long flow: overwriting a key is expected, not worth a warning.
        on_context_collision="overwrite" if repeats > 1 else "warn",
    ))

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        result = executor.execute_flow(name, inputs)
        if not result.success or result.final_output is None:
            failed = [r for r in result.execution_log if not r.success]
            raise RuntimeError(f"chainweaver run failed: {failed[:1]}")
        return dict(result.final_output)

    return run


# ------------------------------------------------------------------------ DBOS

#: repeats -> the decorated DBOS workflow; function -> its DBOS step.
_DBOS_WORKFLOWS: dict[int, Runner] = {}
_DBOS_STEPS: dict[StepFunction, StepFunction] = {}


def _dbos_workflow(repeats: int) -> Runner:
    """The DBOS workflow that runs the flow, decorated once per process.

    DBOS keeps decorated functions in a process-wide registry, by name, that
    outlives ``DBOS.destroy()``: the steps and workflows are decorated once
    and every later launch finds them there.
    """
    if repeats in _DBOS_WORKFLOWS:
        return _DBOS_WORKFLOWS[repeats]
    from dbos import DBOS

    for func in FUNCTIONS:
        if func not in _DBOS_STEPS:
            _DBOS_STEPS[func] = DBOS.step(name=f"bench.{func.__name__}")(func)
    plan = [(_DBOS_STEPS[func], READS[func]) for _, func in flow_functions(repeats)]

    def order_flow(inputs: dict[str, Any]) -> dict[str, Any]:
        state = dict(inputs)
        for dbos_step, reads in plan:
            state.update(dbos_step(**{key: state[key] for key in reads}))
        return state

    workflow: Callable[[dict[str, Any]], dict[str, Any]] = DBOS.workflow(
        name=f"bench.order-x{repeats}")(order_flow)
    _DBOS_WORKFLOWS[repeats] = workflow
    return workflow


@contextmanager
def floor_runner(folder: Path, repeats: int) -> Iterator[Runner]:
    """The least a content-addressed recorder must do, written here with no pinrun.

    Per step: the outputs encoded (orjson, sorted keys) and hashed (BLAKE3), and
    the state's tree (key -> digest of its value's encoding) encoded and hashed;
    per run: the inputs, a run record naming every digest, all of it put in one
    LMDB write transaction, unsynced (as a ``durable=False`` store), under a ref.
    No fingerprints, guards, events, timing or checks: a physical reference for
    what recording costs, not a recorder anyone should run.
    """
    import blake3
    import lmdb
    import orjson

    plan = [(func, READS[func]) for _, func in flow_functions(repeats)]
    env = lmdb.open(str(folder / "floor"), map_size=1 << 30, max_dbs=2, sync=False,
                    metasync=False)
    objects, refs = env.open_db(b"objects"), env.open_db(b"refs")

    def put(pending: list[tuple[bytes, bytes]], value: Any) -> bytes:
        encoded = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        digest = blake3.blake3(encoded).digest()
        pending.append((digest, encoded))
        return digest

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        state = dict(inputs)
        pending: list[tuple[bytes, bytes]] = []
        digests = {key: put(pending, value) for key, value in state.items()}
        steps = [put(pending, inputs)]
        for func, reads in plan:
            outputs = func(**{key: state[key] for key in reads})
            state.update(outputs)
            steps.append(put(pending, outputs))
            digests.update((key, put(pending, value)) for key, value in outputs.items())
            steps.append(put(pending, {key: digest.hex() for key, digest in digests.items()}))
        record = put(pending, {"order": inputs["order_id"], "steps": [d.hex() for d in steps]})
        with env.begin(write=True) as txn:
            for digest, encoded in pending:
                txn.put(digest, encoded, db=objects)
            txn.put(f"runs/{inputs['order_id']}".encode(), record, db=refs)
        return state

    try:
        yield run
    finally:
        env.close()


@contextmanager
def dbos_runner(folder: Path, repeats: int) -> Iterator[Runner]:
    """DBOS launched on a new SQLite system database in ``folder``, destroyed on exit.

    DBOS is a process-wide singleton: ``DBOS(config=...)``, then
    ``DBOS.launch()`` (which creates and migrates the database and starts
    DBOS's background threads), and ``DBOS.destroy()`` at the end. Calling the
    workflow function runs it to completion in the calling thread. DBOS opens
    SQLite with its defaults: rollback journal, ``synchronous=FULL``.
    """
    from dbos import DBOS, DBOSConfig

    workflow = _dbos_workflow(repeats)
    config: DBOSConfig = {
        "name": "pinrun-bench",
        "system_database_url": f"sqlite:///{folder / 'dbos.sqlite'}",
        "log_level": "ERROR",
        "application_version": "pinrun-bench",
    }
    DBOS(config=config)
    try:
        DBOS.launch()
        yield workflow
    finally:
        DBOS.destroy()
