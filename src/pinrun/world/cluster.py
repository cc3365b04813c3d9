"""A Dask cluster as the door to other machines: connect, hand out tasks, take answers.

``pinrun verify --dask ADDRESS`` replays runs on an existing Dask cluster. This
module is the only one that talks to it (the verifier reaches the network only
through :mod:`pinrun.world`); it knows nothing of runs: it submits a library
function with plain arguments and gives back futures. Dask is an optional extra
(``pip install 'pinrun[dask]'``), imported only when a cluster is asked for.

How long connecting may take is Dask's own setting,
``distributed.comm.timeouts.connect`` (30 s by default; the environment variable
``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s`` sets it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pinrun.errors import InputError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["Cluster", "open_cluster"]


class Cluster:
    """A connected Dask client, narrowed to what pinrun asks of a cluster."""

    def __init__(self, client: Client, address: str) -> None:
        # distributed's Client is only partly annotated (submit is; cancel and close
        # are not): held as Any, its typed calls are typed here.
        self._client: Any = client
        self.address = address

    @property
    def slots(self) -> int:
        """How many tasks the cluster runs at once now: its workers' threads (at least 1,
        to size batches by)."""
        # nthreads() lists every worker in every distributed version (scheduler_info()
        # lists only five in some).
        threads: dict[str, int] = self._client.nthreads()
        return max(1, sum(threads.values()))

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``function(*args)`` (an importable library function) on some worker.

        ``pure=False``: two batches with equal arguments are still two tasks, and
        the arguments (a bundle's bytes) are not hashed to name the task.
        """
        future: Future[Any] = self._client.submit(function, *args, pure=False)
        return future

    def send(self, data: bytes) -> Future[bytes]:
        """Put ``data`` on some worker (round robin), for tasks to take as an argument.

        A batch's bundle goes so, straight to a worker, instead of inside the task
        through the scheduler (which warns at 10 MB and holds what it relays).
        """
        future: Future[bytes] = self._client.scatter(data, hash=False)
        return future

    def cancel(self, futures: Iterable[Future[Any]]) -> None:
        """Drop tasks whose answers are no longer wanted (``--fail-fast``)."""
        pending = list(futures)
        if pending:
            self._client.cancel(pending)


@contextmanager
def open_cluster(address: str) -> Iterator[Cluster]:
    """Connect to the Dask scheduler at ``address`` for the block, then disconnect.

    Raises :class:`~pinrun.errors.InputError` (exit 2) when Dask is not
    installed or the scheduler cannot be reached in Dask's connect timeout.
    """
    try:
        import distributed
    except ImportError as exc:
        raise InputError(f"--dask {address}: Dask is not installed here ({exc}); install "
                         "the extra with `pip install 'pinrun[dask]'`") from exc
    try:
        # Not annotated in distributed (its __init__ takes untyped arguments).
        connect: Any = distributed.Client
        client = connect(address, set_as_default=False)
    except (OSError, ValueError) as exc:  # a timeout is an OSError; a bad address, either
        raise InputError(f"--dask {address}: cannot reach a Dask scheduler there ({exc}); "
                         "check the address (tcp://HOST:PORT) and that the scheduler "
                         "runs") from exc
    try:
        yield Cluster(client, address)
    finally:
        client.close()
