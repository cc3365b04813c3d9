"""The ``pinrun`` console script's entry point, apart from the command line itself.

A console script is a small file that imports its entry point and calls it
under ``if __name__ == "__main__"``. ``pinrun verify -j N`` starts its
workers with :mod:`multiprocessing`'s spawn, which runs the parent's main
file again in each worker (as ``__mp_main__``, where the call is skipped):
the script imports this module there, not :mod:`pinrun.cli.main`, so a
worker does not load click and every command (about 57 M instructions, a
twelfth of a worker's start).
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Run the ``pinrun`` command line (:func:`pinrun.cli.main.main`)."""
    from pinrun.cli.main import main as command_line

    command_line()
