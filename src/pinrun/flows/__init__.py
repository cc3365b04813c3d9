"""What gets pinned: steps, flows, their code and the environment they run in.

``step``, ``flow``, ``fingerprint`` and ``pinning`` describe work and know
nothing of storage; ``registry`` keeps pins in a store (``flows/<name>``),
``loader`` imports pinned code back, and ``status`` compares the code on disk
with a pin. The engine runs the work.
"""

from __future__ import annotations

from pinrun.errors import (
    FingerprintError,
    FlowDefinitionError,
    MissingInputError,
    StepDefinitionError,
)
from pinrun.flows.fingerprint import Fingerprint, fingerprint
from pinrun.flows.flow import CollisionPolicy, Flow
from pinrun.flows.step import Step, step

__all__ = [
    "CollisionPolicy",
    "Fingerprint",
    "FingerprintError",
    "Flow",
    "FlowDefinitionError",
    "MissingInputError",
    "Step",
    "StepDefinitionError",
    "fingerprint",
    "step",
]
