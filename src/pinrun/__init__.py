"""pinrun: a content-addressed artifact store and replay verifier for workflows.

The public API is flat: everything a user needs is importable from ``pinrun``.
Names load on first use, so importing ``pinrun`` (and starting the CLI) stays
fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pinrun.errors import (
    AmbiguousDigestError,
    BaselineBusyError,
    BundleError,
    CodeChangedError,
    ContextDivergenceError,
    CorruptObjectError,
    FingerprintError,
    FlowDefinitionError,
    InputError,
    InvalidDigestError,
    MissingInputError,
    MissingObjectError,
    NondeterminismError,
    NoSpaceError,
    ObjectFormatError,
    OversizedValueError,
    PinnedModuleError,
    PinrunError,
    PinrunWarning,
    RecordedEffectError,
    RefConflictError,
    RemoteError,
    RunBusyError,
    RunFailedError,
    StaleSourceError,
    StepDefinitionError,
    StepOutputError,
    StoreDamagedError,
    StoreError,
    StoreInUseError,
    StoreNotFoundError,
    StoreReadOnlyError,
    UndecodableValueError,
    UnknownDigestError,
    UnknownRefError,
    UnsafeRunIdError,
    UnsupportedValueError,
    UntrustedEntryError,
    UntrustedRunError,
    WorldRefusedError,
)

if TYPE_CHECKING:
    from pinrun.artifacts.codec import UnloadedValue, register_type
    from pinrun.artifacts.digest import Digest, Kind
    from pinrun.artifacts.store import Store, WriteBatch, open_store
    from pinrun.engine.context import Context
    from pinrun.engine.records import RunRecord, StepRecord
    from pinrun.engine.resume import resume
    from pinrun.engine.run import record, record_async
    from pinrun.flows.environment import HashSeedWarning
    from pinrun.flows.flow import Flow
    from pinrun.flows.registry import NothingPinnedWarning
    from pinrun.flows.status import CodeChangedWarning
    from pinrun.flows.step import Step, step
    from pinrun.verifier.report import ReplayReport
    from pinrun.verifier.seeded import replay

from pinrun._version import __version__

__all__ = [
    "AmbiguousDigestError",
    "BaselineBusyError",
    "BundleError",
    "CodeChangedError",
    "CodeChangedWarning",
    "Context",
    "ContextDivergenceError",
    "CorruptObjectError",
    "Digest",
    "FingerprintError",
    "Flow",
    "FlowDefinitionError",
    "HashSeedWarning",
    "InputError",
    "InvalidDigestError",
    "Kind",
    "MissingInputError",
    "MissingObjectError",
    "NoSpaceError",
    "NondeterminismError",
    "NothingPinnedWarning",
    "ObjectFormatError",
    "OversizedValueError",
    "PinnedModuleError",
    "PinrunError",
    "PinrunWarning",
    "RecordedEffectError",
    "RefConflictError",
    "RemoteError",
    "ReplayReport",
    "RunBusyError",
    "RunFailedError",
    "RunRecord",
    "StaleSourceError",
    "Step",
    "StepDefinitionError",
    "StepOutputError",
    "StepRecord",
    "Store",
    "StoreDamagedError",
    "StoreError",
    "StoreInUseError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "UndecodableValueError",
    "UnknownDigestError",
    "UnknownRefError",
    "UnloadedValue",
    "UnsafeRunIdError",
    "UnsupportedValueError",
    "UntrustedEntryError",
    "UntrustedRunError",
    "WorldRefusedError",
    "WriteBatch",
    "__version__",
    "open_store",
    "record",
    "record_async",
    "register_type",
    "replay",
    "resume",
    "step",
]

_LAZY = {
    "Context": "pinrun.engine.context",
    "Digest": "pinrun.artifacts.digest",
    "Flow": "pinrun.flows.flow",
    "RunRecord": "pinrun.engine.records",
    "Step": "pinrun.flows.step",
    "StepRecord": "pinrun.engine.records",
    "record": "pinrun.engine.run",
    "record_async": "pinrun.engine.run",
    "resume": "pinrun.engine.resume",
    "replay": "pinrun.verifier.seeded",
    "ReplayReport": "pinrun.verifier.report",
    "CodeChangedWarning": "pinrun.flows.status",
    "NothingPinnedWarning": "pinrun.flows.registry",
    "HashSeedWarning": "pinrun.flows.environment",
    "step": "pinrun.flows.step",
    "Kind": "pinrun.artifacts.digest",
    "Store": "pinrun.artifacts.store",
    "UnloadedValue": "pinrun.artifacts.codec",
    "WriteBatch": "pinrun.artifacts.store",
    "open_store": "pinrun.artifacts.store",
    "register_type": "pinrun.artifacts.codec",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pinrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
