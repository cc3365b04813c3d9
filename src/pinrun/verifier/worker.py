"""The verifier's worker entry: replay runs in this process, for a pool or a parent.

``pinrun verify`` starts a pool of fresh interpreters under each recorded
hash seed (:func:`pinrun.world.processes.worker_pool`) with :func:`start` as their
initializer and :func:`replay_chunk` as their task; ``pinrun.replay`` under
another seed, perturbations and ``pytest --pinrun`` call :func:`replay_request`
in one fresh interpreter (:func:`replay_in_child`). Either way the worker
calls the engine's replay and hands back a typed :class:`RunResult`, which
pickles: no command line, no JSON read back.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from pinrun.artifacts.mapped_pages import PageBudget
from pinrun.artifacts.store import Store
from pinrun.data_classes import data_class
from pinrun.engine.records import load_run, recorded_hash_seed
from pinrun.errors import PinrunError, StoreError
from pinrun.flows.entries import import_entry
from pinrun.safe_text import printable
from pinrun.verifier import replayer
from pinrun.verifier.moved import check_same_steps
from pinrun.verifier.replayer import CodeSource
from pinrun.verifier.report import ReplayReport, Verdict
from pinrun.world.environment_kept import environment_put_back
from pinrun.world.guards import GuardMode, keep_stand_ins
from pinrun.world.processes import call_in_child, load_answer
from pinrun.world.refusal import refuse_from_now_on
from pinrun.world.stopwatch import stopwatch

__all__ = ["DIED", "OBJECTS", "VALUES", "ReplayOptions", "ReplayRequest", "ResultForm", "RunResult",
           "chunk_results", "chunk_values", "replay_chunk", "replay_in_child",
           "replay_in_this_process", "replay_request", "start"]

DIED = ("a worker process died while replaying it (killed, out of memory, or the code "
        "ended the process)")


@data_class(frozen=True)
class ReplayOptions:
    """How a worker replays each run it is given (the same for all of them)."""

    code: CodeSource = "pinned"
    guards: GuardMode = "warn"
    #: Let steps reach the network and start processes during the replay (only noted).
    allow_world: bool = False
    repeat: int = 1
    project_root: str | None = None
    #: Flow name -> ``MODULE:FLOW`` where that flow lives now (workdir code only).
    entries: tuple[tuple[str, str], ...] = ()
    #: Run pinned code of pulled runs that no trusted key signed.
    allow_unsigned: bool = False
    #: A reproduced run's report comes back without its steps: its caller reports only
    #: the run, its flow and its time (less to pickle here and to read there).
    brief: bool = False
    #: A pool's worker sends each result back as the JSON-ready data ``verify --json``
    #: writes (:meth:`RunResult.as_value`), made in the worker: the parent, which shares
    #: the cores with the workers, only parses it (:func:`chunk_values`).
    values: bool = False

    @classmethod
    def build(cls, *, code: CodeSource, guards: GuardMode, project_root: Path | None = None,
              entries: Mapping[str, str] | None = None, allow_world: bool = False,
              repeat: int = 1, allow_unsigned: bool = False,
              brief: bool = False, values: bool = False) -> ReplayOptions:
        """Options from the verifier's arguments (paths and mappings made plain data)."""
        return cls(code, guards, allow_world, repeat,
                   str(project_root) if project_root is not None else None,
                   tuple(sorted((entries or {}).items())), allow_unsigned, brief, values)


@data_class(frozen=True)
class RunResult:
    """One run's outcome in a worker: its report, or why there is none."""

    run_id: str
    report: ReplayReport | None = None
    #: Why the run could not be replayed (with no report).
    error: str = ""
    #: The error is the store's (damaged or missing objects): exit 3 material.
    store_error: bool = False
    #: That store error itself (it pickles), for a caller that raises it again.
    raised: StoreError | None = None
    #: How long the replay took, in seconds (0 when it was not replayed).
    seconds: float = 0.0
    #: Not replayed: the run recorded another hash seed than the one this worker was
    #: started under (the parent's seed pass only plans: see :func:`start`). The
    #: parent reads its seed again and replays it under that one; never reported.
    misrouted: bool = False

    @property
    def verdict(self) -> Verdict:
        """The report's verdict, or ``error``."""
        return self.report.verdict if self.report is not None else "error"

    def as_value(self) -> dict[str, Any]:
        """JSON-ready data, as ``pinrun verify --json`` writes each run."""
        if self.report is not None:
            return {**self.report.as_value(), "seconds": round(self.seconds, 6)}
        value: dict[str, Any] = {"run": self.run_id, "verdict": "error", "error": self.error,
                                 "seconds": round(self.seconds, 6)}
        if self.store_error:
            value["store_error"] = True
        if self.misrouted:
            value["misrouted"] = True
        return value


#: A seed check that accepts any seed (:func:`replay_in_this_process`).
_ANY_SEED: tuple[str | None, ...] = ()


