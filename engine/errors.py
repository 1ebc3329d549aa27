"""Exceptions raised by the engine API. All derive from :class:`AutellixError`."""

from __future__ import annotations

from autellix_engine.models import ModelError
from autellix_engine.policy.process_table import ProgramEndedError, UnknownProgramError


class AutellixError(Exception):
    """Base class of the engine's errors."""


class InvalidRequestError(AutellixError, ValueError):
    """A call's arguments are invalid (sampling values, prompt type, ...)."""


class PromptTooLongError(InvalidRequestError):
    """The prompt does not fit in the model's context."""


class EngineNotRunningError(AutellixError, RuntimeError):
    """The engine was not started, was closed, or its engine-core process died."""


class ReplicaError(EngineNotRunningError):
    """A replica failed a call for a reason that is not the request's fault (a 5xx, a
    reset or timed-out connection, an engine that died, a replica that left the pool).

    The front end retries such a call on another replica while it has returned no
    token; after that, the call fails with this error.
    """


__all__ = [
    "AutellixError",
    "EngineNotRunningError",
    "InvalidRequestError",
    "ModelError",
    "ProgramEndedError",
    "PromptTooLongError",
    "ReplicaError",
    "UnknownProgramError",
]
