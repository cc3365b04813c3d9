"""Random generators: the seeded ones are the step's own, the unseeded ones read the world.

A generator built with a seed (``random.Random(7)``,
``numpy.random.default_rng(42)``, ``numpy.random.RandomState(3)``) gives the
same numbers on every run: it is never noted. One built without a seed
seeds itself from the operating system's entropy, and so does every draw
from numpy's global generator (``numpy.random.normal()``) unless the step
seeded it first (``numpy.random.seed(3)`` in the same step). The stand-ins
here note those (:func:`pinrun.world.stand_ins.note`) at the nearest frame of
the project's code: also when a library made the call on the step's behalf
(scikit-learn's ``random_state=None`` draws from numpy's global generator).

Classes are never stood in for: another class in ``random.Random``'s or
``numpy.random.RandomState``'s place would change what ``type(x) is
RandomState`` says, what a class the step derives from them is, and what
pickles; a step must get exactly what it gets unguarded. Instead:

- ``random.Random`` seeds itself in its ``seed`` method (Python code, called
  by its constructor): the class's method is wrapped, and notes a seeding
  without a seed.
- numpy's generators without a seed draw their entropy through one name,
  ``numpy.random.bit_generator.randbits``, called from C with no Python frame
  between it and the line that built the generator; a seeded
  ``RandomState(3)`` draws it too (its first state is thrown away by the
  seeding). So the wrapper in that name looks at the call being made at that
  line: a constructor called with no arguments is unseeded and noted, one
  called with an argument is taken as seeded. (``RandomState(None)``
  written out is taken as seeded; ``default_rng(None)`` has a stand-in of its
  own that reads its argument.)
- numpy's global generator: its module functions (``numpy.random.normal``,
  bound methods of ``numpy.random.mtrand._rand``) have stand-ins, and
  ``mtrand._rand`` itself, what scikit-learn's ``check_random_state(None)``
  returns, is stood in for while guarded by a ``RandomState`` that shares the
  real one's bit generator and passes every call to the real one (so
  ``type(mtrand._rand) is RandomState`` does not hold inside a guarded step).
  numpy is touched only when the project imported it.
"""

from __future__ import annotations

import dis
import functools
import inspect
import random
import secrets
import sys
import types
from collections.abc import Callable
from typing import Any, ClassVar

from pinrun.world.stand_ins import active_watch as active
from pinrun.world.stand_ins import note

__all__ = ["generator_stand_ins"]

StandIn = tuple[Any, str, Any, Any]