def replay_in_this_process(store: Store, run_id: str, options: ReplayOptions,
                           hash_seed: tuple[str | None, ...] = _ANY_SEED) -> RunResult:
    """Replay one run here with the engine; a result is always returned, never raised.

    ``hash_seed`` is ``(seed,)`` when this process runs under ``seed`` for the runs that
    recorded it: a run that recorded another is not replayed, its result is marked
    ``misrouted``.
    """
    elapsed = stopwatch()
    try:
        replayer.check_replay_arguments(options.code, options.repeat, None)
        run = load_run(store, run_id)
        if hash_seed and recorded_hash_seed(store, run) != hash_seed[0]:
            return RunResult(run_id, misrouted=True)
        flow = None
        entry = dict(options.entries).get(run.flow) if options.entries else None
        if entry is not None:  # the user's own entry: imported as given
            flow = import_entry(entry)
            check_same_steps(store, run, flow, f"--entry {entry}")
            replayer.check_replay_arguments(options.code, options.repeat, flow)
        report = replayer.replay_loaded(
            run, store=store, code=options.code, guards=options.guards,
            project_root=Path(options.project_root) if options.project_root else None,
            flow=flow, repeat=options.repeat, debug_step=None,
            allow_world=options.allow_world, allow_unsigned=options.allow_unsigned)
    except StoreError as exc:
        return RunResult(run_id, error=str(exc), store_error=True, raised=exc,
                         seconds=elapsed())
    except PinrunError as exc:
        return RunResult(run_id, error=str(exc), seconds=elapsed())
    if options.brief and report.verdict == "reproduced":
        report = ReplayReport(report.run_id, report.flow, report.code, "reproduced",
                              repeat=report.repeat, repetition=report.repetition,
                              nothing_pinned=report.nothing_pinned)
    return RunResult(run_id, report, seconds=elapsed())


# ------------------------------------------------------------ a pool's worker

#: This worker process's store and options, set once by :func:`start` (a pool's
#: initializer): owned by the worker process, which lives for one pool.
_WORKER: dict[str, Any] = {}


def start(store_path: str, options: ReplayOptions,
          hash_seed: tuple[str | None, ...] = _ANY_SEED) -> None:
    """Pool initializer: open the store once for all the runs this worker replays.

    ``hash_seed`` is ``(seed,)`` for a worker started under the hash seed ``seed``
    (``None``: the runs that recorded none): each run is checked to have recorded it
    before it replays, since the parent grouped the runs by a scan of their records
    that a crafted record could mislead (:mod:`pinrun.verifier.seed_pass`). A run
    that recorded another seed comes back ``misrouted``, not replayed.
    """
    _WORKER["store"] = Store.open(store_path)
    _WORKER["hash_seed"] = hash_seed
    # Lives as long as this worker, whose exit closes its descriptor.
    _WORKER["pages"] = PageBudget(_WORKER["store"].path, _PAGE_BUDGET)
    _WORKER["options"] = options
    if not options.allow_world:  # a worker only replays: nothing it runs reaches the world
        refuse_from_now_on()
    if options.guards != "off":  # run after run: the stand-ins go up once, for good
        keep_stand_ins()


#: The store's pages a worker keeps mapped before it gives them back.
_PAGE_BUDGET = 2 << 20


def replay_chunk(run_ids: list[str]) -> bytes:
    """Replay a few runs in this worker, one after the other, reusing loaded modules.

    The results go back pickled by hand, for :func:`chunk_results` to read as data (a
    result may carry an exception the project's code made); with the ``values`` option,
    as their JSON-ready values in JSON, for :func:`chunk_values`.
    """
    store: Store = _WORKER["store"]
    options: ReplayOptions = _WORKER["options"]
    pages: PageBudget = _WORKER["pages"]
    hash_seed: tuple[str | None, ...] = _WORKER["hash_seed"]
    results = []
    for run_id in run_ids:
        # What one run's steps set in the environment never reaches the next run's import.
        with environment_put_back():
            results.append(replay_in_this_process(store, run_id, options, hash_seed))
        # A replay reads pages no later one needs (runs are spread over the store, and
        # the kernel maps a page's neighbours with it): given back once they add up to
        # the budget, the worker's size stays flat however large the store.
        pages.spend()
    if options.values:
        return _values_answer(results)
    return pickle.dumps(results)


def _values_answer(results: list[RunResult]) -> bytes:
    """The results' values as JSON (a list), when JSON carries them exactly; else the
    results pickled, for the parent to make into values itself."""
    values = [result.as_value() for result in results]
    try:
        data = orjson.dumps(values)
    except orjson.JSONEncodeError:  # a key that is not a string, an int past 64 bits
        return pickle.dumps(results)
    # JSON would make a tuple a list and NaN null: read back, the values must be the same.
    return data if orjson.loads(data) == values else pickle.dumps(results)


