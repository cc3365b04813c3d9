"""Guards and random generators: seeded ones are never flagged, unseeded ones are named.

In process, on real modules: a project module written to disk and a small
library outside the project (doing what scikit-learn's
``check_random_state`` does), guarded as a replay guards them.
"""

from __future__ import annotations

import inspect
import pickle
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pinrun.errors import NondeterminismError
from pinrun.world.guards import GuardedCall, GuardMode, Guards
from tests.helpers import Project, run_child

# A library outside the project: what sklearn.utils.check_random_state does, and a
# library function drawing from numpy's global generator on its caller's behalf.
LIBRARY = '''\
import numbers

import numpy as np


def check_random_state(seed):
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(seed)


def fit(values, random_state=None):
    rng = check_random_state(random_state)
    return [values[i] for i in rng.permutation(len(values))]


def jitter(values):
    return (np.asarray(values) + np.random.uniform(size=len(values))).tolist()
'''

# Each unseeded case is a one-line function: its call is on the line after its def.
STEPS = '''\
import random

import numpy as np
import pandas as pd
from numpy.random import default_rng

import genlib_outside


def seeded():
    a = np.random.RandomState(3).normal(size=3).tolist()
    b = np.random.default_rng(3).normal(size=3).tolist()
    c = default_rng(seed=3).integers(0, 100, size=3).tolist()
    d = random.Random(3).random()
    np.random.seed(3)
    e = [np.random.normal(), np.random.rand(2).tolist(), int(np.random.randint(100)),
         np.random.permutation(5).tolist(), np.random.ranf()]
    f = np.random.Generator(np.random.PCG64(3)).normal()
    g = int(np.random.SeedSequence(3).generate_state(1)[0])
    h = genlib_outside.fit(list(range(6)), random_state=3)
    i = np.random.Generator(np.random.Philox(key=7)).normal()
    j = pd.DataFrame({"a": range(9)}).sample(frac=1.0, random_state=3)["a"].tolist()
    return [a, b, c, d, e, f, g, h, i, j]


def random_instance():
    return random.Random().random()


def random_none():
    return random.Random(None).random()


def system_random():
    return random.SystemRandom().random()


def global_normal():
    return np.random.normal()


def global_rand():
    return np.random.rand(3).tolist()


def global_shuffle():
    return np.random.shuffle(items := list(range(9))) or items


def global_reseed():
    return np.random.seed()


def default_unseeded():
    return np.random.default_rng().normal()


def default_none():
    return default_rng(None).normal()


def random_state():
    return np.random.RandomState().normal()


def bit_generator():
    return np.random.Generator(np.random.PCG64()).normal()


def seed_sequence():
    return np.random.SeedSequence().entropy


def library_global():
    return genlib_outside.fit(list(range(9)))


def library_function():
    return genlib_outside.jitter([1.0, 2.0])


def pandas_sample():
    return pd.DataFrame({"a": range(9)}).sample(frac=1.0)["a"].tolist()
'''

UNSEEDED = [
    ("random_instance", "random.Random()"),
    ("system_random", "random.SystemRandom().random()"), ("global_normal", "numpy.random.normal()"),
    ("global_rand", "numpy.random.rand()"), ("global_shuffle", "numpy.random.shuffle()"),
    ("global_reseed", "numpy.random.seed()"),
    ("default_unseeded", "numpy.random.default_rng()"),
    ("default_none", "numpy.random.default_rng()"),
    ("random_state", "numpy.random.RandomState()"), ("bit_generator", "numpy.random.PCG64()"),
    ("seed_sequence", "numpy.random.SeedSequence()"),
    ("library_global", "numpy.random.permutation()"),
    ("library_function", "numpy.random.uniform()"),
    ("pandas_sample", "numpy.random.choice()"),  # pandas draws from the global generator
]


@pytest.fixture
def steps(project: Project, tmp_path: Path) -> Iterator[ModuleType]:
    """The project's module of steps, importing a library that lives outside the project."""
    library = tmp_path / "site"
    library.mkdir()
    (library / "genlib_outside.py").write_text(LIBRARY)
    sys.path.insert(0, str(library))
    project.write("gens", STEPS)
    try:
        project.load("gens", "seeded")
        yield sys.modules[f"{project.package}.gens"]
    finally:
        sys.modules.pop("genlib_outside", None)
        sys.path.remove(str(library))


@pytest.mark.parametrize("mode", ["warn", "strict"])
def test_seeded_generators_are_never_flagged(steps: ModuleType, mode: GuardMode) -> None:
    """Seeded generators (numpy's RandomState(3), default_rng(3), np.random.seed(3) then
    global draws, a library given random_state=3; random.Random(3)) note nothing, even
    strict, and give exactly what they give unguarded."""
    unguarded = steps.seeded()
    with Guards([steps], mode) as guards, guards.step() as calls:
        guarded = steps.seeded()
    assert calls == []
    assert guarded == unguarded


@pytest.mark.parametrize(("function", "call"), UNSEEDED, ids=[c[0] for c in UNSEEDED])
def test_unseeded_generators_are_named_at_the_projects_line(
        steps: ModuleType, function: str, call: str) -> None:
    """Each unseeded kind is noted once, as written, at the project's line (also when a
    library draws from numpy's global generator for it); strict refuses it there."""
    code = getattr(steps, function)
    line = inspect.getsourcelines(code)[1] + 1
    with Guards([steps], "warn") as guards, guards.step() as calls:
        code()
    assert calls == [GuardedCall("randomness", call, steps.__file__, line)]
    with Guards([steps], "strict") as guards, guards.step(), \
            pytest.raises(NondeterminismError, match=rf"{re.escape(call)}.*gens.py:{line}"):
        code()