def _seed(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
    """The seed a constructor was given (its first argument), or None."""
    return args[0] if args else kwargs.get(name)


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


def _global_call(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in for one call on numpy's global generator (``real``, bound to it)."""
    call = f"numpy.random.{name}()"
    if name == "seed":
        def seed(*args: Any, **kwargs: Any) -> Any:
            if _seed(args, kwargs, "seed") is None:  # seeded from entropy: not the step's
                _Seeding.by = None
                note("randomness", call)
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
            note("randomness", call)
        return real(*args, **kwargs)
    return _wrap(real, draw)


#: Calls on numpy's global generator that draw nothing (its state, its description).
_READS = frozenset({"get_state", "__getstate__", "__reduce__", "__repr__", "__str__"})


def _global_generator(np_random: types.ModuleType) -> Any:
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
            namespace[name] = _method(_global_call(name, getattr(real, name)))
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


def _numpy_stand_ins(np_random: types.ModuleType) -> list[StandIn]:
    out: list[StandIn] = []
    entropy = getattr(np_random, "bit_generator", None)
    real_randbits = vars(entropy).get("randbits") if entropy is not None else None
    if real_randbits is not None:
        # numpy imported while the guards were up holds secrets' stand-in: call through it.
        through = inspect.unwrap(real_randbits)
        out.append((entropy, "randbits", real_randbits,
                    _wrap(through, _entropy_stand_in(through))))
    default_rng = np_random.default_rng

    def default_rng_stand_in(*args: Any, **kwargs: Any) -> Any:
        if _seed(args, kwargs, "seed") is None:
            note("randomness", "numpy.random.default_rng()")
        return default_rng(*args, **kwargs)

    out.append((np_random, "default_rng", default_rng,
                _wrap(default_rng, default_rng_stand_in)))
    real_global = np_random.mtrand._rand
    # The module's functions bound to the global generator (numpy.random.normal...); the
    # others (seed, ranf, sample) call it through mtrand._rand, the stand-in below.
    for name, value in list(vars(np_random).items()):
        if getattr(value, "__self__", None) is real_global and name not in _READS:
            out.append((np_random, name, value, _global_call(name, value)))
    stand_in = _global_generator(np_random)
    out.append((np_random.mtrand, "_rand", real_global, stand_in))
    set_bit_generator = getattr(np_random, "set_bit_generator", None)
    if set_bit_generator is not None:
        out.append((np_random, "set_bit_generator", set_bit_generator, _wrap(
            set_bit_generator, _setting_bit_generator(np_random.mtrand, set_bit_generator,
                                                      real_global, stand_in))))
    return out


def _entropy_stand_in(real: Callable[..., Any]) -> Callable[..., Any]:
    """numpy's entropy draw for a generator built without a seed (see the module's
    docstring): noted when the project's own line built it with a bare call."""
    def randbits(*args: Any, **kwargs: Any) -> Any:
        _judge_entropy(sys._getframe(1))
        return real(*args, **kwargs)
    return randbits


def _judge_entropy(caller: types.FrameType) -> None:
    """An entropy draw made from C for a generator being built, ``caller`` being the
    nearest Python frame: noted when that frame is the project's own, calling a
    constructor with no arguments. Anywhere else (numpy's own Python code unpickling or
    jumping a generator, ``copy``, ``pickle``) it is a library's setup, whose state is
    then set: not the step's."""
    watch: Any = active()
    if watch is None or caller.f_code.co_filename not in watch.files:
        return
    built = _called_bare(caller)
    # A generator's own class, called bare; not a method that builds one to set its
    # state (PCG64(3).jumped()), nor a name the step gave a partial.
    if built in _NUMPY_BUILDERS:
        note("randomness", f"numpy.random.{built}()")


#: What the project calls to build a numpy generator (a bare call to one is unseeded).
_NUMPY_BUILDERS = frozenset({"RandomState", "SeedSequence", "MT19937", "PCG64", "PCG64DXSM",
                             "SFC64", "Philox", "Generator", "default_rng"})


def _called_bare(frame: types.FrameType) -> str | None:
    """The name of what the frame is calling now, when it calls it with no arguments
    (``""``: a name it cannot tell); None when it passes arguments, or calls nothing."""
    code = frame.f_code
    instructions = _instructions(code)
    at = next((index for index, found in enumerate(instructions)
               if found.offset == frame.f_lasti), None)
    if at is None or instructions[at].opname != "CALL" or instructions[at].arg != 0:
        return None  # arguments (a seed), *args, or not a plain call
    for earlier in reversed(instructions[max(at - 3, 0):at]):
        if earlier.opname == "KW_NAMES":
            return None
        if earlier.opname in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME",
                              "LOAD_FAST", "LOAD_DEREF"):
            return str(earlier.argval)
    return ""


@functools.lru_cache(maxsize=256)
def _instructions(code: types.CodeType) -> list[dis.Instruction]:
    # Owner-free: keyed by the code object itself, only ever read.
    return list(dis.get_instructions(code))


def _setting_bit_generator(mtrand: types.ModuleType, real: Callable[..., Any],
                           real_global: Any, stand_in: Any) -> Callable[..., Any]:
    """``numpy.random.set_bit_generator`` while guarded: it sets the global generator's
    bit generator through ``mtrand._rand``, the stand-in now; the real one (whose bound
    methods the module functions are) must get it too. A bit generator the step chose
    seeds what follows."""
    def set_bit_generator(*args: Any, **kwargs: Any) -> Any:
        namespace = vars(mtrand)
        namespace["_rand"] = real_global
        try:
            real(*args, **kwargs)
        finally:
            namespace["_rand"] = stand_in
        _Seeding.by = active()
        return real(*args, **kwargs)
    return set_bit_generator


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


def generators_key() -> tuple[object, ...]:
    """What the generators' stand-ins are built for: numpy's random module, if loaded (the
    project may import it between two replays), and its global generator's bit
    generator, which the global generator's stand-in shares (``set_bit_generator``
    swaps it)."""
    np_random = _numpy_random()
    return (np_random,
            np_random and getattr(np_random.mtrand._rand, "_bit_generator", None))


def generator_stand_ins() -> list[StandIn]:
    """(module, attribute, real object, stand-in) for the random generators to guard.

    They note through :func:`pinrun.world.stand_ins.note`; which step is guarded
    (:func:`~pinrun.world.stand_ins.active_watch`, compared by identity) says
    whether it seeded numpy's global generator itself.
    """
    np_random = _numpy_random()
    key = generators_key()
    if _Built.key == key and all(vars(module).get(name) is real
                                 for module, name, real, _ in _Built.stand_ins):
        return _Built.stand_ins
    _Built.key, _Built.stand_ins = key, _build(np_random)
    return _Built.stand_ins


def _judge_seeding(frame: types.FrameType | None,
                   made: type) -> None:
    """``random.Random``'s seeding without a seed: noted when, past the random module's own
    frames (its constructor), the project's line makes a bare call (``random.Random()``,
    ``rng.seed()``); ``copy`` and ``pickle`` rebuilding a seeded one are not the step's."""
    while frame is not None and frame.f_code.co_filename == random.__file__:
        frame = frame.f_back
    watch: Any = active()
    if frame is None or watch is None or frame.f_code.co_filename not in watch.files:
        return
    built = _called_bare(frame)
    if built == "seed":  # rng.seed(): reseeded from entropy
        note("randomness", "random.Random().seed()")
    elif built is not None and built in (made.__name__, "Random"):
        note("randomness", "random.Random()")


def _build(np_random: types.ModuleType | None) -> list[StandIn]:
    real_seed = vars(random.Random)["seed"]

    def seed(self: random.Random, a: Any = None, *args: Any, **kwargs: Any) -> Any:
        if a is None:  # seeded from the operating system's entropy (random.Random())
            _judge_seeding(sys._getframe(1), type(self))
        return real_seed(self, a, *args, **kwargs)

    real_randbits = vars(secrets)["randbits"]

    def randbits(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        if "randbits" in caller.f_code.co_names:  # called by name: secrets.randbits(8)
            note("randomness", "secrets.randbits()")
        else:  # from C, no Python frame between: a numpy generator imported under guards
            _judge_entropy(caller)
        return real_randbits(*args, **kwargs)

    out: list[StandIn] = [(random.Random, "seed", real_seed, _wrap(real_seed, seed)),
                          (secrets, "randbits", real_randbits, _wrap(real_randbits, randbits))]
    if np_random is not None:
        out += _numpy_stand_ins(np_random)
    return out
