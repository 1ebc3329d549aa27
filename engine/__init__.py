"""Embedded program-aware vLLM engine (Autellix's PLAS/ATLAS scheduling).

``engine.policy`` (pure scheduling logic) imports without vLLM; the engine itself
is imported lazily so that policy code and the simulator stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.config import EngineConfig
from engine.errors import (
    AutellixError,
    EngineNotRunningError,
    InvalidRequestError,
    ModelError,
    ProgramEndedError,
    PromptTooLongError,
    UnknownProgramError,
)
from engine.policy import PolicyConfig, ProgramSnapshot
from engine.results import CallResult, CallTimings, StreamChunk, Usage

if TYPE_CHECKING:
    from engine.api import AutellixEngine, Program

__all__ = [
    "AutellixEngine",
    "AutellixError",
    "CallResult",
    "CallTimings",
    "EngineConfig",
    "EngineNotRunningError",
    "InvalidRequestError",
    "ModelError",
    "PolicyConfig",
    "Program",
    "ProgramEndedError",
    "ProgramSnapshot",
    "PromptTooLongError",
    "StreamChunk",
    "UnknownProgramError",
    "Usage",
]


def __getattr__(name: str) -> Any:
    if name in ("AutellixEngine", "Program"):
        from engine import api

        return getattr(api, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
