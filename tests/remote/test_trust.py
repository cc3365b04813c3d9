"""Pinned code pulled from a remote runs only if a trusted key signed it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.remote.conftest import ok, pinrun
from tests.remote.scenario import as_json, empty_machine, production


@pytest.mark.slow
def test_unsigned_and_untrusted_pinned_code_is_refused_trusted_runs(tmp_path: Path) -> None:
    """Unsigned: refused, saying how to sign; signed by an unknown key: refused, saying how
    to trust it; trusted: runs; distrusted again: refused; --allow-unsigned: runs."""
    remote = str(tmp_path / "remote")
    prod, ids = production(tmp_path / "prod", 2)
    ok(pinrun(prod, "push", "--remote", remote, ids[0]))  # no key yet: unsigned
    ok(pinrun(prod, "key", "generate", "prod-1"))
    public = as_json(ok(pinrun(prod, "key", "list", "--json")))["signing"]
    assert public.startswith("prod-1:")
    ok(pinrun(prod, "push", "--remote", remote, ids[1]))

    laptop = empty_machine(tmp_path / "laptop")
    ok(pinrun(laptop, "pull", "--remote", remote, "--all"))
    unsigned = pinrun(laptop, "replay", ids[0])
    assert unsigned.returncode == 2, unsigned.stderr
    assert "unsigned" in unsigned.stderr
    assert "--allow-unsigned" in unsigned.stderr
    assert "Traceback" not in unsigned.stderr
    untrusted = pinrun(laptop, "replay", ids[1])
    assert untrusted.returncode == 2
    assert f"pinrun key trust {public}" in untrusted.stderr
    assert pinrun(laptop, "verify", "--code", "pinned").returncode == 2

    assert "now trusts key prod-1" in ok(pinrun(laptop, "key", "trust", public))
    assert "already" in ok(pinrun(laptop, "key", "trust", public))
    assert as_json(ok(pinrun(laptop, "replay", ids[1], "--json")))["verdict"] == "reproduced"
    assert pinrun(laptop, "replay", ids[0]).returncode == 2  # still unsigned
    ok(pinrun(laptop, "replay", ids[0], "--allow-unsigned"))

    ok(pinrun(laptop, "key", "distrust", "prod-1"))
    assert pinrun(laptop, "replay", ids[1]).returncode == 2


@pytest.mark.slow
def test_resume_with_pinned_code_of_an_unsigned_pulled_run_is_refused(tmp_path: Path) -> None:
    """`resume --code-policy artifact` of a pulled, unsigned run refuses before any step."""
    remote = str(tmp_path / "remote")
    prod, _ = production(tmp_path / "prod", 0)
    failed = pinrun(prod, "run", "shop.orders:flow", "--set", 'order_id="BAD"')
    assert failed.returncode == 1
    run_id = failed.stdout.strip() or as_json(
        ok(pinrun(prod, "runs", "--json")))[0]["id"]
    ok(pinrun(prod, "push", "--remote", remote, "--all"))
    laptop = empty_machine(tmp_path / "laptop")
    ok(pinrun(laptop, "pull", "--remote", remote, "--all"))
    refused = pinrun(laptop, "resume", run_id, "--code-policy", "artifact")
    assert refused.returncode == 2, refused.stderr
    assert "unsigned" in refused.stderr
    status = as_json(ok(pinrun(laptop, "show", run_id, "--json")))["status"]
    assert status == "failed"  # nothing ran


@pytest.mark.slow
def test_a_cluster_never_receives_unsigned_pulled_code(tmp_path: Path) -> None:
    """verify --dask ships bundles without origins, so untrusted pulled runs are refused
    before any cluster is asked (the address here answers nothing)."""
    from pinrun.artifacts.store import Store
    from pinrun.errors import UntrustedRunError
    from pinrun.verifier.verify import verify_runs

    remote = str(tmp_path / "remote")
    prod, ids = production(tmp_path / "prod", 1)
    ok(pinrun(prod, "push", "--remote", remote, "--all"))
    laptop = empty_machine(tmp_path / "laptop")
    ok(pinrun(laptop, "pull", "--remote", remote, "--all"))
    with Store.open(laptop / ".pinrun") as store, pytest.raises(UntrustedRunError):
        list(verify_runs(store, ids, code="pinned", guards="warn", jobs=1,
                         dask="tcp://127.0.0.1:9"))