def chunk_results(data: bytes, run_ids: list[str]) -> list[RunResult]:
    """The results of :func:`replay_chunk` for ``run_ids``, read with the answer
    allow-list; what cannot be read is an error result for each of its runs."""
    try:
        found = load_answer(data)
    except Exception as exc:  # whatever a crafted answer makes unpickling raise
        found = exc
    if isinstance(found, list) and len(found) == len(run_ids) and \
            all(isinstance(item, RunResult) for item in found):
        return found
    return _unreadable(found, run_ids)


def _unreadable(found: object, run_ids: list[str]) -> list[RunResult]:
    return [RunResult(run_id, error=f"the verify worker's results could not be read "
                                    f"({printable(found, limit=200)})") for run_id in run_ids]


def chunk_values(data: bytes, run_ids: list[str]) -> list[dict[str, Any]]:
    """The results of :func:`replay_chunk` (``values`` option) for ``run_ids``, as the
    values :meth:`RunResult.as_value` makes; what cannot be read is an error value for
    each of its runs."""
    if not data.startswith(b"["):  # pickled by the worker: JSON could not carry them
        return [result.as_value() for result in chunk_results(data, run_ids)]
    try:
        found: object = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        found = exc
    # One result per run, in order, each naming its run and a verdict (what the parent
    # reads of every value), or none of them is taken.
    if type(found) is list and len(found) == len(run_ids) and \
            all(type(value) is dict and value.get("run") == run_id and
                type(value.get("verdict")) is str
                for value, run_id in zip(found, run_ids, strict=True)):
        return found
    return [result.as_value() for result in _unreadable(found, run_ids)]


_Result = TypeVar("_Result")


@data_class(frozen=True)
class ResultForm(Generic[_Result]):
    """The form a verification hands each run's result back in: :class:`RunResult`
    objects (:data:`OBJECTS`), or their JSON-ready values (:data:`VALUES`)."""

    #: Whether the workers make the values (the ``values`` option).
    values: bool
    #: A worker's answer for these runs, read as data.
    read: Callable[[bytes, list[str]], list[_Result]]
    #: A result made in the parent (a damaged record, a worker that died), in this form.
    of: Callable[[RunResult], _Result]
    #: The verdict of a result in this form.
    verdict: Callable[[_Result], str]
    #: Whether a result in this form is ``misrouted`` (:attr:`RunResult.misrouted`).
    misrouted: Callable[[_Result], bool]


def _same(result: RunResult) -> RunResult:
    return result


def _verdict(result: RunResult) -> str:
    return result.verdict


def _value_verdict(value: dict[str, Any]) -> str:
    return str(value["verdict"])


def _misrouted(result: RunResult) -> bool:
    return result.misrouted


def _value_misrouted(value: dict[str, Any]) -> bool:
    return value.get("misrouted") is True


#: Results as :class:`RunResult` objects (:func:`pinrun.verifier.verify.verify_runs`).
OBJECTS: ResultForm[RunResult] = ResultForm(False, chunk_results, _same, _verdict, _misrouted)
#: Results as JSON-ready values (:func:`pinrun.verifier.verify.run_verification`).
VALUES: ResultForm[dict[str, Any]] = ResultForm(True, chunk_values, RunResult.as_value,
                                                _value_verdict, _value_misrouted)


# ------------------------------------------------------------ one fresh child


@data_class(frozen=True)
class ReplayRequest:
    """One run to replay in a fresh interpreter: where, which, and how."""

    store_path: str
    run_id: str
    options: ReplayOptions = field(default_factory=ReplayOptions)
    #: A variation the child installs before it replays (``("umask", "0077")``), for
    #: ``--perturb`` (:func:`pinrun.world.variations.apply`).
    variation: tuple[str, str] | None = None


def replay_request(request: ReplayRequest) -> RunResult:
    """In the child: install the request's variation, open the store, replay the run,
    give the result back."""
    if request.variation is not None:
        # Imported here: only --perturb's children vary (not a verify worker's start).
        from pinrun.world.variations import apply as apply_variation

        apply_variation(*request.variation)
    try:
        with Store.open(request.store_path) as store:
            result = replay_in_this_process(store, request.run_id, request.options)
        if not request.options.allow_world:  # nor what the replay left behind, at exit
            refuse_from_now_on()
        return result
    except StoreError as exc:
        return RunResult(request.run_id, error=str(exc), store_error=True, raised=exc)


def replay_in_child(request: ReplayRequest, *, environment: Mapping[str, str] | None = None,
                    timeout: float | None = None) -> RunResult:
    """Replay ``request`` in a fresh interpreter whose environment adds ``environment``
    (``PYTHONHASHSEED``, ``TZ``...); a child that dies or times out is an ``error`` result."""
    answer = call_in_child(f"{__name__}:replay_request", request, environment=environment,
                           timeout=timeout)
    if isinstance(answer.value, RunResult):
        return answer.value
    return RunResult(request.run_id, error=f"the replay process failed: "
                                           f"{answer.failure or 'it gave no result'}")
