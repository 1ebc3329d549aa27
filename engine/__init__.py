"""Embedded program-aware vLLM engine (Autellix's PLAS/ATLAS scheduling).

``autellix_engine.policy`` (pure scheduling logic) imports without vLLM; the engine itself
is imported lazily so that policy code and the simulator stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autellix_engine.config import EngineConfig
from autellix_engine.errors import (
    AutellixError,
    EngineNotRunningError,
    InvalidRequestError,
    ModelError,
    ProgramEndedError,
    PromptTooLongError,
    ReplicaError,
    UnknownProgramError,
)
from autellix_engine.policy import CallStats, PolicyConfig, ProgramSnapshot
from autellix_engine.results import CallResult, StreamChunk, Usage

if TYPE_CHECKING:
    from autellix_engine.api import AutellixEngine, Program

__all__ = [
    "AutellixEngine",
    "AutellixError",
    "CallResult",
    "CallStats",
    "EngineConfig",
    "EngineNotRunningError",
    "InvalidRequestError",
    "ModelError",
    "PolicyConfig",
    "Program",
    "ProgramEndedError",
    "ProgramSnapshot",
    "PromptTooLongError",
    "ReplicaError",
    "StreamChunk",
    "UnknownProgramError",
    "Usage",
]


#: The vLLM scheduler classes under short, stable names for ``--scheduler-cls``:
#: ``autellix_engine.AutellixScheduler`` (no async scheduling: the CPU build) and
#: ``autellix_engine.AutellixAsyncScheduler`` (vLLM's GPU default). Imported lazily:
#: they need vLLM.
SCHEDULER_CLASSES = ("AutellixScheduler", "AutellixAsyncScheduler")


def __getattr__(name: str) -> Any:
    if name in ("AutellixEngine", "Program"):
        from autellix_engine import api

        return getattr(api, name)
    if name in SCHEDULER_CLASSES:
        from autellix_engine import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module 'autellix_engine' has no attribute {name!r}")
