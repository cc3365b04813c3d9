"""``python -m pinrun``: the same as the ``pinrun`` command."""

from pinrun.cli.main import main

if __name__ == "__main__":
    main()
