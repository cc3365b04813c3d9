"""Where a run ran: its home folder, working folder, umask and host name, as recorded
and as drift."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.records import load_env
from pinrun.engine.run import record
from pinrun.flows import environment as env_module
from pinrun.flows import variables
from pinrun.flows.environment import environment, environment_changes, place_state
from tests.helpers import SRC, Project


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_place_is_what_the_process_sees_now(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """Home, working folder, umask and host name are read each time, as they are now."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    place = environment([])
    assert place["home"] == str(tmp_path / "home")
    assert place["cwd"] == os.getcwd()
    assert place["hostname"] == os.uname().nodename
    assert place["umask"] == f"{_current_umask():04o}"
    previous = os.umask(0o027)
    try:
        assert place_state()["umask"] == "0027"
        assert _current_umask() == 0o027  # reading it changed nothing
    finally:
        os.umask(previous)


@pytest.mark.parametrize("home", ["/home/ann", "/home/ann/", "/home/ann//", "/", "//", "",
                                  None], ids=repr)
def test_the_home_is_what_expanduser_says(monkeypatch: pytest.MonkeyPatch,
                                          home: str | None) -> None:
    """The home folder recorded is ``os.path.expanduser("~")``'s, whatever ``$HOME`` holds
    (set with trailing slashes, empty, or unset: then the password database's)."""
    if home is None:
        monkeypatch.delenv("HOME", raising=False)
    else:
        monkeypatch.setenv("HOME", home)
    assert place_state()["home"] == os.path.expanduser("~")


def test_environment_variables_read_as_os_environ_has_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable is read as ``os.environ.get`` gives it: set, changed, unset, not ASCII,
    and when ``os.environ`` is replaced by another mapping."""
    name = "PINRUN_TEST_VARIABLE"
    monkeypatch.delenv(name, raising=False)
    assert variables.environment_variable(name) is None
    for value in ("one", "", "d\u00e9j\u00e0 vu", "two"):
        monkeypatch.setenv(name, value)
        assert variables.environment_variable(name) == os.environ.get(name) == value
    monkeypatch.delenv(name)
    assert variables.environment_variable(name) is None
    monkeypatch.setattr(os, "environ", {name: "a plain dict"})
    assert variables.environment_variable(name) == "a plain dict"


def test_a_long_home_is_cut_when_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A home folder longer than a record holds is cut to 200 characters, and the record
    keeps its shape."""
    monkeypatch.setenv("HOME", "/" + "h" * 300)
    assert place_state()["home"] == "/" + "h" * 199


def test_without_proc_the_umask_is_set_and_reset(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """Where /proc/self/status cannot say, the umask is still read right, and left as it was."""
    monkeypatch.setattr(env_module, "_PROC_STATUS", str(tmp_path / "no-proc"))
    previous = os.umask(0o007)
    try:
        assert place_state()["umask"] == "0007"
        assert _current_umask() == 0o007
    finally:
        os.umask(previous)


def test_a_removed_working_folder_is_left_out(tmp_path: Path) -> None:
    """A process whose working folder was deleted records no cwd (so no drift), not an error."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = textwrap.dedent(f"""
        import os
        from pinrun.flows.environment import place_state
        os.chdir({str(gone)!r})
        os.rmdir({str(gone)!r})
        print(sorted(place_state()))
    """)
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['home', 'hostname', 'umask']"


def test_each_place_field_is_drift_old_to_new() -> None:
    """A differing home, cwd, umask or host name is one line each; a field one side lacks
    (a record from before them) is none."""
    before = environment([])
    after = {**before, "home": "/root", "cwd": "/srv/other", "umask": "0077",
             "hostname": "ci-7"}
    before = {**before, "home": "/home/ci", "cwd": "/srv/app", "umask": "0022",
              "hostname": "laptop"}
    assert environment_changes(before, after) == [
        "home: /home/ci -> /root", "cwd: /srv/app -> /srv/other", "umask: 0022 -> 0077",
        "hostname: laptop -> ci-7"]
    older = {key: value for key, value in before.items()
             if key not in ("home", "cwd", "umask", "hostname")}
    assert environment_changes(older, after) == []
    assert environment_changes(after, older) == []


def test_single_threaded_the_umask_is_read_by_setting_the_value_it_has() -> None:
    """With no other thread, reading the umask sets only the value last seen (a no-op when
    unchanged, one call); a change since is read right and left in place."""
    code = textwrap.dedent("""
        import os, threading
        from pinrun.flows import environment
        from pinrun.flows.environment import place_state
        assert threading.active_count() == 1
        real, calls = os.umask, []
        real(0o022)
        environment._umask()  # seen once
        def spy(mask):
            calls.append(mask)
            return real(mask)
        os.umask = spy
        print(place_state()["umask"], calls)
        real(0o027)  # code changes it between two runs
        calls.clear()
        print(place_state()["umask"], calls, oct(real(0o022)))
    """)
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    # The value it had: nothing changed, even for an instant; then the change, kept.
    assert done.stdout.splitlines() == ["0022 [18]", "0027 [18, 23] 0o27"]


def test_with_another_thread_the_umask_is_never_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """While another thread runs, the umask is read from /proc/self/status, never set."""
    calls: list[int] = []
    real = os.umask
    previous = real(0o027)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:

        def spy(mask: int) -> int:
            calls.append(mask)
            return real(mask)

        monkeypatch.setattr(os, "umask", spy)
        assert place_state()["umask"] == "0027"
        assert calls == []
    finally:
        release.set()
        other.join()
        real(previous)


def test_each_run_records_the_place_as_it_is_then(project: Project, project_store: Store,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A process recording run after run records each run's own working folder and umask
    (the environment's settled fields are kept, its changing ones read every run)."""
    project.write("totals", "import pinrun\n\n\n@pinrun.step\ndef total(n: int) -> dict:\n"
                  "    return {'total': n * 2}\n\n\nflow = pinrun.Flow('totals', [total])\n")
    flow = project.load("totals")
    first = record(flow, {"n": 1}, store=project_store)
    again = record(flow, {"n": 2}, store=project_store)
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0o077)
    try:
        moved = record(flow, {"n": 3}, store=project_store)
    finally:
        os.umask(previous)
    assert again.env == first.env  # nothing changed: the same environment object
    before, after = load_env(project_store, first), load_env(project_store, moved)
    assert (after["cwd"], after["umask"]) == (str(tmp_path), "0077")
    assert before["cwd"] != after["cwd"]
    assert before["umask"] == f"{previous:04o}"
    assert environment_changes(before, after) == [
        f"cwd: {before['cwd']} -> {tmp_path}", f"umask: {previous:04o} -> 0077"]
