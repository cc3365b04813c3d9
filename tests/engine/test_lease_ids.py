"""Lease files are named only after plain run ids (defence in depth against traversal)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from pinrun.engine.lease import RunLease, is_live
from pinrun.errors import UnsafeRunIdError


@pytest.mark.parametrize("run_id", ["../../precious", "a/b", "..", ".", "", "x\x00y",
                                    "x\n", "/etc/passwd", "-" * 3])
def test_a_lease_is_never_named_after_a_path(tmp_path: Path, run_id: str) -> None:
    """An id that is not one plain name is refused before any file is touched."""
    store = tmp_path / "project" / ".pinrun"
    store.mkdir(parents=True)
    sentinel = tmp_path / "precious.lock"
    sentinel.write_text("keep me")
    with pytest.raises(UnsafeRunIdError):
        RunLease(store, run_id)
    with pytest.raises(UnsafeRunIdError):
        is_live(store, run_id)
    assert sentinel.read_text() == "keep me"
    assert not (store / "leases").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".pinrun", "precious.lock",
                                                            "project"]


def test_a_symbolic_link_in_place_of_a_lease_is_not_followed(tmp_path: Path) -> None:
    """A link planted at a lease's path is an error, and its target stays as it was."""
    target = tmp_path / "precious.lock"
    target.write_text("keep me")
    (tmp_path / "leases").mkdir()
    (tmp_path / "leases" / "20261123T013055012-4f1a2b.lock").symlink_to(target)
    with pytest.raises(OSError, match="symbolic links"):
        RunLease(tmp_path, "20261123T013055012-4f1a2b")
    assert target.read_text() == "keep me"


def test_the_refusal_survives_pickling() -> None:
    """The error crosses process pools with its id."""
    error = pickle.loads(pickle.dumps(UnsafeRunIdError("../x")))
    assert isinstance(error, UnsafeRunIdError)
    assert error.run_id == "../x"
    assert error.exit_code == 3
