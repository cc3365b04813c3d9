"""What a perturbed child installs (world/variations.py), and the kinds --perturb takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pinrun.errors import InputError
from pinrun.verifier.perturb import PERTURBATIONS, check_kinds, expand_kinds
from tests.helpers import SRC

#: In a fresh interpreter: each listing API's order, then under the variations.
CHILD = """
import glob, json, os, pathlib, platform, socket, sys
from pinrun.world.variations import apply

folder = sys.argv[1]

def listings():
    with os.scandir(folder) as found:
        scanned = [entry.name for entry in found]
    return {
        "listdir": os.listdir(folder), "scandir": scanned,
        "walk": next(os.walk(folder))[2],
        "glob": [os.path.basename(p) for p in glob.glob(os.path.join(folder, "*"))],
        "iglob": [os.path.basename(p) for p in glob.iglob(os.path.join(folder, "*"))],
        "iterdir": [p.name for p in pathlib.Path(folder).iterdir()],
        "path_glob": [p.name for p in pathlib.Path(folder).glob("*")],
        "rglob": [p.name for p in pathlib.Path(folder).rglob("*")],
    }

before = listings()
apply("fileorder", "")
after = listings()
platform.node()  # platform caches: the variation must answer anyway
apply("hostname", "elsewhere.invalid")
apply("umask", "0077")
apply("cwd", sys.argv[2])
made = pathlib.Path("made.txt")
made.write_text("x")
import probe_module  # imported from where the child started, before it moved
print(json.dumps({
    "before": before, "after": after,
    "hosts": [socket.gethostname(), platform.node(), platform.uname().node,
              os.uname().nodename],
    "mode": oct(made.stat().st_mode & 0o777), "cwd": os.getcwd(),
    "module": probe_module.NAME,
}))
"""


def test_the_child_variations_change_what_they_name(tmp_path: Path) -> None:
    """fileorder reverses every listing API, hostname renames the host for every API,
    umask and cwd change the process, and modules still import after it moves."""
    folder, elsewhere, start = tmp_path / "listed", tmp_path / "elsewhere", tmp_path / "start"
    for made in (folder, elsewhere, start):
        made.mkdir()
    for name in ("d", "b", "e", "a", "c"):
        (folder / name).write_text(name)
    (start / "probe_module.py").write_text("NAME = 'probe'\n")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(folder), str(elsewhere)],
        cwd=start, env={**os.environ, "PYTHONPATH": str(SRC)}, capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for api, names in found["before"].items():
        assert sorted(names) == list("abcde"), api
        assert found["after"][api] == names[::-1], api
    assert found["hosts"] == ["elsewhere.invalid"] * 4
    assert found["mode"] == "0o600"
    assert found["cwd"] == str(elsewhere)
    assert found["module"] == "probe"


def test_all_stands_for_every_kind_each_once() -> None:
    """`all` expands to every kind in order; a kind named twice runs once."""
    assert expand_kinds(["all"]) == list(PERTURBATIONS)
    assert expand_kinds(["umask", "all", "umask"]) == [
        "umask", *(kind for kind in PERTURBATIONS if kind != "umask")]
    assert expand_kinds(["fileorder", "hostname"]) == ["fileorder", "hostname"]
    check_kinds(["all", "home", "cwd"])


def test_an_unknown_kind_is_refused_with_the_choices() -> None:
    """An unknown kind is bad input naming every kind and `all`."""
    with pytest.raises(InputError) as raised:
        check_kinds(["home", "moon"])
    assert "--perturb 'moon': choose among hashseed, tz, locale, home, umask, cwd, fileorder, " \
        "hostname (comma-separated), or all" in str(raised.value)


def test_the_next_hash_seed_wraps_around() -> None:
    """The hash seed a perturbation tries is the recorded one plus one, within the range
    Python accepts: 4294967295 is followed by 0."""
    from pinrun.verifier.perturb import _variation

    assert _variation("hashseed", {"hash_seed": "4294967295"}, None).environment == {
        "PYTHONHASHSEED": "0"}
    assert _variation("hashseed", {"hash_seed": "41"}, None).environment == {
        "PYTHONHASHSEED": "42"}
