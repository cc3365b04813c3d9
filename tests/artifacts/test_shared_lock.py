"""The store's shared/exclusive lock: readers together, a resize alone, no lost wake-up."""

from __future__ import annotations

import threading
import time

from pinrun.artifacts.shared_lock import SharedExclusiveLock

#: Long enough for a thread to block, short enough for the suite.
SETTLE = 0.05
TIMEOUT = 10.0


def test_a_thread_holds_the_shared_side_as_often_as_it_took_it() -> None:
    """Held twice, released once: still held; released twice: not held, and a resize
    goes ahead at once."""
    lock = SharedExclusiveLock()
    assert not lock.held_by_this_thread()
    lock.acquire_shared()
    lock.acquire_shared()
    lock.release_shared()
    assert lock.held_by_this_thread()
    lock.release_shared()
    assert not lock.held_by_this_thread()
    with lock.exclusive_side():
        inside = lock.exclusive
    assert inside
    assert not lock.exclusive
    assert lock.readers == []


def test_another_threads_hold_is_not_this_ones() -> None:
    lock = SharedExclusiveLock()
    lock.acquire_shared()
    seen: list[bool] = []
    other = threading.Thread(target=lambda: seen.append(lock.held_by_this_thread()))
    other.start()
    other.join(TIMEOUT)
    assert seen == [False]
    lock.release_shared()


def test_a_resize_waits_for_the_reader_and_starts_when_it_leaves() -> None:
    """The resizer blocks while a reader holds; the reader's release wakes it."""
    lock = SharedExclusiveLock()
    lock.acquire_shared()
    resized = threading.Event()

    def resize() -> None:
        with lock.exclusive_side():
            resized.set()

    resizer = threading.Thread(target=resize)
    resizer.start()
    time.sleep(SETTLE)
    assert not resized.is_set()
    lock.release_shared()
    assert resized.wait(TIMEOUT)
    resizer.join(TIMEOUT)
    assert not resizer.is_alive()


def test_a_reader_waits_for_a_resize_under_way() -> None:
    """A reader arriving while the exclusive side is held waits for its end, then holds."""
    lock = SharedExclusiveLock()
    holding = threading.Event()

    def read() -> None:
        lock.acquire_shared()
        holding.set()
        lock.release_shared()

    with lock.exclusive_side():
        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(SETTLE)
        assert not holding.is_set()
        assert lock.readers == []
    assert holding.wait(TIMEOUT)
    reader.join(TIMEOUT)
    assert lock.readers == []


def test_readers_and_resizers_never_overlap() -> None:
    """Four readers and two resizers hammer one lock: no reader ever holds during a
    resize, two resizes never overlap, and every thread ends (no lost wake-up)."""
    lock = SharedExclusiveLock()
    guard = threading.Lock()
    state = {"readers": 0, "resizing": 0, "reads": 0, "resizes": 0}
    problems: list[str] = []
    stop = time.monotonic() + 1.0

    def reader() -> None:
        while time.monotonic() < stop:
            lock.acquire_shared()
            try:
                with guard:
                    state["readers"] += 1
                    state["reads"] += 1
                    if state["resizing"]:
                        problems.append("a reader held during a resize")
                with guard:
                    state["readers"] -= 1
            finally:
                lock.release_shared()

    def resizer() -> None:
        while time.monotonic() < stop:
            with lock.exclusive_side():
                with guard:
                    state["resizing"] += 1
                    state["resizes"] += 1
                    if state["readers"] or state["resizing"] > 1:
                        problems.append(f"a resize overlapped {state}")
                time.sleep(0.0005)
                with guard:
                    state["resizing"] -= 1
            time.sleep(0.001)

    threads = [threading.Thread(target=reader) for _ in range(4)] + \
        [threading.Thread(target=resizer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread never woke"
    assert problems == []
    assert state["reads"] > 100, state
    assert state["resizes"] > 10, state
    assert lock.readers == []
    assert not lock.exclusive


def test_an_interrupted_resize_lets_readers_in() -> None:
    """A resizer interrupted while it waits for a reader gives the exclusive side up."""
    lock = SharedExclusiveLock()
    lock.acquire_shared()
    errors: list[BaseException] = []

    class StopError(Exception):
        pass

    def resize() -> None:
        original = lock._cond.wait

        def wait(timeout: float | None = None) -> bool:
            original(SETTLE)
            raise StopError

        lock._cond.wait = wait  # type: ignore[method-assign]
        try:
            with lock.exclusive_side():
                pass
        except StopError as exc:
            errors.append(exc)
        finally:
            lock._cond.wait = original  # type: ignore[method-assign]

    resizer = threading.Thread(target=resize)
    resizer.start()
    resizer.join(TIMEOUT)
    assert len(errors) == 1
    assert not lock.exclusive
    lock.release_shared()
    lock.acquire_shared()  # not blocked
    lock.release_shared()
