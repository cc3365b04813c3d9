"""Random generators: the seeded ones are the step's own, the unseeded ones read the world.

A generator built with a seed (``random.Random(7)``,
``numpy.random.default_rng(42)``, ``numpy.random.RandomState(3)``) gives the
same numbers on every run: it is never noted. One built without a seed
seeds itself from the operating system's entropy, and so does every draw
from numpy's global generator (``numpy.random.normal()``) unless the step
seeded it first (``numpy.random.seed(3)`` in the same step). The stand-ins
here note those, through the guards' note function, at the nearest frame of
the project's code: also when a library made the call on the step's behalf
(scikit-learn's ``random_state=None`` draws from numpy's global generator).

Why stand-ins for the constructors, and not only for the entropy they draw:
numpy's C code draws ``secrets.randbits`` with no Python frame between it
and the project's line, also while setting up a *seeded*
``RandomState(3)`` (its first state is thrown away by the seeding). A
stand-in that sees the arguments can tell the two apart; the entropy draw
then comes from the stand-in's frame, a library's, and is not the step's.

A class stand-in is a subclass of the real class whose calls build the real
class, and which ``isinstance``/``issubclass`` answer as the real class does
(scikit-learn asks ``isinstance(seed, np.random.RandomState)``), so what a step
gets is exactly what it would get unguarded. numpy's global generator
(``numpy.random.mtrand._rand``, what ``check_random_state(None)`` returns) is
stood in for by a ``RandomState`` that shares its bit generator and passes
every call to it. numpy is touched only when the project imported it.
"""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["generator_stand_ins"]

#: The guards' note function: ``note(kind, call, behalf=True)`` notes a call at the nearest
#: frame of the project's code (raising in strict mode).
Note = Callable[..., None]
#: Which guarded step is running now (None: none is): compared by identity only.
Active = Callable[[], object]
StandIn = tuple[types.ModuleType, str, Any, Any]


