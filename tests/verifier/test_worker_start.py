"""What a fresh verify worker imports before its first replay: only what a replay needs.

Each ``verify`` worker is a fresh interpreter, and its start is paid once per
worker before any run is replayed: with two workers, it is what keeps ``-j 2``
from halving ``-j 1``'s time.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_fresh_worker_imports_no_asyncio_and_no_remote_package() -> None:
    """Plain steps need no event loop, and a workdir replay no remote (pinned code
    imports the signature check where it checks)."""
    script = textwrap.dedent("""\
        import sys
        import pinrun, pinrun.verifier.worker
        from pinrun.engine.loops import in_event_loop
        print(in_event_loop(), "asyncio" in sys.modules,
              any(name.startswith("pinrun.remote") for name in sys.modules))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "False", "False"]


def test_a_fresh_worker_imports_neither_file_inputs_nor_the_code_keeper() -> None:
    """What only a step that read files (the recorded inputs) or pinned code (the
    keeper of its modules) uses is imported when first used."""
    script = textwrap.dedent("""\
        import sys
        import pinrun, pinrun.verifier.worker
        print(*(name in sys.modules for name in ("pinrun.world.file_inputs",
                                                 "pinrun.verifier.kept_code",
                                                 "pinrun.world.code_state")))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "False", "False"]


def test_a_fresh_worker_imports_no_toml_parser_and_no_environment_reader() -> None:
    """The TOML parser reads a project's pyproject.toml, when there is one, and the
    environment's readers explain a diverged run: each is imported when first used."""
    script = textwrap.dedent("""\
        import sys
        import pinrun, pinrun.verifier.worker
        print("tomllib" in sys.modules, "pinrun.flows.environment" in sys.modules)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "False"]


def test_a_fresh_worker_imports_no_diff_maker_and_no_fractions() -> None:
    """difflib makes the diffs of a diverged run's values and code, and no value can be a
    Fraction before fractions is imported: each is imported when first used."""
    script = textwrap.dedent("""\
        import sys
        import pinrun, pinrun.verifier.worker
        print("difflib" in sys.modules, "fractions" in sys.modules)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "False"]
