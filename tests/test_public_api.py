"""The public surface: what `import pinrun` promises."""

from __future__ import annotations

import subprocess
import sys

import pinrun
import pinrun.artifacts
import pinrun.errors
import pinrun.flows


def test_all_is_sorted_and_complete() -> None:
    """pinrun.__all__ is sorted and every name in it resolves."""
    assert list(pinrun.__all__) == sorted(pinrun.__all__)
    for name in pinrun.__all__:
        assert getattr(pinrun, name) is not None, name


def test_public_names_are_pinned() -> None:
    """The public surface changes only on purpose (update this list and CHANGELOG.md)."""
    assert set(pinrun.__all__) == {
        "AmbiguousDigestError", "BundleError", "CodeChangedError", "CodeChangedWarning",
        "Context", "ContextDivergenceError", "CorruptObjectError", "Digest",
        "FingerprintError", "Flow",
        "FlowDefinitionError", "HashSeedWarning", "InputError", "InvalidDigestError", "Kind",
        "MissingInputError", "MissingObjectError", "ObjectFormatError", "OversizedValueError",
        "PinrunError",
        "PinrunWarning", "NothingPinnedWarning", "RefConflictError",
        "ReplayReport", "RunBusyError", "RunFailedError", "RunRecord", "Step",
        "StepDefinitionError", "StepOutputError", "StepRecord", "Store",
        "PinnedModuleError", "RecordedEffectError", "UnsafeRunIdError", "BaselineBusyError",
        "StaleSourceError", "NondeterminismError", "NoSpaceError", "StoreDamagedError",
        "StoreInUseError", "StoreReadOnlyError", "UntrustedEntryError", "WorldRefusedError",
        "RemoteError", "UntrustedRunError",
        "StoreError", "StoreNotFoundError",
        "UndecodableValueError", "UnknownDigestError", "UnknownRefError", "UnloadedValue",
        "UnsupportedValueError", "WriteBatch", "__version__", "open_store", "record",
        "record_async", "register_type", "replay", "resume", "step",
    }


def test_submodule_all_match_exports() -> None:
    """Each public module's __all__ names only things it really defines or re-exports."""
    for module in (pinrun.artifacts, pinrun.errors, pinrun.flows):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_errors_share_one_root_and_exit_codes() -> None:
    """Every error is a PinrunError (the one warning base is a UserWarning); input errors
    exit 2 and store errors exit 3."""
    for name in pinrun.errors.__all__:
        error = getattr(pinrun.errors, name)
        if error is pinrun.PinrunWarning:
            assert issubclass(error, UserWarning)
            continue
        assert issubclass(error, pinrun.PinrunError)
    assert pinrun.InputError.exit_code == 2
    assert pinrun.StoreError.exit_code == 3
    assert pinrun.UnsupportedValueError.exit_code == 2
    assert pinrun.CorruptObjectError.exit_code == 3


def test_import_is_light() -> None:
    """Importing pinrun loads neither the store, LMDB, rich nor pydantic until needed."""
    code = ("import sys, pinrun; heavy = [m for m in ('lmdb', 'rich', 'pydantic', 'zstandard', "
            "'pinrun.artifacts.store') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
