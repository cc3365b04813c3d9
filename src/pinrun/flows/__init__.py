"""What gets pinned: steps, flows, and (next) code capture and the environment.

This part knows nothing about LMDB: it describes work; the engine runs it and
the store keeps what it pins.
"""

from __future__ import annotations

from pinrun.flows.fingerprint import Fingerprint, FingerprintError, fingerprint
from pinrun.flows.flow import CollisionPolicy, Flow, FlowDefinitionError, MissingInputError
from pinrun.flows.step import Step, StepDefinitionError, step

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