def test_seeding_counts_only_in_the_step_that_seeded(steps: ModuleType) -> None:
    """np.random.seed(3) in one step does not make the next step's global draws its own."""
    with Guards([steps], "warn") as guards:
        with guards.step() as first:
            np.random.seed(3)
            steps.global_normal()
        with guards.step() as second:
            steps.global_normal()
    assert first == []
    assert [call.call for call in second] == ["numpy.random.normal()"]


def test_stand_ins_keep_the_real_classes(steps: ModuleType) -> None:
    """Under guards the classes are the real ones: type() is, subclassing and pickling
    answer as unguarded; the global generator set through set_bit_generator draws from
    that bit generator; everything is put back afterwards."""
    real = (random.Random, np.random.RandomState, np.random.PCG64, np.random.default_rng,
            np.random.normal, np.random.mtrand._rand)
    before = np.random.RandomState(1)
    original = np.random.mtrand._rand._bit_generator  # put back at the end
    with Guards([steps], "warn") as guards, guards.step() as calls:
        assert np.random.RandomState is real[1]
        assert type(np.random.RandomState(2)) is np.random.RandomState
        assert type(random.Random(2)) is random.Random
        assert type(random.Random) is type

        class Mine(random.Random):
            pass

        assert type(Mine) is type
        assert Mine.__mro__ == (Mine, random.Random, *random.Random.__mro__[1:])
        assert pickle.loads(pickle.dumps(np.random.RandomState)) is np.random.RandomState
        assert isinstance(before, np.random.RandomState)
        assert isinstance(np.random.mtrand._rand, real[1])
        vars(np.random)["set_bit_generator"](np.random.PCG64(5))
        chosen = np.random.normal()
    assert calls == []  # a bit generator the step chose seeds what follows
    vars(np.random)["set_bit_generator"](np.random.PCG64(5))
    assert np.random.normal() == chosen
    vars(np.random)["set_bit_generator"](original)
    assert (random.Random, np.random.RandomState, np.random.PCG64, np.random.default_rng,
            np.random.normal, np.random.mtrand._rand) == real


def test_guards_never_import_numpy_for_a_project_without_it() -> None:
    """A process whose project did not import numpy still has no numpy after guarding."""
    done = run_child("""
        import sys, types
        from pinrun.world.guards import Guards
        module = types.ModuleType("plain")
        with Guards([module], "strict") as guards, guards.step():
            pass
        print("numpy" in sys.modules)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"



def _seeded_apart_in_child(prelude: str) -> list[str]:
    """In a fresh interpreter, after ``prelude``: a project module whose ``seeded`` builds
    RandomState(3) and ``unseeded`` RandomState() (each importing numpy, maybe for the
    first time), each called in a guarded step: the calls noted, as printed lines."""
    done = run_child(prelude + """
        import types
        from pinrun.world.guards import Guards
        module = types.ModuleType("proj")
        module.__file__ = "<proj>"
        exec(compile("def seeded():\\n    import numpy as np\\n"
                     "    return np.random.RandomState(3).random_sample()\\n"
                     "def unseeded():\\n    import numpy as np\\n"
                     "    return np.random.RandomState().random_sample()\\n",
                     "<proj>", "exec"), vars(module))
        with Guards([module], "strict") as guards:
            for _ in range(2):
                with guards.step() as calls:
                    module.seeded()
                print("seeded", calls)
        with Guards([module], "warn") as guards:
            with guards.step() as calls:
                module.unseeded()
            print("unseeded", [call.call for call in calls])
    """)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


SEEDED_APART = ["seeded []", "seeded []", "unseeded ['numpy.random.RandomState()']"]


def test_stand_ins_kept_for_good_still_tell_seeded_numpy_apart() -> None:
    """In a verify worker the stand-ins stay up for good (keep_stand_ins); numpy imported
    afterwards, as a project's import does, binds secrets' stand-in, yet a seeded
    RandomState(3) is still not flagged under strict guards and an unseeded one is."""
    assert _seeded_apart_in_child("""
        from pinrun.world.guards import keep_stand_ins
        keep_stand_ins()
        import numpy
    """) == SEEDED_APART

COPIED = '''\
import copy
import pickle
import random

import numpy as np


def copies():
    a = copy.deepcopy(random.Random(3)).random()
    b = pickle.loads(pickle.dumps(random.Random(4))).random()
    c = copy.deepcopy(np.random.default_rng(5)).random()
    d = pickle.loads(pickle.dumps(np.random.RandomState(6))).random_sample()
    e = np.random.Generator(np.random.PCG64(3).jumped()).random()
    return [a, b, c, d, e]
'''


@pytest.mark.parametrize("mode", ["warn", "strict"])
def test_copied_pickled_and_jumped_seeded_generators_are_not_flagged(
        project: Project, mode: GuardMode) -> None:
    """Rebuilding a seeded generator (deepcopy, pickle, jumped) builds an unseeded one
    inside the library and then sets its state: not the step's, never noted."""
    project.write("copied", COPIED)
    project.load("copied", "copies")
    module = sys.modules[f"{project.package}.copied"]
    unguarded = module.copies()
    with Guards([module], mode) as guards, guards.step() as calls:
        guarded = module.copies()
    assert calls == []
    assert guarded == unguarded


def test_numpy_first_imported_inside_a_step_tells_seeded_apart() -> None:
    """numpy imported for the first time inside a guarded step (it then holds secrets'
    stand-in): a seeded RandomState(3) is not flagged under strict guards, in that step
    and the next; an unseeded one is named."""
    assert _seeded_apart_in_child("""
        import sys
        assert "numpy" not in sys.modules
    """) == SEEDED_APART
