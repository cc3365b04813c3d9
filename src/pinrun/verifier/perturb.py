"""Perturbation: replay a run under another hash seed, timezone or locale.

A replay in the recording's conditions can pass by luck: a step that iterates
a set of strings reproduces under the recorded hash seed and no other. Each
perturbation replays the run in a fresh process with one condition changed,
and reports which variation changed the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from pinrun.artifacts.store import Store
from pinrun.engine.records import load_run, recorded_hash_seed
from pinrun.errors import InputError
from pinrun.verifier.worker import ReplayOptions, ReplayRequest, replay_in_child

__all__ = ["PERTURBATIONS", "Perturbation", "check_kinds", "perturb"]

#: A timezone far from most: a +12:45 offset with daylight saving.
_FAR_TIMEZONE = "Pacific/Chatham"
_OTHER_LOCALE = "C"


@dataclass(frozen=True)
class Perturbation:
    """One changed condition, and what the replay under it gave."""

    kind: str
    change: str
    verdict: str
    first_divergence: str | None
    explanation: str

    def as_value(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {"kind": self.kind, "change": self.change, "verdict": self.verdict,
                "first_divergence": self.first_divergence, "explanation": self.explanation}


def _variations(recorded_seed: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    """Each kind: a description, and the environment of its replay.

    Only the kind's own condition changes: the others keep the recorded hash
    seed (when one was recorded), so a difference is that condition's doing.
    """
    seed = str(int(recorded_seed) + 1) if recorded_seed and recorded_seed.isdigit() else "1"
    same_seed = {"PYTHONHASHSEED": recorded_seed} if recorded_seed else {}
    return {
        "hashseed": (f"PYTHONHASHSEED={seed} (recorded: {recorded_seed or 'unknown'})",
                     {"PYTHONHASHSEED": seed}),
        "tz": (f"TZ={_FAR_TIMEZONE}", {**same_seed, "TZ": _FAR_TIMEZONE}),
        "locale": (f"LC_ALL={_OTHER_LOCALE}", {**same_seed, "LC_ALL": _OTHER_LOCALE,
                                                "LANG": _OTHER_LOCALE}),
    }


PERTURBATIONS: tuple[str, ...] = ("hashseed", "tz", "locale")


def check_kinds(kinds: list[str]) -> None:
    """Refuse a kind of perturbation pinrun does not know."""
    unknown = [kind for kind in kinds if kind not in PERTURBATIONS]
    if unknown:
        raise InputError(f"--perturb {unknown[0]!r}: choose among {', '.join(PERTURBATIONS)}")


def perturb(store: Store, run_id: str, kinds: list[str], *, code: str = "pinned",
            guards: str = "warn", allow_world: bool = False) -> list[Perturbation]:
    """Replay run ``run_id`` once per kind of perturbation, each in a fresh process."""
    check_kinds(kinds)
    run = load_run(store, run_id)
    variations = _variations(recorded_hash_seed(store, run))  # checked: Python starts with it
    results = []
    for kind in kinds:
        change, environment = variations[kind]
        options = ReplayOptions(code=cast("Any", code), guards=cast("Any", guards),
                                allow_world=allow_world)
        report = replay_in_child(ReplayRequest(str(store.path), run.id, options),
                                 environment=environment, timeout=600).as_value()
        explanation = report.get("explanation") or report.get("error") or ""
        results.append(Perturbation(kind, change, report["verdict"],
                                    report.get("first_divergence"), str(explanation)))
    return results
