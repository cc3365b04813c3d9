"""Hidden state: what the project's modules keep from one run to the next, named by owner.

A long-lived worker runs one run after another in one process. Whatever a
step leaves behind in the project's code, rather than in the run's state, is
found by the next run: hidden state. It lives in four places, each named by
its owner when a step changes it:

* a module global (``module state: orders.pricing.SEEN changed``);
* a class attribute of a project class (``module state:
  orders.pricing.Registry.items changed``);
* a mutable default argument of a project function (``default argument:
  orders.pricing.add(seen=...) changed``);
* the cached results of a project function wrapped in ``functools.lru_cache``
  or ``functools.cache`` (``cache: orders.pricing.rate() holds a result changed
  in place``).

**Caches.** Filling a cache is not a hazard: a function whose result depends
only on its arguments answers the same from its cache as it would by running
again, so a cache of a pure function must reproduce with no hazard. What is
hidden state is a cached result the step then changes in place (the next
call returns the changed object): that is a hazard when it happens. A cache
filled from something else (the clock, a global) can still make a later run
differ; that shows as a divergence, and then the cache that holds more entries
than when the first repetition reached the same step is named as a cause
(``cache: orders.pricing.rate() holds 3 entries (was 0)``). The entries are read
through the garbage collector's view of the wrapper (``gc.get_referents``,
which CPython's C implementation answers with its cache dict); a wrapper
whose insides are not recognised counts by ``cache_info().currsize`` alone.

**What it costs** (a guarded replay must cost little more than an unguarded
one). Every place is classified once, by the identity of the object bound
there: an immutable value (a number, a string, a frozen dataclass), a logger,
a compiled pattern, a path, a flow or a ``__future__`` feature is never
looked into again: only the binding's identity is compared, which also
catches a rebinding (``global COUNT; COUNT += 1``). Neither is a value the
codec refuses in every view (its token says nothing more). A mutable value is
*watched*: a small dict, list or set of plain values (numbers, strings) by a
shallow copy and its ``marshal`` bytes (which tell ``1``, ``1.0`` and ``True``
apart, and write a float by its bits), compared in C, anything else by its snapshot
(:func:`~pinrun.flows.module_objects.snapshot_view`, the view that worked
last time tried first). A look fetches every binding, compares them by
identity with what each place was classified for, and asks only the watched
places for more; a token that did not change is the very object of the last
look, so an unchanged look compares by identity alone. The places and their
classification are shared by every watch of the same module objects (one per
replay in a worker). An enum's members cannot be rebound: they are no
places. Functions, classes and modules are code, never state in themselves;
their defaults, attributes and caches are the places above.

**When it looks** (:class:`Watch` is the mechanism;
:mod:`pinrun.verifier.hidden_judge` decides when). A plain replay looks at
the run's edges: once as it starts, once after its last step; a change is
then named by its owner as made during the run, and the process looks after
every step at those modules from then on (:meth:`Watch.saw_changing`, shared
by every watch of the same module objects). Looking step by step
(``--repeat``, and after a change was seen), the look after one step is the
look before the next. A level whose async steps run concurrently has no
boundary between its steps: they interleave, so one look after the level
finds what changed and the change is named on each of those steps as made by
one of them (``one of steps 'a', 'b', which ran concurrently``). Per-step
looks inside a concurrent level would need a snapshot at every ``await``; a
cheap fingerprint (identity, length) would be unsound (``d[k] = v`` keeps
both).

**Recording** watches less, since it must stay cheap per step and knows more:
a step's pin names the module globals its code reads (watched by name in
:mod:`pinrun.engine.execution`) and the modules its code comes from, whose
class attributes, mutable defaults and caches :func:`code_watch` watches
around the step (places holding an immutable value are left out for good).

**Repetitions.** ``replay --repeat N`` runs the same code N times in one
process. The watch keeps, per step, what the step found in the first
repetition and who last changed each place (step and repetition); when a
later repetition diverges, every place whose state differs from what the
same step found in the first repetition is named, with the step and the
repetition that changed it: ``changed by step 'tag' in repetition 1, read
again in repetition 2``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import functools
import gc
import marshal
import operator
import queue
import threading
import types
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from pinrun.data_classes import data_class
from pinrun.flows.module_objects import (
    HEAP_TYPE,
    fixed_reference,
    ignored_object,
    is_immutable,
    never_state,
    snapshot_view,
)

__all__ = [
    "CARRIED",
    "MODULE_STATE",
    "Change",
    "Look",
    "Watch",
    "cache_entries",
    "carried",
    "code_watch",
    "forget_places",
    "forgotten_after",
    "is_machinery",
]

#: The three kinds of hidden state a change is named by.
MODULE_STATE: Final = "module state"
DEFAULT_ARGUMENT: Final = "default argument"
CACHE: Final = "cache"

#: What a hazard of hidden state ends with: why it matters.
CARRIED: Final = "(hidden state a worker carries into its next run)"


def carried(what: object) -> str:
    """A hazard of hidden state: ``what`` changed, and why that matters."""
    return f"{what} {CARRIED}"


_MISSING: Final = object()  # a place with nothing bound (a name deleted, defaults replaced)
_UNSEEN: Final = object()  # a value pinrun cannot see: equal to any other such value
#: Past this many entries a cache counts by its size only (like a large container).
_MAX_CACHE_ENTRIES: Final = 10_000
_LRU_WRAPPER: Final = type(functools.lru_cache(maxsize=None)(lambda: None))


@data_class(frozen=True)
class Change:
    """One place of hidden state that differs, named by its owner."""

    #: ``module state``, ``default argument`` or ``cache``.
    kind: str
    #: Who holds it: ``orders.pricing.SEEN``, ``orders.pricing.add(seen=...)``,
    #: ``orders.pricing.rate()``.
    owner: str
    #: What differs: ``changed``, ``holds 3 entries (was 0)``...
    what: str
    #: Whether it is a hazard when a step does it (a cache filling up is not).
    hazard: bool = True
    #: A cache that gained entries whose results can change in place: no hazard, but a
    #: step may have changed one since (seen only when looking after every step).
    mutable: bool = False

    def __str__(self) -> str:
        return f"{self.kind}: {self.owner} {self.what}"


#: One look at every place: a token per place, in the watch's order.
Look = tuple[object, ...]


class _Place:
    """One place hidden state lives: how to reach it, and what it held last time.

    ``reach(key, _MISSING)`` is what the place holds now (a mapping's ``get``
    and the name, for a module global or a class attribute): a watch fetches
    every place's binding at once that way, and asks a place for a token only
    when the binding needs more than its identity (:meth:`token_of`).
    """

    __slots__ = ("bare", "copied", "is_global", "key", "kind", "last", "owner", "quiet",
                 "reach", "seen", "view", "watched")

    def __init__(self, kind: str, owner: str, reach: Callable[[Any, object], object],
                 key: object) -> None:
        self.kind, self.owner, self.reach, self.key = kind, owner, reach, key
        self.is_global = False  # a module global (recording watches those by name)
        self.seen: object = _MISSING  # the object classified last (by identity)
        self.quiet = True
        self.watched = False
        self.bare = False  # an object whose attributes may come later (``NS.x = 1``)
        self.view: int | None = None
        #: A flat container's contents at the last look (a shallow copy), else None.
        self.copied: _Flat | None = None
        #: The token given last: given again while nothing changed, so an unchanged
        #: look is the same objects and compares by identity alone.
        self.last: object = _MISSING

    def classify(self, value: object) -> None:
        """Classify the object now bound here (once per object: by identity)."""
        _EPOCH[0] += 1  # every layout of this place must see it again (see Watch.look)
        self.seen, self.view, self.last = value, None, _MISSING
        self.quiet = value is _MISSING or _quiet_value(value)
        self.copied = _flat_copy(value) if not self.quiet else None
        self.watched = not self.quiet and (
            self.copied is not None or snapshot_view(value) is not None)
        self.bare = not self.quiet and not self.watched and _bare(value)

    @property
    def special(self) -> bool:
        """Whether the token is more than the binding itself (see :meth:`token_of`)."""
        return not self.quiet

    def token(self) -> object:
        """What the place holds now, comparable with an earlier token of it."""
        value = self.reach(self.key, _MISSING)
        if value is not self.seen:
            self.classify(value)
        return value if self.quiet else self.token_of(value)

    def token_of(self, value: object) -> object:
        """The token of ``value``, the object this place is classified for and holds now."""
        if self.copied is not None:  # a flat container: a copy is its snapshot
            if _same_flat(value, self.copied):
                return self.copied  # compared in place: nothing copied while it holds
            copied = value.copy()  # type: ignore[attr-defined]
            if _is_flat(copied):
                self.copied = _Flat(copied)
                return self.copied
            self.copied = None  # it holds a container now: snapshots from here on
        if not self.watched and (not self.bare or not vars(value)):
            return _UNSEEN  # nothing pinrun can see (yet: no encoding is tried)
        found = snapshot_view(value, self.view)
        if found is None:
            return _UNSEEN
        self.view = found[0]
        if found[1] != self.last:
            self.last = found[1]
        return self.last

    def compare(self, before: object, after: object) -> Change | None:
        return None if _same(before, after) else Change(self.kind, self.owner, "changed")


#: The containers whose snapshot is a shallow copy while they hold only plain values.
_FLAT: Final = frozenset({dict, list, set})


def _flat_copy(value: object) -> _Flat | None:
    """A shallow copy of a small dict, list or set holding only plain values (its keys
    too), else None: equal copies mean the same contents, without encoding them."""
    if type(value) not in _FLAT or len(value) > _MAX_FLAT:  # type: ignore[arg-type]
        return None
    copied = value.copy()  # type: ignore[attr-defined]
    return _Flat(copied) if _is_flat(copied) else None


class _Flat:
    """The token of a flat container: a shallow copy, equal to another only when the
    contents are the same values of the same types (``1``, ``1.0`` and ``True`` are
    equal in Python, not here; a new NaN object is the same as the old one)."""

    __slots__ = ("items", "marshalled")

    def __init__(self, items: Any) -> None:
        self.items = items
        #: The contents written by ``marshal`` (format 2: no back-references), which
        #: tells every plain type apart and writes a float by its bits: equal bytes are
        #: the same values of the same types, in the same order, compared in C.
        self.marshalled = marshal.dumps(items, 2)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Flat) and (self.marshalled == other.marshalled
                                             or _same_flat(self.items, other))

    __hash__ = None  # type: ignore[assignment]  # compared, never a key


def _same_flat(now: Any, then: _Flat) -> bool:
    """Whether a flat container holds what ``then`` holds: the same values, of the same
    types (in C while the order is the same, item by item otherwise)."""
    if type(now) is not type(then.items):
        return False
    try:
        if marshal.dumps(now, 2) == then.marshalled:
            return True
    except ValueError:  # it holds an object marshal cannot write: no longer flat, changed
        return False
    if now == then.items and _same_types(now, then.items):
        return True  # the same, in another order (a set's order is its history's)
    # Unequal to Python (a NaN is unequal to itself) or a type changed: what would be
    # recorded of them decides.
    from pinrun.artifacts import codec  # late: the codec is heavier than these rules

    try:
        return bool(codec.encode(now) == codec.encode(then.items))
    except Exception:  # a value the codec refuses: not the same, to be safe
        return False


def _same_types(now: Any, then: Any) -> bool:
    """Whether equal flat containers, in another order, pair every item with one of the
    same type."""
    if type(now) is dict:
        kinds = {key: type(key) for key in then}
        return all(kinds[key] is type(key) and type(item) is type(then[key])
                   for key, item in now.items())
    kinds = {item: type(item) for item in then}
    return all(kinds.get(item) is type(item) for item in now)


def _is_flat(copied: Any) -> bool:
    if len(copied) > _MAX_FLAT:
        return False
    if type(copied) is dict:
        return all(type(item) in _PLAIN for item in copied.values()) and \
            all(type(item) in _PLAIN for item in copied)
    return all(type(item) in _PLAIN for item in copied)


#: Past this many items a container is encoded (counted by its size when it is large).
_MAX_FLAT: Final = 1_000


class _CachePlace(_Place):
    """The results a ``functools.lru_cache`` wrapper holds."""

    __slots__ = ("calls", "results", "wrapper")

    def __init__(self, owner: str, wrapper: Any) -> None:
        super().__init__(CACHE, owner, _itself, wrapper)
        self.wrapper = wrapper
        #: (misses, size) when the entries were read last: while they stay the same, no
        #: entry came or went (a hit adds none), so the entries are not read again.
        self.calls: tuple[int, int] | None = None
        #: The entries whose results can change in place: (key, result).
        self.results: list[tuple[object, object]] | None = None

    def classify(self, value: object) -> None:
        _EPOCH[0] += 1
        self.seen, self.quiet = value, False

    def token(self) -> object:
        return self.token_of(self.wrapper)

    def token_of(self, value: object) -> object:
        try:
            _, misses, _, size = self.wrapper.cache_info()
            calls = (int(misses), int(size))
        except Exception:  # not an lru_cache wrapper after all
            return (0, None)
        # A hit adds no entry: the entries are read again only once it holds new ones.
        fresh = calls != self.calls
        if not fresh and not self.results and self.last is not _MISSING:
            return self.last  # no new entry, and its results cannot change in place
        if fresh:
            entries = cache_entries(self.wrapper, calls[1])
            # A result that cannot change in place needs no snapshot: a pure cache of
            # numbers costs nothing more than its cache_info() while nobody calls it.
            self.results = None if entries is None else \
                [(key, result) for key, result in entries if not _quiet_value(result)]
            self.calls = calls
        token = (calls[1], None) if self.results is None else \
            (calls[1], {key: _snapshot(result) for key, result in self.results})
        if token != self.last:
            self.last = token
        return self.last

    def compare(self, before: object, after: object) -> Change | None:
        assert isinstance(before, tuple)
        assert isinstance(after, tuple)
        old, new = before[1], after[1]
        if isinstance(old, dict) and isinstance(new, dict) and any(
                key in old and not _same(old[key], token) for key, token in new.items()):
            return Change(CACHE, self.owner, "holds a result changed in place")
        if before[0] != after[0]:
            return Change(CACHE, self.owner, f"holds {_entries(after[0])} (was {before[0]})",
                          hazard=False, mutable=isinstance(new, dict) and bool(new))
        return None


def _itself(key: object, missing: object) -> object:
    """The reach of a place that is its key (a cache's wrapper)."""
    return key


def _entries(count: object) -> str:
    return "1 entry" if count == 1 else f"{count} entries"


def _bare(value: object) -> bool:
    """Whether ``value`` is an object of a class defined in Python with no attributes yet,
    which it may get later (``NS.x = 1``): looked at again only once it has some. One
    with attributes pinrun cannot see is never looked at again."""
    own = _attribute(value, "__dict__")
    return isinstance(own, dict) and not own and bool(type(value).__flags__ & HEAP_TYPE)


#: Types whose values cannot change in place, checked before the general rules.
_PLAIN: Final = frozenset({str, int, float, bool, bytes, complex, type(None)})


def _quiet_value(value: object) -> bool:
    """Never looked into: immutable, code, a logger, a pattern, a path, a time zone, and
    concurrency machinery (a pool, a thread, a lock, an event): its insides are
    bookkeeping, not state a step computes with."""
    return type(value) in _PLAIN or isinstance(
        value, type | types.ModuleType | types.FunctionType | types.BuiltinFunctionType) or \
        ignored_object(value) or never_state(value) or \
        fixed_reference(value, "") is not None or is_machinery(value) or is_immutable(value)


def is_machinery(value: object) -> bool:
    """Whether ``value`` is concurrency machinery (a pool, a thread, a lock, an event, a
    queue): never hidden state, whatever it holds inside."""
    return isinstance(value, _MACHINERY)


#: Concurrency machinery: identity is all that matters of it (rebinding one is caught).
_MACHINERY: Final = (concurrent.futures.Executor, threading.Thread, threading.Event,
                     threading.Condition, threading.Semaphore, type(threading.Lock()),
                     type(threading.RLock()), queue.Queue)


def _snapshot(value: object) -> object:
    found = snapshot_view(value)
    return found[1] if found is not None else _UNSEEN


def _same(before: object, after: object) -> bool:
    if before is after:
        return True
    if type(before) is not type(after):
        return False
    try:
        return bool(before == after)
    except Exception:  # an __eq__ of the user's that raised: cannot tell them apart
        return False


def cache_entries(wrapper: Any, size: int) -> list[tuple[object, object]] | None:
    """(key, result) for each entry of an ``lru_cache`` wrapper, or None.

    CPython's wrapper shows the garbage collector its links (key, result, link
    type for a bounded cache), then its cache dict, then the wrapped function.
    An unbounded cache maps keys to results directly.
    """
    if size > _MAX_CACHE_ENTRIES:
        return None
    if size == 0:
        return []
    refs = gc.get_referents(wrapper)
    func = getattr(wrapper, "__wrapped__", None)
    at = next((index for index, ref in enumerate(refs) if ref is func), None)
    if at is None or at == 0 or not isinstance(refs[at - 1], dict):
        return None
    cache: dict[object, object] = refs[at - 1]
    values = list(cache.values())
    if values and type(values[0]).__name__ != "_lru_list_elem":
        return list(cache.items())
    links = refs[:at - 1]
    while links and len(links) % 3:  # the wrapper's own type, shown first
        links = links[1:]
    found = [(links[i], links[i + 1]) for i in range(0, len(links), 3)]
    return found if len(found) == len(cache) else None


class Watch:
    """The hidden state of a set of project modules: its places, found once, and looks at them.

    Owned by one replay (all its repetitions); the places are found at the
    first look, from the modules' globals, their classes and functions.
    """

    def __init__(self, modules: Sequence[types.ModuleType],
                 places: list[_Place] | None = None, *, code_only: bool = False) -> None:
        self.modules = list(modules)
        self._explicit = places
        self._code_only = code_only
        self._layout: _Layout | None = None
        #: Per step name, what it found when the first repetition reached it.
        self.first_found: dict[str, Look] = {}
        #: Per owner, who last changed it: (the step, or the steps that ran concurrently
        #: then; the repetition).
        self.changed_by: dict[str, tuple[tuple[str, ...], int]] = {}

    @property
    def layout(self) -> _Layout:
        """The places and how they were classified, shared by the watches of the same
        modules (a worker makes one per replay, recording one per step)."""
        if self._layout is None:
            if self._explicit is not None:
                self._layout = _Layout(self._explicit)
            else:
                self._layout = _layout_of(self.modules, self._code_only)
        return self._layout

    @property
    def places(self) -> list[_Place]:
        """Every place of the modules' hidden state (found once per module object)."""
        return self.layout.places

    @property
    def seen_changing(self) -> bool:
        """Whether a run in this process was seen changing these modules' hidden state
        (shared by the watches of the same module objects; see :meth:`saw_changing`)."""
        return self.layout.changed

    def saw_changing(self) -> None:
        """Note that a run changed these modules' hidden state."""
        self.layout.changed = True

    def look(self) -> Look:
        """What every place holds now.

        Every binding is fetched at once and compared by identity with what each
        place was classified for; only a place bound to another object is
        classified again, and only the places that hold more than an immutable
        value are asked for a token. A token that did not change is the very
        object of the last look, so :meth:`changes` compares unchanged looks by
        identity alone.
        """
        layout = self.layout
        tokens = [reach(key, _MISSING) for reach, key in layout.reach]
        # Places are shared by layouts: one classified again (by another) is seen again.
        if layout.epoch != _EPOCH[0] or not all(map(operator.is_, tokens, layout.bound)):
            layout.classify(tokens)
        for index, place in layout.special:
            tokens[index] = place.token_of(tokens[index])
        return tuple(tokens)

    def changes(self, before: Look, after: Look) -> list[Change]:
        """What differs between two looks (a cache that filled up included, as no hazard)."""
        if before is after or all(map(operator.is_, before, after)):
            return []  # nearly always: the same objects, nothing changed
        found = []
        for place, old, new in zip(self.places, before, after, strict=True):
            if old is new:
                continue
            change = place.compare(old, new)
            if change is not None:
                found.append(change)
        return found

    def note(self, changes: Sequence[Change], steps: Sequence[str], repetition: int) -> None:
        """Remember that ``steps`` (one, or several that ran concurrently) made ``changes``
        in ``repetition``."""
        for change in changes:
            self.changed_by[change.owner] = (tuple(steps), repetition)

    def since_first(self, step: str, found: Look, repetition: int) -> list[Change]:
        """What ``step`` found in ``repetition`` that differs from what it found in the first
        (nothing in the first: it is remembered instead), each saying who changed it."""
        first = self.first_found.setdefault(step, found)
        if first is found or repetition == 1:
            return []
        named = []
        for change in self.changes(first, found):
            who = self.changed_by.get(change.owner)
            if who is None:
                why = f"changed since repetition 1 reached step {step!r}"
            else:
                steps, when = who
                by = f"step {steps[0]!r}" if len(steps) == 1 else \
                    f"one of steps {', '.join(map(repr, steps))} (run concurrently)"
                why = f"changed by {by} in repetition {when}, " + (
                    f"read again in repetition {repetition}" if step in steps else
                    f"before step {step!r} ran in repetition {repetition}")
            what = why if change.what == "changed" else f"{change.what}, {why}"
            named.append(Change(change.kind, change.owner, what))
        return named


class _Layout:
    """Places in a watch's order, how to reach each, and what each was bound to when
    classified (kept in step with the places' own classification)."""

    __slots__ = ("bound", "changed", "epoch", "modules", "places", "reach", "special")

    def __init__(self, places: list[_Place],
                 modules: list[weakref.ref[types.ModuleType]] | None = None) -> None:
        #: The modules whose places these are (weakly: a module is not kept for this).
        self.modules = modules or []
        self.places = places
        self.reach = [(place.reach, place.key) for place in places]
        self.bound: list[object] = [_UNCLASSIFIED] * len(places)
        #: The classification epoch :attr:`bound` was taken at (see :data:`_EPOCH`).
        self.epoch = -1
        #: Whether a run was seen changing these places (looked at after every step
        #: from then on: see :mod:`pinrun.verifier.hidden_judge`).
        self.changed = False
        #: The places whose token is more than their binding: (index, place).
        self.special: list[tuple[int, _Place]] = []

    def classify(self, bound: list[object]) -> None:
        """Classify the places bound to another object than last time (another layout
        of the same places may have done so already), and note which are special."""
        for place, value in zip(self.places, bound, strict=True):
            if value is not place.seen:
                place.classify(value)
        self.bound = [place.seen for place in self.places]
        self.special = [(index, place) for index, place in enumerate(self.places)
                        if place.special]
        self.epoch = _EPOCH[0]


_UNCLASSIFIED: Final = object()
#: Bumped whenever any place is classified again: a layout whose epoch is older looks
#: at its places' classification again before trusting its own copy of it.
_EPOCH = [0]
#: The layouts of the module sets watched lately (a worker's, replay after replay; a
#: recording's, step after step), by the modules' hashes (a module's is its address,
#: like its id, which costs an audit event to ask for): each layout holds its modules
#: weakly and is used only while they are the very same objects (pinned code brings
#: new module objects for every replay, which must not be kept alive for this).
_LAYOUTS: dict[tuple[object, ...], _Layout] = {}
_MOST_LAYOUTS: Final = 64


def _layout_of(modules: Sequence[types.ModuleType], code_only: bool) -> _Layout:
    key = (code_only, *map(object.__hash__, modules))
    found = _LAYOUTS.get(key)
    if found is not None and len(found.modules) == len(modules) and all(
            ref() is module for ref, module in zip(found.modules, modules, strict=True)):
        return found
    places = _code_places(modules) if code_only else \
        [place for module in modules for place in _module_places(module)]
    found = _Layout(places)

    layouts = _LAYOUTS  # held here: at exit, the module's globals are gone before this runs

    def forget(gone: object) -> None:  # a module gone: its layout (and namespace) with it
        # Found by the dead reference, not held here: a callback holding its layout
        # would make layout, reference and callback a cycle only the collector frees.
        entry = layouts.get(key)
        if entry is not None and any(ref is gone for ref in entry.modules):
            del layouts[key]

    try:
        found.modules = [weakref.ref(module, forget) for module in modules]
    except TypeError:  # a module object that takes no weak reference: not kept
        return found
    if len(_LAYOUTS) >= _MOST_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[key] = found
    return found


@contextlib.contextmanager
def forgotten_after(modules: Sequence[types.ModuleType]) -> Iterator[None]:
    """Forget, once the block is done, the places found in ``modules`` (see
    :func:`forget_places`)."""
    try:
        yield
    finally:
        forget_places(modules)


def forget_places(modules: Sequence[types.ModuleType]) -> None:
    """Forget the places found in ``modules`` and the layouts holding them: pinned code
    loaded for a replay goes when the replay (or the worker keeping it) is done with it,
    and its places hold its namespaces, which hold its package, which holds the modules
    (kept for good by the caches, however weakly keyed)."""
    for module in modules:
        with contextlib.suppress(TypeError):  # takes no weak reference: never kept
            _PLACES.pop(module, None)
            _CODE_PLACES.pop(module, None)
    for key, layout in list(_LAYOUTS.items()):
        if any(ref() is module for ref in layout.modules for module in modules):
            _LAYOUTS.pop(key, None)


#: The places of each module object, with what each was classified as. The owner is the
#: module object: a module loaded again (pinned code is, for every replay) is another key,
#: and its entry goes with it. A worker replaying one run after another with the same
#: modules classifies each place once, not once per replay.
_PLACES: weakref.WeakKeyDictionary[types.ModuleType, list[_Place]] = \
    weakref.WeakKeyDictionary()


def _module_places(module: types.ModuleType) -> list[_Place]:
    try:
        return _PLACES[module]
    except KeyError:
        found = _PLACES[module] = list(_places(module))
        return found
    except TypeError:  # a module object that takes no weak reference: not kept
        return list(_places(module))


def _places(module: types.ModuleType) -> Iterator[_Place]:
    """Every place of hidden state in ``module``: its globals, then what its code owns."""
    namespace = vars(module)
    name_of = module.__name__
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        owned = _attribute(value, "__module__") == name_of
        if isinstance(value, type):
            if owned:
                yield from _class_places(value, f"{name_of}.{value.__qualname__}")
            continue
        func = _function_of(value)
        if func is not None or isinstance(value, types.ModuleType) or callable(value):
            if owned and func is not None:
                yield from _function_places(value, func, name_of)
            continue
        place = _Place(MODULE_STATE, f"{name_of}.{name}",
                       namespace.get, name)
        place.is_global = True
        yield place


#: Per module object, the places its code owns that can change in place (see code_watch).
_CODE_PLACES: weakref.WeakKeyDictionary[types.ModuleType, list[_Place]] = \
    weakref.WeakKeyDictionary()


def code_watch(modules: Sequence[types.ModuleType]) -> Watch:
    """A watch of what the modules' code owns and can change in place: the class attributes
    and mutable defaults holding a mutable value when first seen, and the caches.

    Recording watches a step's module globals by name (those its code reads, from
    its pin); this adds the rest, for the modules its code comes from. Immutable
    class attributes are left out for good, so a flow with none of these costs
    nothing per step.
    """
    return Watch(modules, code_only=True)


def _code_places(modules: Sequence[types.ModuleType]) -> list[_Place]:
    found: list[_Place] = []
    for module in modules:
        try:
            places = _CODE_PLACES[module]
        except KeyError:
            places = [place for place in _module_places(module) if not place.is_global
                      and (isinstance(place, _CachePlace) or _changes_in_place(place))]
            _CODE_PLACES[module] = places
        except TypeError:  # a module object that takes no weak reference: not kept
            continue
        found += places
    return found


def _changes_in_place(place: _Place) -> bool:
    place.token()
    return place.watched or place.bare


def _class_places(cls: type, owner: str) -> Iterator[_Place]:
    """A project class's data attributes, and its methods' defaults and caches."""
    namespace = vars(cls)
    # An enum's members cannot be bound again: never hidden state, never looked at.
    members: Mapping[str, object] = cls.__members__ if isinstance(cls, enum.EnumMeta) else {}
    for name, value in list(namespace.items()):
        if (name.startswith("_") and name.endswith("_")) or name in members:
            continue  # dunders and enum-style _sunder_ names: the class machinery's
        inner = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        func = _function_of(inner)
        if func is not None:
            yield from _function_places(inner, func, cls.__module__)
        elif not hasattr(type(value), "__get__") and not isinstance(value, type):
            # A descriptor (a property) is code; anything else is the class's data.
            yield _Place(MODULE_STATE, f"{owner}.{name}",
                         namespace.get, name)


def _function_of(value: object) -> types.FunctionType | None:
    """The Python function behind ``value``: itself, a cache's or a pinrun step's."""
    if isinstance(value, types.FunctionType):
        return value
    if isinstance(value, _LRU_WRAPPER):
        inner = getattr(value, "__wrapped__", None)
        return inner if isinstance(inner, types.FunctionType) else None
    if not type(value).__module__.startswith("pinrun."):
        return None
    inner = _attribute(value, "func")  # a pinrun step wraps its function
    return inner if isinstance(inner, types.FunctionType) else None


def _attribute(value: object, name: str) -> object:
    """``getattr(value, name, None)``, also when the object's ``__getattr__`` raises."""
    try:
        return getattr(value, name, None)
    except Exception:  # a __getattr__ or property of the user's that raised
        return None


def _function_places(value: object, func: types.FunctionType, module: str) -> Iterator[_Place]:
    """A function's mutable default arguments, and its cache when it has one."""
    qualified = f"{module}.{func.__qualname__}"
    code = func.__code__
    positional = code.co_varnames[:code.co_argcount]
    defaults = func.__defaults__ or ()
    for index, default in enumerate(defaults):
        if not _quiet_value(default):
            name = positional[len(positional) - len(defaults) + index]
            yield _Place(DEFAULT_ARGUMENT, f"{qualified}({name}=...)",
                         _default, (func, index))
    for name, default in (func.__kwdefaults__ or {}).items():
        if not _quiet_value(default):
            yield _Place(DEFAULT_ARGUMENT, f"{qualified}({name}=...)",
                         _keyword_default, (func, name))
    if isinstance(value, _LRU_WRAPPER):
        yield _CachePlace(f"{qualified}()", value)


def _default(key: tuple[types.FunctionType, int], missing: object) -> object:
    func, index = key
    defaults = func.__defaults__ or ()
    return defaults[index] if index < len(defaults) else missing


def _keyword_default(key: tuple[types.FunctionType, str], missing: object) -> object:
    func, name = key
    return (func.__kwdefaults__ or {}).get(name, missing)
