"""The environment a run records: each field, how two differ, and records older than them."""

from __future__ import annotations

import locale
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy  # imported, so numpy's BLAS can be read (nothing imports it)
import pytest

from pinrun.artifacts import shapes
from pinrun.artifacts.digest import Kind
from pinrun.errors import InputError
from pinrun.flows.environment import (
    environment,
    environment_changes,
    hash_seed_state,
    locale_state,
    time_zone,
)
from pinrun.flows.requirements import _required
from tests.helpers import SRC

#: What a pinrun before time zones, locales and the dependency closure recorded.
OLD_ENV: dict[str, Any] = {"python": platform.python_version(),
                           "implementation": sys.implementation.name,
                           "platform": f"{sys.platform}-{platform.machine()}",
                           "hash_seed": None, "distributions": {"pandas": "2.1.0"}}


def _child(code: str, *flags: str, **environ: str | None) -> str:
    """Run ``code`` in a fresh interpreter (after ``flags``) with ``environ`` changed."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for key, value in environ.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


# ------------------------------------------------------------------ time zone

@pytest.mark.parametrize(("tz", "key"), [
    ("Asia/Tokyo", "Asia/Tokyo"), (":Europe/Paris", "Europe/Paris"),
    ("/usr/share/zoneinfo/America/New_York", "America/New_York"), ("Etc/UTC", "UTC"),
    ("UTC", "UTC"), ("", "UTC"), ("EST5EDT", "EST5EDT"), (":", "UTC"), ("GMT", "UTC"),
    ("UTC0", "UTC"), ("Etc/GMT+0", "UTC"), ("right/UTC", "UTC"),
    ("posix/Asia/Tokyo", "Asia/Tokyo")])
def test_the_time_zone_is_tz_as_an_iana_key(tz: str, key: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """$TZ is recorded as its IANA key (a zoneinfo path or a ':' prefix removed; UTC's names
    as UTC); read each time, so a change shows."""
    monkeypatch.setenv("TZ", tz)
    assert time_zone() == key


def test_without_tz_the_zone_is_the_localtime_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $TZ, /etc/localtime's zoneinfo key (else the C library's names) is recorded."""
    monkeypatch.delenv("TZ", raising=False)
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        expected = "/".join(dict.fromkeys(__import__("time").tzname))
    else:
        expected = target.rpartition("zoneinfo/")[2]
    found = time_zone()
    assert found == ("UTC" if expected in ("Etc/UTC", "UTC", "Etc/Universal") else expected)
    assert environment([])["timezone"] == found
    # TZ naming the same file by path is the same zone (no drift between the two).
    monkeypatch.setenv("TZ", ":/etc/localtime")
    assert time_zone() == found