def _seed(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
    """The seed a constructor was given (its first argument), or None."""
    return args[0] if args else kwargs.get(name)


def _unseeded(name: str) -> Callable[[tuple[Any, ...], dict[str, Any]], bool]:
    return lambda args, kwargs: _seed(args, kwargs, name) is None


def _always(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return True


def _philox_unseeded(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    # Philox(key=...) is seeded by its key (numpy refuses a seed with a key).
    return _seed(args, kwargs, "seed") is None and kwargs.get("key") is None


@dataclass(frozen=True)
class _Spec:
    """What a class stand-in stands for."""

    real: type
    call: str  # as the project would write it: "numpy.random.RandomState()"
    unseeded: Callable[[tuple[Any, ...], dict[str, Any]], bool]
    note: Note


class _StandInClass(type):
    """The metaclass of a class stand-in.

    Calling the stand-in notes an unseeded construction, then builds the real
    class; ``isinstance`` and ``issubclass`` answer for the real class. A class
    the step derives from the stand-in is an ordinary class.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        spec: _Spec | None = cls.__dict__.get("_pinrun_spec")
        if spec is None:  # a subclass of the stand-in
            return super().__call__(*args, **kwargs)
        if spec.unseeded(args, kwargs):
            spec.note("randomness", spec.call, behalf=True)
        return spec.real(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        spec: _Spec | None = cls.__dict__.get("_pinrun_spec")
        return isinstance(instance, spec.real) if spec is not None \
            else super().__instancecheck__(instance)

    def __subclasscheck__(cls, subclass: type) -> bool:
        spec: _Spec | None = cls.__dict__.get("_pinrun_spec")
        return issubclass(subclass, spec.real) if spec is not None \
            else super().__subclasscheck__(subclass)


def _class_stand_in(spec: _Spec) -> type:
    real = spec.real
    return _StandInClass(real.__name__, (real,), {
        "_pinrun_spec": spec, "__module__": real.__module__, "__qualname__": real.__qualname__,
        "__doc__": real.__doc__})


class _Seeding:
    """Which guarded step last seeded numpy's global generator (None: none did, or it was
    seeded from entropy since). A strong reference: an identity that cannot be reused."""

    by: object = None


def _wrap(real: Callable[..., Any], body: Callable[..., Any]) -> Callable[..., Any]:
    body.__name__ = getattr(real, "__name__", body.__name__)
    body.__qualname__ = getattr(real, "__qualname__", body.__name__)
    body.__doc__ = getattr(real, "__doc__", None)
    body.__wrapped__ = real  # type: ignore[attr-defined]  # what functools.wraps sets
    return body


def _global_call(name: str, real: Callable[..., Any], note: Note,
                 active: Active) -> Callable[..., Any]:
    """A stand-in for one call on numpy's global generator (``real``, bound to it)."""
    call = f"numpy.random.{name}()"
    if name == "seed":
        def seed(*args: Any, **kwargs: Any) -> Any:
            if _seed(args, kwargs, "seed") is None:  # seeded from entropy: not the step's
                _Seeding.by = None
                note("randomness", call, behalf=True)
            else:
                _Seeding.by = active()
            return real(*args, **kwargs)
        return _wrap(real, seed)
    if name in ("set_state", "__setstate__"):
        def set_state(*args: Any, **kwargs: Any) -> Any:
            _Seeding.by = active()  # a state the step chose: what follows is determined
            return real(*args, **kwargs)
        return _wrap(real, set_state)

    def draw(*args: Any, **kwargs: Any) -> Any:
        current = active()
        if current is None or _Seeding.by is not current:
            note("randomness", call, behalf=True)
        return real(*args, **kwargs)
    return _wrap(real, draw)


#: Calls on numpy's global generator that draw nothing (its state, its description).
_READS = frozenset({"get_state", "__getstate__", "__reduce__", "__repr__", "__str__"})


def _global_generator(np_random: types.ModuleType, note: Note, active: Active) -> Any:
    """A stand-in for ``numpy.random.mtrand._rand``: a ``RandomState`` sharing the real
    one's bit generator, passing every call to the real one (whose cached normal deviate
    it would not share otherwise), noting the draws."""
    mtrand = np_random.mtrand
    real = mtrand._rand
    names = [n for n in dir(mtrand.RandomState) if not n.startswith("_")] + \
        ["__getstate__", "__setstate__", "__reduce__"]
    namespace: dict[str, Any] = {}
    for name in names:
        if name in _READS:
            namespace[name] = _reading(getattr(real, name))
        elif callable(getattr(real, name, None)):
            namespace[name] = _method(_global_call(name, getattr(real, name), note, active))
    namespace["__module__"] = mtrand.RandomState.__module__
    cls = type("RandomState", (mtrand.RandomState,), namespace)
    return cls(real._bit_generator)


def _reading(real: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return real(*args, **kwargs)
    return _wrap(real, method)


def _method(function: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)
    return _wrap(function, method)


_NUMPY_CLASSES = {
    "RandomState": "seed", "SeedSequence": "entropy", "MT19937": "seed", "PCG64": "seed",
    "PCG64DXSM": "seed", "SFC64": "seed",
}


def _numpy_stand_ins(np_random: types.ModuleType, note: Note, active: Active) -> list[StandIn]:
    out: list[StandIn] = []
    for name, seed_name in _NUMPY_CLASSES.items():
        real = getattr(np_random, name, None)
        if isinstance(real, type):
            out.append((np_random, name, real, _class_stand_in(
                _Spec(real, f"numpy.random.{name}()", _unseeded(seed_name), note))))
    philox = getattr(np_random, "Philox", None)
    if isinstance(philox, type):
        out.append((np_random, "Philox", philox, _class_stand_in(
            _Spec(philox, "numpy.random.Philox()", _philox_unseeded, note))))
    default_rng = np_random.default_rng

    def default_rng_stand_in(*args: Any, **kwargs: Any) -> Any:
        if _seed(args, kwargs, "seed") is None:
            note("randomness", "numpy.random.default_rng()", behalf=True)
        return default_rng(*args, **kwargs)

    out.append((np_random, "default_rng", default_rng,
                _wrap(default_rng, default_rng_stand_in)))
    real_global = np_random.mtrand._rand
    # The module's functions bound to the global generator (numpy.random.normal...); the
    # others (seed, ranf, sample) call it through mtrand._rand, the stand-in below.
    for name, value in list(vars(np_random).items()):
        if getattr(value, "__self__", None) is real_global and name not in _READS:
            out.append((np_random, name, value, _global_call(name, value, note, active)))
    out.append((np_random.mtrand, "_rand", real_global,
                _global_generator(np_random, note, active)))
    return out


def _numpy_random() -> types.ModuleType | None:
    """``numpy.random`` when the project imported numpy (never imports numpy itself)."""
    if "numpy" not in sys.modules:
        return None
    # numpy loads numpy.random lazily, at first use: that may be in a step, after the
    # stand-ins are in place. numpy is there already; its random part costs ~10 ms.
    import numpy.random

    return numpy.random


class _Built:
    """The stand-ins built last, reused while they stand for what the modules hold now
    (building them costs ~0.7 ms, and guards put them up for every replay)."""

    key: ClassVar[tuple[object, ...]] = ()
    stand_ins: ClassVar[list[StandIn]] = []


def generator_stand_ins(note: Note, active: Active) -> list[StandIn]:
    """(module, attribute, real object, stand-in) for the random generators to guard.

    ``note(kind, call, behalf=True)`` notes a call for the step being guarded;
    ``active()`` says which step that is (compared by identity: a step that
    seeded numpy's global generator may draw from it).
    """
    np_random = _numpy_random()
    # The global generator's stand-in shares its bit generator (set_bit_generator swaps it).
    key = (note, active, np_random,
           np_random and getattr(np_random.mtrand._rand, "_bit_generator", None))
    if _Built.key == key and all(vars(module).get(name) is real
                                 for module, name, real, _ in _Built.stand_ins):
        return _Built.stand_ins
    _Built.key, _Built.stand_ins = key, _build(note, active, np_random)
    return _Built.stand_ins


def _build(note: Note, active: Active, np_random: types.ModuleType | None) -> list[StandIn]:
    out: list[StandIn] = [
        (random, "Random", random.Random, _class_stand_in(
            _Spec(random.Random, "random.Random()", _unseeded("x"), note))),
        (random, "SystemRandom", random.SystemRandom, _class_stand_in(
            _Spec(random.SystemRandom, "random.SystemRandom()", _always, note))),
    ]
    if np_random is not None:
        out += _numpy_stand_ins(np_random, note, active)
    return out
