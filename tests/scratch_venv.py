"""A scratch virtual environment with pinrun, where test packages are really installed.

Deployments run flows from installed packages (``pip install .`` in a Docker
image), not from a checkout: :class:`ScratchVenv` builds real wheels of a
small package and installs them with pip into a new virtual environment,
whose interpreter sees pinrun and its dependencies through a ``.pth`` file
naming the test interpreter's own site folders (nothing is downloaded).
"""

from __future__ import annotations

import base64
import hashlib
import os
import site
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Mapping
from pathlib import Path

from tests.helpers import SRC


class ScratchVenv:
    """A virtual environment in ``folder`` whose ``python`` can import pinrun."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)],
                       check=True, capture_output=True, timeout=120)
        self.python = folder / "bin" / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True, timeout=60).stdout.strip()
        self.site_packages = Path(purelib)
        # The test interpreter's site folders (pinrun, its dependencies, pip) come after
        # the venv's own, so an installed package is found in the venv first.
        folders = [*site.getsitepackages(), str(SRC)]
        (self.site_packages / "zz_pinrun_test.pth").write_text(
            "import site; " + "; ".join(f"site.addsitedir({folder!r})" for folder in folders)
            + "\n")

    def install(self, wheel: Path) -> None:
        """``pip install`` the wheel (replacing an installed version), offline."""
        subprocess.run([str(self.python), "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-index", "--force-reinstall", "--disable-pip-version-check",
                        str(wheel)], check=True, capture_output=True, timeout=300)

    def pinrun(self, cwd: Path, *args: str,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m pinrun ARGS`` with the venv's interpreter, in ``cwd``."""
        environment = {k: v for k, v in os.environ.items()
                       if k not in ("PINRUN_STORE", "PYTHONPATH", "PYTHONHASHSEED")}
        environment.update(env or {})
        return subprocess.run([str(self.python), "-m", "pinrun", *args], cwd=cwd,
                              env=environment, capture_output=True, text=True, timeout=300,
                              check=False)


def build_wheel(folder: Path, name: str, version: str, modules: Mapping[str, str]) -> Path:
    """A pure-Python wheel of distribution ``name`` holding ``modules`` (path -> source)."""
    normalized = name.replace("-", "_")
    info = f"{normalized}-{version}.dist-info"
    files = {path: textwrap.dedent(source) for path, source in modules.items()}
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    files[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: pinrun-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n")
    tops = sorted({path.split("/")[0].removesuffix(".py") for path in modules})
    files[f"{info}/top_level.txt"] = "\n".join(tops) + "\n"
    record = [f"{path},sha256={_hash(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{normalized}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
