"""The installed-distribution look-ups answer as importlib.metadata does, reading less."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from pinrun.flows import installed
from pinrun.flows.project import is_project_file, resolved_file
from pinrun.flows.requirements import _installed, _required


def _reference() -> dict[str, tuple[str, ...]]:
    return {top: tuple(dict.fromkeys(dists))
            for top, dists in importlib.metadata.packages_distributions().items()}


def _owners(dists: list[importlib.metadata.Distribution]) -> dict[str, tuple[str, ...]]:
    return {top: tuple(dict.fromkeys(installed.name_of(dist) for dist in found))
            for top, found in installed.owner_index(dists).items()}


def test_owners_are_packages_distributions_on_this_environment() -> None:
    """Every top-level name of this environment has the same owners, in the same order."""
    reference = _reference()
    assert reference  # pytest, orjson... are installed here
    assert {top: installed.top_level_owners(top) for top in reference} == reference
    assert installed.top_level_owners("no_such_top_level_module_here") == ()


def test_file_names_are_the_files_of_every_distribution() -> None:
    for dist in importlib.metadata.distributions():
        files = dist.files
        assert installed.file_names(dist) == (None if files is None
                                              else [str(file) for file in files])


def test_head_metadata_has_every_field_but_the_description() -> None:
    for dist in importlib.metadata.distributions():
        full, head = dist.metadata, installed.head_metadata(dist)
        for field in ("Name", "Version", "Summary", "Requires-Python"):
            assert head[field] == full[field]
        assert head.get_all("Requires-Dist") == full.get_all("Requires-Dist")


def test_requirements_read_from_the_header_are_the_librarys() -> None:
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        found = importlib.metadata.distribution(name)
        expected = (found.metadata["Name"] or name, found.version,
                    tuple(required for text in found.requires or ()
                          if (required := _required(text)) is not None))
        assert _installed(name) == expected


_RECORD = '''\
widget/__init__.py,sha256=abc,10
widget/deep/er/core.py,,
"widget/with,comma.py",,
./dotted_start.py,,
twice//slashes.py,,
../../bin/widget-tool,,
single_module.py,,
compiled_ext.cpython-311-x86_64-linux-gnu.so,,
.hidden.py,,
.py,,
data/only.txt,,
widget/./dotted/inside.py,,
widget/sub/,,
widget/sub/.,,
widget/a..py,,
widget/x.py.,,
widget/.hidden.py,,
../x.tar.gz,,
/absolute/place.py,,
dots.in.name/mod.py,,
widget-1.0.dist-info/METADATA,,
widget-1.0.dist-info/RECORD,,
'''


def _dist_info(site: Path, name: str, folder: str, *, top_level: str | None = None,
               record: str = _RECORD) -> None:
    info = site / folder
    info.mkdir(parents=True)
    # A description mentioning another Name: only the header's counts.
    (info / "METADATA").write_text(textwrap.dedent(f"""\
        Metadata-Version: 2.1
        Name: {name}
        Version: 1.0
        Requires-Dist: orjson
        Requires-Dist: extra-thing ; extra == "x"

        Name: not-this-one
        A long description.
        """))
    (info / "RECORD").write_text(record)
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)


def test_owners_of_made_up_distributions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared and inferred top levels, odd RECORD paths, a name spelled unlike its
    folder, two distributions sharing a top level: as packages_distributions() says."""
    site = tmp_path / "site"
    for file in ("widget/__init__.py", "widget/deep/er/core.py", "single_module.py"):
        (site / file).parent.mkdir(parents=True, exist_ok=True)
        (site / file).write_text("")
    _dist_info(site, "Widget_Thing", "widget_thing-1.0.dist-info")
    _dist_info(site, "gadget", "gadget-2.0.dist-info", top_level="gadget\nwidget\ngadget\n")
    _dist_info(site, "Empty.Record", "empty_record-1.0.dist-info", record="")
    # Not plain: quotes, so read line by line; and line ends a regular expression misses.
    _dist_info(site, "quoted", "quoted-1.0.dist-info", record='"quoted/a,b.py",,\nq.py,,\n')
    _dist_info(site, "cr-ends", "cr_ends-1.0.dist-info", record="cr/a.py,,\rcr2/b.py,,\r\n")
    # Plain: each path's first part begins a line (what a scan looks for).
    _dist_info(site, "plain", "plain-1.0.dist-info",
               record="plainpkg/__init__.py,,\nplainpkg/inner/typing.py,,\nsolo.py,,\n"
                      "../../bin/tool,,\n")
    monkeypatch.setattr(sys, "path", [str(site)])
    dists = list(importlib.metadata.distributions())
    assert len(dists) == 6
    reference = _reference()
    assert "widget" in reference
    assert _owners(dists) == reference
    # A scan over these distributions, then their index.
    try:
        for scans in (10**9, 0):
            monkeypatch.setattr(installed, "_SCANS_BEFORE_INDEX", scans)
            monkeypatch.setattr(installed, "_scans", [])
            installed._catalogue.cache_clear()
            installed._index.cache_clear()
            for top in [*reference, "wid", "nothing_here", "typing", "inner", "deep", "..",
                        "so"]:
                assert installed.top_level_owners.__wrapped__(top) == \
                    reference.get(top, ()), top
    finally:
        installed._catalogue.cache_clear()
        installed._index.cache_clear()
    for dist in dists:
        files = dist.files
        assert installed.file_names(dist) == (None if files is None
                                              else [str(file) for file in files])