def test_a_zone_file_linked_again_is_seen(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """The zone a link names is worked out once per link target: pointing the link at
    another zone shows in the next record."""
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Asia/Tokyo")
    monkeypatch.setenv("TZ", f":{link}")
    assert time_zone() == "Asia/Tokyo"
    assert time_zone() == "Asia/Tokyo"
    link.unlink()
    link.symlink_to("/usr/share/zoneinfo/Europe/Paris")
    assert time_zone() == "Europe/Paris"


# --------------------------------------------------------------------- locale

def test_the_locale_is_each_category_as_set_now() -> None:
    """Every category Python reads, as setlocale reports it (unchanged), and the encoding;
    a category set later shows in the next record."""
    before = locale_state()
    assert set(before) == {"LC_CTYPE", "LC_COLLATE", "LC_TIME", "LC_NUMERIC", "LC_MONETARY",
                           "LC_MESSAGES", "encoding"}
    assert before["LC_NUMERIC"] == locale.setlocale(locale.LC_NUMERIC)
    assert before["encoding"] == locale.getpreferredencoding(False)
    saved = locale.setlocale(locale.LC_NUMERIC)
    try:
        locale.setlocale(locale.LC_NUMERIC, "C.UTF-8")
        assert environment([])["locale"]["LC_NUMERIC"] == "C.UTF-8"
    finally:
        locale.setlocale(locale.LC_NUMERIC, saved)
    assert locale_state() == before


# ------------------------------------------------------------------ hash seed

def test_this_process_records_its_own_hash_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed is the one the interpreter started with; setting the variable later changes
    nothing (it does not change this process's hashing)."""
    expected = "0" if not sys.flags.hash_randomization else \
        os.environ.get("PYTHONHASHSEED", "random")
    monkeypatch.setenv("PYTHONHASHSEED", "77")
    assert hash_seed_state() == environment([])["hash_seed"]
    assert hash_seed_state() in (expected, "random")
    assert environment([], hash_seed="5")["hash_seed"] == "5"
    assert environment([], hash_seed="random")["hash_seed"] == "random"


@pytest.mark.parametrize(("seed", "flags", "expected"), [
    ("0", "", "0"), ("123", "", "123"), (None, "", "random"), ("random", "", "random"),
    ("123", "-E", "random")])
def test_a_fresh_interpreter_records_its_seed(seed: str | None, flags: str,
                                              expected: str) -> None:
    """A fixed PYTHONHASHSEED is recorded as it is; none, random, or one ignored (-E) is
    recorded as random."""
    code = "from pinrun.flows.environment import environment; print(environment([])['hash_seed'])"
    if flags == "-E":  # -E ignores PYTHONPATH too
        code = f"import sys; sys.path.insert(0, {str(SRC)!r}); {code}"
    assert _child(code, *flags.split(), PYTHONHASHSEED=seed).strip() == expected


# ---------------------------------------------------- platform and machine

def test_the_machine_is_recorded_beside_the_platform() -> None:
    """platform.machine() has its own field; the platform keeps its old form."""
    env = environment([])
    assert env["machine"] == platform.machine()
    assert env["platform"] == f"{sys.platform}-{platform.machine()}"
    assert env["python"] == platform.python_version()


# ------------------------------------------------------------- distributions

def test_distributions_are_the_closure_of_what_is_imported() -> None:
    """A module importing only pandas records numpy and python-dateutil too (pandas requires
    them), never what only an extra of pandas needs."""
    found = environment([{"source": "import pandas\n"}])["distributions"]
    assert {"pandas", "numpy", "python-dateutil"} <= set(found)
    assert "pytest" not in found  # pandas[test] only
    assert found["numpy"] == numpy.__version__


@pytest.mark.parametrize(("requirement", "name"), [
    ("numpy>=2.0.2; python_version < \"3.99\"", "numpy"),
    ("numpy>=2.0.2; python_version >= \"3.99\"", None),
    ("tzdata; sys_platform == \"nowhere\"", None),
    ("pytest>=8; extra == \"test\"", None),
    ("tzdata; (platform_system == 'Windows') and extra == 'timezone'", None),
    ("six ; os_name != \"nowhere\" or python_version < \"3\"", "six"),
    ("odd ; python_version ~= \"3.11\"", "odd"),  # not read here: it applies
    ("Foo.Bar_baz[extra]>=1", "Foo.Bar_baz")])
def test_a_requirement_applies_by_its_marker(requirement: str, name: str | None) -> None:
    """Markers are evaluated here; a requirement for an extra never applies."""
    assert _required(requirement) == name


def _fake_distribution(folder: Path, name: str, version: str, requires: list[str]) -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {item}" for item in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_the_project_distributions_are_always_listed(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's own distributions are listed with their versions and what they require
    (not an uninstalled requirement, nor an extra's); a given version is kept as given."""
    _fake_distribution(tmp_path, "envtest-orders-svc", "1.0.0",
                       ["numpy>=1", "envtest-not-installed>=2", "pytest; extra == \"test\""])
    monkeypatch.syspath_prepend(str(tmp_path))
    env = environment([], project=["envtest_orders_svc"])
    assert env["project"] == ["envtest_orders_svc"]
    assert env["distributions"]["envtest-orders-svc"] == "1.0.0"
    assert "numpy" in env["distributions"]
    assert not {"envtest-not-installed", "pytest"} & set(env["distributions"])
    given = environment([], project={"envtest-orders-svc": "1.0.0+local"})
    assert given["distributions"]["envtest-orders-svc"] == "1.0.0+local"
    with pytest.raises(InputError, match="at most 256 project distributions"):
        environment([], project=["x" * 300])


# ----------------------------------------------------------------- BLAS

def test_numpys_blas_is_recorded_when_numpy_is_a_distribution() -> None:
    """A project importing numpy records its BLAS and LAPACK by name and version."""
    linalg = environment([{"source": "import numpy"}])["linalg"]
    assert set(linalg) == {"blas", "lapack"}
    assert all(isinstance(text, str) and text for text in linalg.values())


def test_reading_the_environment_imports_nothing() -> None:
    """Reading the environment of a project using pandas leaves numpy and pandas
    unimported, and still lists numpy's version and BLAS (the same before and after a
    step imports numpy, so a worker's runs pin one environment)."""
    out = _child("""
        import sys
        from pinrun.flows.environment import environment
        env = environment([{"source": "import pandas"}])
        print("numpy" in sys.modules, "pandas" in sys.modules, "linalg" in env,
              "numpy" in env["distributions"])
        import numpy
        print(environment([{"source": "import pandas"}]) == env)
    """)
    assert out.split() == ["False", "False", "True", "True", "True"]


# ----------------------------------------------------------- the record's shape

def test_a_new_record_has_its_shape_and_an_old_one_still_does() -> None:
    """What environment() writes passes the env shape; so does a record from before."""
    env = environment([{"source": "import pandas"}])
    assert shapes.shape_problem(Kind.ENV, env) is None
    assert shapes.shape_problem(Kind.ENV, OLD_ENV) is None
    checked = shapes.check_shape(None, Kind.ENV, OLD_ENV)
    assert checked["timezone"] is None
    assert checked["locale"] is None


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("timezone", 3, "timezone should be a string"),
    ("timezone", "x" * 257, "timezone should hold at most 256"),
    ("machine", None, "machine should be a string"),
    ("locale", ["C"], "locale should be an object"),
    ("locale", {"LC_CTYPE": 1}, "locale['LC_CTYPE'] should be a string"),
    ("locale", {f"LC_{i}": "C" for i in range(17)}, "locale should hold at most 16"),
    ("linalg", {"blas": "y" * 300}, "linalg['blas'] should hold at most 256"),
    ("project", "orders", "project should be a list"),
    ("project", ["p"] * 257, "project should hold at most 256"),
    ("project", ["x" * 230], "project[0] should be a distribution name"),
    ("project", ["evil\x1b[31mred"], "project[0] should be a distribution name"),
    ("hash_seed", "-1", "hash_seed should be a hash seed"),
    ("distributions", {"x" * 300: "1"}, "distributions should name distributions"),
    ("distributions", {"\x1b[2Jevil": "1"}, "distributions should name distributions"),
    ("distributions", {"numpy": "1" * 300}, "distributions['numpy'] should hold at most 256"),
    ("distributions", {f"d{i}": "1" for i in range(4097)},
     "distributions should hold at most 4096"),
    ("hostname", "h" * 257, "hostname should hold at most 256"),
    ("hostname", ["ci"], "hostname should be a string"),
    ("home", "/" + "h" * 300, "home should hold at most 256"),
    ("cwd", "/" + "c" * 300, "cwd should hold at most 256"),
    ("cwd", {"$digest": "00"}, "cwd should be a string"),
    ("umask", "777", "umask should be a umask"),
    ("umask", "0089", "umask should be a umask"),
    ("umask", 18, "umask should be a string")])
def test_each_new_field_is_checked(field: str, value: Any, problem: str) -> None:
    """A new field of the wrong type or size is named as the shape problem."""
    found = shapes.shape_problem(Kind.ENV, {**environment([]), field: value})
    assert found is not None
    assert found.startswith(problem), found


# ---------------------------------------------------------------------- drift

def test_changes_are_listed_field_by_field() -> None:
    """Each differing field is one line, `label: before -> after`."""
    before = environment([{"source": "import pandas"}], hash_seed="0")
    after = {**before, "timezone": "Asia/Tokyo", "hash_seed": "random",
             "locale": {**before["locale"], "LC_NUMERIC": "de_DE.UTF-8"},
             "distributions": {**before["distributions"], "orders-svc": "1.0.1"},
             "linalg": {"blas": "mkl 2024", "lapack": before.get("linalg", {}).get("lapack")}}
    before = {**before, "timezone": "UTC", "distributions": {**before["distributions"],
                                                              "orders-svc": "1.0.0"},
              "linalg": {"blas": "openblas 0.3", "lapack": after["linalg"]["lapack"]}}
    assert environment_changes(before, after) == [
        "TZ: UTC -> Asia/Tokyo", "hash seed: 0 -> random",
        f"locale LC_NUMERIC: {before['locale']['LC_NUMERIC']} -> de_DE.UTF-8",
        "BLAS: openblas 0.3 -> mkl 2024", "orders-svc: 1.0.0 -> 1.0.1"]
    assert environment_changes(before, before) == []


def test_fields_an_old_record_lacks_are_no_drift() -> None:
    """Against a record from before, only what both have is compared: the new fields, a
    null hash seed and the distributions it never listed are not drift."""
    now = environment([{"source": "import pandas"}])
    assert environment_changes(OLD_ENV, now) == [
        f"pandas: 2.1.0 -> {now['distributions']['pandas']}"]
    assert environment_changes({**OLD_ENV, "distributions": {}}, now) == []
    assert environment_changes(now, {**OLD_ENV, "distributions": {}}) == []
    gone = {**now, "distributions": {k: v for k, v in now["distributions"].items()
                                     if k != "numpy"}}
    assert environment_changes(now, gone) == [f"numpy: {numpy.__version__} -> absent"]
