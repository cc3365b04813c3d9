"""Store.iter_refs: refs read lazily by prefix, forward or newest first, in short batches."""

from __future__ import annotations

from pinrun.artifacts.store import Store

# Names around the prefix "runs/" that must not be listed with it: "runs" + a byte
# just below and just above "/", a longer name sharing "run", and non-ASCII text.
_NEIGHBOURS = ("runs.x", "runs0", "run/a", "runsé/x", "tags/nightly/x")


def _fill(store: Store, count: int) -> list[str]:
    digest = store.put_value("x")
    names = [f"runs/{index:05d}" for index in range(count)] + ["runs/é", "runs/zz/deep"]
    with store.batch() as batch:
        for name in (*names, *_NEIGHBOURS):
            batch.set_ref(name, digest)
    return sorted(names)


def test_iteration_matches_the_sorted_listing_across_batches(store: Store) -> None:
    """Forward and reverse iteration give exactly refs()' names in order and reversed,
    across several read batches, and nothing outside the prefix."""
    names = _fill(store, 1500)  # more than the first batches (64, then 256, then 1024)
    assert [name for name, _ in store.iter_refs("runs/")] == names == list(store.refs("runs/"))
    assert [name for name, _ in store.iter_refs("runs/", reverse=True)] == names[::-1]
    everything = list(store.refs())
    assert [name for name, _ in store.iter_refs()] == everything
    assert [name for name, _ in store.iter_refs(reverse=True)] == everything[::-1]
    assert dict(store.iter_refs("runs/", reverse=True)) == store.refs("runs/")


def test_prefix_without_refs_and_empty_store(store: Store) -> None:
    """A prefix nothing has, one past the last ref and an empty store yield nothing."""
    assert list(store.iter_refs("runs/", reverse=True)) == []
    assert list(store.iter_refs()) == []
    _fill(store, 3)
    for prefix in ("nothing/", "zzz", "runs/zz/deeper", "a"):
        assert list(store.iter_refs(prefix)) == []
        assert list(store.iter_refs(prefix, reverse=True)) == []
    assert [name for name, _ in store.iter_refs("tags/", reverse=True)] == ["tags/nightly/x"]


def test_only_what_is_read_is_read_and_writes_may_happen_between(store: Store) -> None:
    """A paused iteration holds no transaction: refs set and deleted meanwhile do not
    break it, and it goes on past the last name it gave."""
    names = _fill(store, 200)
    newest = store.iter_refs("runs/", reverse=True)
    first = [next(newest)[0] for _ in range(64)]  # exactly the first batch
    assert first == names[::-1][:64]
    digest = store.put_value("y")
    store.delete_ref(first[-1])  # where the next batch starts from
    store.delete_ref(names[::-1][64])  # the next one it would give
    store.set_ref("runs/00000a", digest)  # ahead of it: seen when reached
    rest = [name for name, _ in newest]
    assert rest == [name for name in sorted([*names, "runs/00000a"], reverse=True)
                    if name not in first and name != names[::-1][64]]


def test_get_refs_reads_many_names_at_once(store: Store) -> None:
    """get_refs gives each name's digest in order, None for a name not set, as get_ref does."""
    names = _fill(store, 40)
    asked = [names[3], "runs/absent", names[0], "tags/nightly/x", names[3]]
    assert store.get_refs(asked) == [store.get_ref(name) for name in asked]
    assert store.get_refs(asked)[1] is None
    assert store.get_refs([]) == []