def test_a_fresh_process_reads_no_whole_metadata() -> None:
    """Naming one module's owners parses no distribution's whole METADATA (a verify
    worker asks before its first replay; packages_distributions() parsed them all)."""
    script = textwrap.dedent("""\
        import importlib.metadata as md
        full = []
        original = md.Distribution.metadata.fget
        md.Distribution.metadata = property(lambda self: full.append(1) or original(self))
        from pinrun.flows.project import owners_of
        print(owners_of("pytest"), len(full))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["('pytest',)", "0"]


def test_resolved_file_is_resolve(tmp_path: Path) -> None:
    """Through a folder's cached answer, a file resolves as Path.resolve() resolves it:
    loaded modules' files, links to a folder and to a file, a missing file, ``..``."""
    real = tmp_path / "real"
    (real / "pkg").mkdir(parents=True)
    (real / "pkg" / "mod.py").write_text("")
    (real / "other.py").write_text("")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    (real / "pkg" / "alias.py").symlink_to(real / "other.py")
    paths = [str(tmp_path / "linked" / "pkg" / "mod.py"), str(tmp_path / "linked" / "pkg"
             / "alias.py"), str(tmp_path / "linked" / "missing.py"),
             str(tmp_path / "linked" / "pkg" / ".." / "other.py"), str(tmp_path / "linked/"),
             str(tmp_path / "linked" / "pkg" / ".."), "/", "relative/file.py"]
    paths += [file for module in list(sys.modules.values())
              if isinstance(file := getattr(module, "__file__", None), str)]
    for path in paths:
        assert resolved_file(path) == Path(path).resolve(), path


def test_a_file_is_the_projects_as_its_resolved_path_says(tmp_path: Path) -> None:
    """is_project_file answers as Path.is_relative_to of the resolved paths (outside
    site-packages): a sibling folder whose name begins with the root's is not the root,
    a link from outside into the root is inside, one from inside to outside is not."""
    root, sibling, outside = tmp_path / "shop", tmp_path / "shop-old", tmp_path / "elsewhere"
    for folder in (root / "pkg", sibling, outside):
        folder.mkdir(parents=True)
    for file in (root / "pkg" / "a.py", sibling / "b.py", outside / "c.py"):
        file.write_text("")
    (outside / "into.py").symlink_to(root / "pkg" / "a.py")
    (root / "pkg" / "out.py").symlink_to(outside / "c.py")
    (tmp_path / "shop-link").symlink_to(root, target_is_directory=True)
    cases = {root / "pkg" / "a.py": True, sibling / "b.py": False, outside / "c.py": False,
             outside / "into.py": True, root / "pkg" / "out.py": False,
             tmp_path / "shop-link" / "pkg" / "a.py": True}
    for file, inside in cases.items():
        assert Path(file).resolve().is_relative_to(root.resolve()) == inside, file
        assert is_project_file(str(file), root) == inside, file
        assert is_project_file(str(file), tmp_path / "shop-link") == inside, file


def test_a_loaded_modules_file_is_the_projects_as_resolve_says(tmp_path: Path) -> None:
    """The answer for a plain absolute path (made as text, without a Path: a fresh
    worker asks for every loaded module) is the one from the resolved path, for odd paths
    and links too, under several roots (the filesystem's own among them)."""
    real = tmp_path / "real"
    (real / "pkg").mkdir(parents=True)
    (real / "pkg" / "mod.py").write_text("")
    (real / "other.py").write_text("")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    (real / "pkg" / "alias.py").symlink_to(real / "other.py")
    (tmp_path / "into.py").symlink_to(real / "pkg" / "mod.py")
    paths = [str(tmp_path / "linked" / "pkg" / "mod.py"), str(tmp_path / "into.py"),
             str(tmp_path / "linked" / "pkg" / "alias.py"), str(real / "missing.py"),
             str(tmp_path / "linked" / "pkg" / ".." / "other.py"), f"{real}/./other.py",
             f"{real}//other.py", f"{real}/pkg/", f"{real}/pkg/..", "/", "//x.py",
             str(real) + "x.py", "relative/file.py"]
    paths += [file for module in list(sys.modules.values())
              if isinstance(file := getattr(module, "__file__", None), str)]
    for root in (real, tmp_path / "linked", tmp_path, real / "pkg", Path("/"),
                 Path(sys.prefix)):
        for path in paths:
            resolved = Path(path).resolve()
            expected = resolved.is_relative_to(root.resolve()) and not any(
                part in ("site-packages", "dist-packages") for part in resolved.parts) and \
                not any(resolved.is_relative_to(Path(place).resolve()) for key, place in
                        sysconfig.get_paths().items()
                        if key in ("stdlib", "platstdlib", "purelib", "platlib"))
            assert is_project_file(path, root) == expected, (path, root)


def test_owners_found_by_a_scan_are_packages_distributions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A name answered by a scan of the distributions (the first few a process asks
    about, before the index is made) has the same owners, in the same order."""
    monkeypatch.setattr(installed, "_SCANS_BEFORE_INDEX", 10**9)
    monkeypatch.setattr(installed, "_scans", [])
    reference = _reference()
    for top in [*reference, "no_such_top_level_module_here", "pytest_", "est"]:
        assert installed.top_level_owners.__wrapped__(top) == reference.get(top, ()), top
    assert len(installed._scans) == len(reference) + 3


def test_a_fresh_process_infers_nothing_for_a_name_no_record_holds() -> None:
    """Asking a fresh process about a module no distribution lists (a project's) reads
    no RECORD line by line (a verify worker asks before its first replay)."""
    script = textwrap.dedent("""\
        from pinrun.flows import installed
        inferred = []
        original = installed._inferred
        installed._inferred = lambda dist: inferred.append(1) or original(dist)
        from pinrun.flows.project import owners_of
        print(owners_of("no_such_top_level_module_here"), len(inferred))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["()", "0"]
