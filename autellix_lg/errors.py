"""The chat model's errors: langchain-core's standard model errors that are also the
engine's errors.

LangChain code catches ``langchain_core.exceptions.ModelInvalidRequestError``,
``ModelTimeoutError``, ``ModelConnectionError``, ``ModelAPIError``,
``ContextOverflowError`` ... and reads their ``is_retryable``; code written against the
engine catches ``autellix_engine.AutellixError`` and its subclasses. Each error the chat
model raises is both (as LangChain's provider integrations also subclass their SDK's
errors). :func:`for_langchain` turns an engine error into its counterpart here.
"""

from __future__ import annotations

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelConnectionError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelTimeoutError,
)

from autellix_engine.core.errors import (
    AutellixError,
    EngineNotRunningError,
    InvalidRequestError,
    ModelError,
    ProgramEndedError,
    PromptTooLongError,
    ReplicaError,
)


class InvalidCallError(ModelInvalidRequestError, InvalidRequestError):
    """The call's arguments are invalid (a value of the wrong type or range, an
    unknown parameter); retrying the same call cannot succeed."""


class ContextTooLongError(ContextOverflowError, PromptTooLongError):
    """The messages do not fit in the model's context."""


class EndedProgramError(ModelInvalidRequestError, ProgramEndedError):
    """The call names a program that has ended."""


class UnknownModelError(ModelNotFoundError, ModelError):
    """The model cannot be found or prepared."""


class CallTimeoutError(ModelTimeoutError, AutellixError, TimeoutError):
    """A call did not finish within the model's ``timeout``; it was aborted."""


class EngineUnavailableError(ModelConnectionError, EngineNotRunningError, ConnectionError):
    """The engine (embedded or remote) cannot be reached or is not running."""


class EngineFailedError(ModelAPIError, ReplicaError):
    """The engine failed the call (a replica fault, a 5xx): not the call's fault."""


#: Engine errors and their LangChain counterparts, most specific first.
_COUNTERPARTS: tuple[tuple[type[AutellixError], type[AutellixError]], ...] = (
    (PromptTooLongError, ContextTooLongError),
    (InvalidRequestError, InvalidCallError),
    (ProgramEndedError, EndedProgramError),
    (ModelError, UnknownModelError),
    (EngineNotRunningError, EngineUnavailableError),
    (ReplicaError, EngineFailedError),
)


def for_langchain(error: BaseException) -> BaseException:
    """The chat model's error for ``error`` (itself if it has no counterpart or is one
    already); raise it ``from`` the original."""
    for engine_error, counterpart in _COUNTERPARTS:
        if isinstance(error, counterpart):
            return error
        if isinstance(error, engine_error):
            return counterpart(str(error))
    return error
