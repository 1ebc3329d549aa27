"""The engine's exceptions: one hierarchy rooted at :class:`AutellixError`.

::

    AutellixError
    +-- InvalidRequestError (ValueError)   the call's arguments are at fault: not retried
    |   +-- PromptTooLongError             the prompt does not fit in the context
    +-- ProgramEndedError                  a call on a program that has ended
    +-- UnknownProgramError (KeyError)     no such program in the table
    +-- ModelError                         a model cannot be resolved or prepared
    +-- EngineNotRunningError              not started, closed, or no replica can run calls
    +-- ReplicaError                       a replica failed a call (not the call's fault)

Pure: imported by every layer, importing nothing.
"""

from __future__ import annotations


class AutellixError(Exception):
    """Base class of the engine's errors."""

    #: Whether the same call may succeed if tried again (langchain-core's meaning).
    is_retryable = False


class InvalidRequestError(AutellixError, ValueError):
    """A call's arguments are invalid (sampling values, prompt type, ...)."""


class PromptTooLongError(InvalidRequestError):
    """The prompt does not fit in the model's context."""


class ProgramEndedError(AutellixError):
    """A call was made on a program that has already ended."""


class UnknownProgramError(AutellixError, KeyError):
    """No program with this id is in the table."""


class ModelError(AutellixError):
    """A model name or folder cannot be resolved or prepared."""


class EngineNotRunningError(AutellixError):
    """The engine was not started, was closed, or no replica can run calls."""

    is_retryable = True  # replicas are restarted; a later try may find one


class ReplicaError(AutellixError):
    """A replica failed a call for a reason that is not the call's fault (a 5xx, a
    reset or timed-out connection, an engine that died, a replica that left the pool).

    The front end retries such a call on another replica while it has returned no
    token; after that, the call fails with this error.
    """

    is_retryable = True  # the fault is not the call's


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
