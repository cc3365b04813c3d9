"""Build the optional C speedups (the codec's, and the world's audit gate); everything
else is configured in pyproject.toml.

``optional=True``: where no C compiler is available the build goes on without
them and pinrun uses its pure-Python code instead (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pinrun.artifacts._speedups",
            ["src/pinrun/artifacts/_speedups.c", "src/pinrun/artifacts/_seen.c"],
            depends=["src/pinrun/artifacts/_seen.h"],
            optional=True,
        ),
        Extension(
            "pinrun.world._speedups",
            ["src/pinrun/world/_speedups.c", "src/pinrun/world/_walk.c"],
            depends=["src/pinrun/world/_walk.h"],
            optional=True,
        ),
    ]
)
